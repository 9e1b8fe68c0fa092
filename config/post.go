package config

import "slices"

// Post makes a job post a message through a listener instead of running a
// command. The daemon posts through the listener's live session, so the
// job holds no credentials.
type Post struct {
	// Via names a listener, or a listener kind that exactly one listener
	// has.
	Via string
	// To is the target: a Twitch channel or a Discord channel ID; a
	// Bluesky post ignores it.
	To string
	// Text is posted as written when TextCommand is empty.
	Text string
	// TextCommand runs under the job's process rules; its standard output,
	// trimmed, is the text.
	TextCommand []string
}

var postKeys = []string{"text", "text_command", "to", "via"}

const postExample = `{ via = "bluesky", text = "Good morning!" }`

// decodePost decodes the post table of a job.
func (l *loader) decodePost(t table) *Post {
	pt, ok := l.subTable(t, "post", postExample)
	if !ok {
		return nil
	}
	l.checkKeys(pt, "in a post table", postKeys, nil)
	post := &Post{}
	post.Via, _ = l.stringValue(pt, "via", `"bluesky"`)
	post.To, _ = l.stringValue(pt, "to", `"mychannel"`)
	post.Text, _ = l.stringValue(pt, "text", `"Good morning!"`)
	post.TextCommand = l.argvValue(pt, "text_command", `["./draft-post.sh"]`)
	if post.Via == "" {
		l.report(pt.path, "missing via: name the listener to post through, such as via = \"bluesky\"")
	}
	_, hasText := pt.values["text"]
	_, hasCommand := pt.values["text_command"]
	switch {
	case hasText && hasCommand:
		l.report(pt.path, "sets both text and text_command: keep one")
	case !hasText && !hasCommand:
		l.report(pt.path, "missing text: set text = \"...\" or text_command = [\"program\"]")
	}
	return post
}

// checkPostTargets reports posts whose via matches no listener name and
// no listener kind.
func (l *loader) checkPostTargets(jobs []*Job, listeners []*Listener) {
	var names, kinds []string
	for _, lc := range listeners {
		names = append(names, lc.Name)
		kinds = append(kinds, lc.Kind)
	}
	for _, plan := range l.jobs {
		post := plan.job.Post
		if post == nil || post.Via == "" {
			continue
		}
		if !slices.Contains(names, post.Via) && !slices.Contains(kinds, post.Via) {
			l.report(plan.path.child("post").child("via"),
				"no listener is named %q or has that kind: add a [listeners.NAME] table or fix via", post.Via)
		}
	}
}
