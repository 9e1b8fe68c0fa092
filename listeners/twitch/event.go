package twitch

import (
	"strconv"
	"strings"
	"time"

	irc "github.com/gempir/go-twitch-irc/v4"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// Event types of this kind.
const (
	TypeMessage    = "message"
	TypeUserNotice = "usernotice"
)

// messageTags are the Twitch tags copied into Event.Fields.
var messageTags = []string{"badges", "color", "mod", "subscriber", "first-msg", "reply-parent-msg-id"}

// privateMessageEvent converts a chat message. Fields also gets "login",
// the sender's login name, because a display name may differ from it in
// more than case.
func privateMessageEvent(listener string, message irc.PrivateMessage) listeners.Event {
	fields := selectTags(message.Tags, messageTags)
	setField(fields, "login", loginName(message.User, message.Tags))
	return listeners.Event{
		Listener: listener,
		Kind:     config.KindTwitch,
		Type:     TypeMessage,
		ID:       messageID(message.Tags),
		Time:     messageTime(message.Tags["tmi-sent-ts"], message.Tags["time"]),
		Channel:  message.Channel,
		User:     displayName(message.User, message.Tags),
		UserID:   message.User.ID,
		Text:     message.Message,
		Fields:   fields,
	}
}

// userNoticeEvent converts a USERNOTICE, such as a subscription or a
// raid. Fields gets msg-id (the notice's kind, such as "sub" or "raid"),
// system-msg and every msg-param-* tag on top of the message's fields.
func userNoticeEvent(listener string, message irc.UserNoticeMessage) listeners.Event {
	fields := selectTags(message.Tags, messageTags)
	setField(fields, "login", loginName(message.User, message.Tags))
	for tag, value := range message.Tags {
		if tag == "msg-id" || tag == "system-msg" || strings.HasPrefix(tag, "msg-param-") {
			setField(fields, tag, value)
		}
	}
	return listeners.Event{
		Listener: listener,
		Kind:     config.KindTwitch,
		Type:     TypeUserNotice,
		ID:       messageID(message.Tags),
		Time:     messageTime(message.Tags["tmi-sent-ts"], message.Tags["time"]),
		Channel:  message.Channel,
		User:     displayName(message.User, message.Tags),
		UserID:   message.User.ID,
		Text:     message.Message,
		Fields:   fields,
	}
}

// selectTags returns the non-empty values of the named tags.
func selectTags(tags map[string]string, names []string) map[string]string {
	fields := map[string]string{}
	for _, name := range names {
		setField(fields, name, tags[name])
	}
	return fields
}

func setField(fields map[string]string, name, value string) {
	if value != "" {
		fields[name] = value
	}
}

// messageID returns Twitch's id tag, or the IRCv3 msgid tag that other
// servers send.
func messageID(tags map[string]string) string {
	if id := tags["id"]; id != "" {
		return id
	}
	return tags["msgid"]
}

// messageTime returns the time from Twitch's tmi-sent-ts tag (Unix
// milliseconds), else from the IRCv3 time tag, else the time of receipt.
func messageTime(sentMillis, timeTag string) time.Time {
	if ms, err := strconv.ParseInt(sentMillis, 10, 64); err == nil {
		return time.UnixMilli(ms).UTC()
	}
	if t, err := time.Parse(time.RFC3339Nano, timeTag); err == nil {
		return t.UTC()
	}
	return time.Now().UTC()
}

// loginName returns the sender's login: the login tag that USERNOTICE
// lines carry, or else the user part of the line's prefix. A USERNOTICE
// prefix is the server's, and go-twitch-irc then derives User.Name from
// the display name.
func loginName(user irc.User, tags map[string]string) string {
	if login := tags["login"]; login != "" {
		return login
	}
	return user.Name
}

func displayName(user irc.User, tags map[string]string) string {
	if user.DisplayName != "" {
		return user.DisplayName
	}
	return loginName(user, tags)
}
