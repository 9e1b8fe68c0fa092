package twitch

import (
	"bytes"
	"strings"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// chatTags are the tags of a PRIVMSG that its event reads.
type chatTags struct {
	fields      map[string]string
	login       string
	displayName string
	id          string
	msgID       string
	sentMillis  string
	time        string
	userID      string
}

// fastPrivmsgEvent converts a line that safePrivmsg passed into the event
// that privateMessageEvent makes of go-twitch-irc's parse of it. It reads
// the line as that parser does, without the parser's regular expression,
// maps and splits, which cost more than the rest of the listener. A fuzz
// test compares the two on every line that safePrivmsg passes.
func fastPrivmsgEvent(listener string, line []byte) listeners.Event {
	parts := splitLine(line)
	tags := readChatTags(parts.tags)

	login := tags.login
	if login == "" {
		login = sourceUsername(parts.source)
	}
	if login == "" && tags.displayName != "" {
		// go-twitch-irc names a user without a username after the
		// display name, lowercased and without its first space.
		login = strings.Replace(strings.ToLower(tags.displayName), " ", "", 1)
	}
	setField(tags.fields, "login", login)
	user := tags.displayName
	if user == "" {
		user = login
	}
	id := tags.id
	if id == "" {
		id = tags.msgID
	}
	channel, text := privmsgParams(parts.params)
	return listeners.Event{
		Listener: listener,
		Kind:     config.KindTwitch,
		Type:     TypeMessage,
		ID:       id,
		Time:     messageTime(tags.sentMillis, tags.time),
		Channel:  channel,
		User:     user,
		UserID:   tags.userID,
		Text:     text,
		Fields:   tags.fields,
	}
}

// lineParts are the parts of a server line as go-twitch-irc's parser
// splits it at spaces.
type lineParts struct {
	// tags includes its "@", and source its ":". Both are empty when the
	// line has none.
	tags, source, command []byte
	// params is the rest of the line after the command, and hasParams
	// is false when no space follows the command.
	params    []byte
	hasParams bool
}

// splitLine splits line into its tags, source, command and parameters.
// A line that ends inside its tags or source has no command.
func splitLine(line []byte) lineParts {
	var parts lineParts
	rest := line
	if bytes.HasPrefix(rest, []byte("@")) {
		parts.tags, rest, _ = bytes.Cut(rest, []byte(" "))
	}
	if bytes.HasPrefix(rest, []byte(":")) {
		parts.source, rest, _ = bytes.Cut(rest, []byte(" "))
	}
	parts.command, parts.params, parts.hasParams = bytes.Cut(rest, []byte(" "))
	return parts
}

// readChatTags reads the tags of a PRIVMSG, "@" included, that has no
// backslash in them. A tag's value is its raw value with spaces trimmed,
// and the last of repeated keys wins, as in go-twitch-irc's parser.
func readChatTags(raw []byte) chatTags {
	tags := chatTags{fields: make(map[string]string, len(messageTags)+1)}
	if len(raw) == 0 {
		return tags
	}
	for tag := range bytes.SplitSeq(raw[1:], []byte(";")) {
		key, value, _ := bytes.Cut(tag, []byte("="))
		text := string(bytes.TrimSpace(value))
		switch string(key) {
		case "badges", "color", "mod", "subscriber", "first-msg", "reply-parent-msg-id":
			if text == "" {
				delete(tags.fields, string(key))
			} else {
				tags.fields[string(key)] = text
			}
		case "login":
			tags.login = text
		case "display-name":
			tags.displayName = text
		case "id":
			tags.id = text
		case "msgid":
			tags.msgID = text
		case "tmi-sent-ts":
			tags.sentMillis = text
		case "time":
			tags.time = text
		case "user-id":
			tags.userID = text
		}
	}
	return tags
}

// sourceUsername returns the username of a line's source, such as alice
// in ":alice!alice@alice.tmi.twitch.tv". go-twitch-irc splits the source
// at every "!" and "@" and takes the second part when there are three or
// more.
func sourceUsername(source []byte) string {
	if len(source) == 0 {
		return ""
	}
	first := bytes.IndexAny(source[1:], "!@")
	if first < 0 {
		return ""
	}
	rest := source[1+first+1:]
	second := bytes.IndexAny(rest, "!@")
	if second < 0 {
		return ""
	}
	return string(rest[:second])
}

// privmsgParams returns the channel and the text of a PRIVMSG from what
// follows its command. As in go-twitch-irc, the parameters are split at
// spaces until one starts with ":", which takes the rest of the line. The
// text is the second of exactly two parameters, and a CTCP ACTION is
// unwrapped.
func privmsgParams(params []byte) (channel, text string) {
	count := 0
	for more := true; more; {
		var param []byte
		if bytes.HasPrefix(params, []byte(":")) {
			param, more = params[1:], false
		} else {
			param, params, more = bytes.Cut(params, []byte(" "))
		}
		count++
		switch count {
		case 1:
			channel = strings.TrimPrefix(string(param), "#")
		case 2:
			text = string(param)
		}
	}
	if count != 2 {
		text = ""
	}
	if strings.HasPrefix(text, "\x01ACTION") && strings.HasSuffix(text, "\x01") {
		if len(text) == 8 {
			return channel, ""
		}
		return channel, text[8 : len(text)-1]
	}
	return channel, text
}
