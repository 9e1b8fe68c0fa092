package config

import (
	"cmp"
	"errors"
	"slices"
)

// Post makes a job post a message through a listener instead of running a
// command. The daemon posts through the listener's live session, so the
// job holds no credentials.
type Post struct {
	// Via names a listener, or a listener kind that exactly one listener
	// has.
	Via string
	// To is the target: a Twitch channel or a Discord channel ID. Load
	// sets it to the channel of a Twitch listener that joins only one,
	// and a Bluesky post ignores it.
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
// no listener kind. It fills in to for a post through a listener with a
// default target and reports a missing to where there is none, because
// such a post would fail on every run.
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
		path := plan.path.child("post")
		if !slices.Contains(names, post.Via) && !slices.Contains(kinds, post.Via) {
			l.report(path.child("via"),
				"no listener is named %q or has that kind: add a [listeners.NAME] table or fix via", post.Via)
			continue
		}
		if lc := findListener(listeners, post.Via); lc != nil && post.To == "" {
			post.To = l.defaultPostTarget(path, lc)
		}
	}
}

// checkPostListeners adds a problem to each post job whose listener can
// never post on this machine: a disabled one, an exec listener, or a
// Twitch listener without a token, which reads chat anonymously. It runs
// after checkListeners, which reads the tokens, and the problem keeps the
// job from running its text_command for nothing.
func (l *loader) checkPostListeners(listeners []*Listener) {
	for _, plan := range l.jobs {
		post := plan.job.Post
		if post == nil || post.Via == "" {
			continue
		}
		lc := findListener(listeners, post.Via)
		if lc == nil {
			continue
		}
		checks := l.checks()
		key := plan.path.child("post").child("via")
		switch {
		case !lc.Enabled:
			checks.report(key, "listener %s is disabled (%s), so it cannot post: configure it, or post through another listener", lc.Name, lc.DisabledReason)
		case lc.Kind == KindExec:
			checks.report(key, "listener %s is an exec listener, which cannot post: post through a twitch, discord or bluesky listener", lc.Name)
		case lc.Kind == KindTwitch && lc.Problem == nil && lc.Twitch != nil && lc.Twitch.Token == nil:
			checks.report(key, "listener %s reads chat anonymously, so it cannot post: set its username and token", lc.Name)
		}
		plan.job.Problem = joinProblems(plan.job.Problem, checks.err())
	}
}

// joinProblems returns the problems of a and b as one *Error, or the
// one that is set.
func joinProblems(a, b error) error {
	var first, second *Error
	if !errors.As(a, &first) || !errors.As(b, &second) {
		return cmp.Or(a, b)
	}
	problems := append(slices.Clone(first.Problems), second.Problems...)
	sortProblems(problems)
	return &Error{Problems: problems}
}

// defaultPostTarget returns the target of a post through lc that sets no
// to, and reports the post when lc has no default.
func (l *loader) defaultPostTarget(path keyPath, lc *Listener) string {
	target, ok := lc.DefaultTarget()
	switch {
	case ok:
		return target
	case lc.Kind == KindTwitch:
		l.report(path, "missing to: listener %s joins %d channels, so set to = \"mychannel\" with the Twitch channel to post in", lc.Name, len(lc.Twitch.Channels))
	default:
		l.report(path, "missing to: listener %s posts to Discord, so set to = \"123456789012345678\" with the ID of the channel to post in", lc.Name)
	}
	return ""
}

// DefaultTarget returns the target of a post or a send through lc that
// names none, and false when the caller must name one. A Twitch listener
// that joins exactly one channel posts there. Discord needs a channel ID,
// and a Bluesky post has no target.
func (lc *Listener) DefaultTarget() (string, bool) {
	switch lc.Kind {
	case KindTwitch:
		if lc.Twitch != nil && len(lc.Twitch.Channels) == 1 {
			return lc.Twitch.Channels[0], true
		}
		return "", false
	case KindDiscord:
		return "", false
	default:
		return "", true
	}
}

// ListenerFor returns the listener that a post or a send through
// nameOrKind uses, or nil when the daemon would reject it. See
// findListener.
func (c *Config) ListenerFor(nameOrKind string) *Listener {
	return findListener(c.Listeners, nameOrKind)
}

// findListener returns the listener named nameOrKind, or else the only
// enabled listener of that kind, as the daemon picks it. It returns nil
// when no listener or several match.
func findListener(listeners []*Listener, nameOrKind string) *Listener {
	var match *Listener
	count := 0
	for _, lc := range listeners {
		if lc.Name == nameOrKind {
			return lc
		}
		if lc.Kind == nameOrKind && lc.Enabled {
			match = lc
			count++
		}
	}
	if count != 1 {
		return nil
	}
	return match
}
