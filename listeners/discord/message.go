package discord

import (
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// Keys of listeners.Event.Fields for Discord messages.
const (
	// fieldGuildID is the server's ID, absent for direct messages.
	fieldGuildID = "guild_id"
	// fieldReplyToID is the ID of the message that a reply refers to.
	fieldReplyToID = "reply_to_id"
)

func (l *Listener) listensTo(channelID string) bool {
	return len(l.channels) == 0 || l.channels[channelID]
}

// event converts a message whose Author is set.
func (l *Listener) event(m *discordgo.Message) listeners.Event {
	event := listeners.Event{
		Listener: l.name,
		Kind:     config.KindDiscord,
		Type:     "message",
		ID:       m.ID,
		Time:     m.Timestamp,
		Channel:  m.ChannelID,
		User:     displayName(m.Author),
		UserID:   m.Author.ID,
		Text:     m.Content,
		URI:      l.messageLink(m),
	}
	if event.Time.IsZero() {
		event.Time = time.Now()
	}

	fields := map[string]string{}
	if m.GuildID != "" {
		fields[fieldGuildID] = m.GuildID
	}
	// Pins, crossposts and forwards carry a message reference too, so
	// only for the reply type does it name the message replied to.
	if m.Type == discordgo.MessageTypeReply && m.MessageReference != nil && m.MessageReference.MessageID != "" {
		fields[fieldReplyToID] = m.MessageReference.MessageID
	}
	if len(fields) > 0 {
		event.Fields = fields
	}
	return event
}

// messageLink returns the web link of m, with @me in place of the guild
// for direct messages.
//
// NOTE: the link uses the scheme and host of the API URL, which for the
// default API URL is Discord's web host. A self-hosted server may serve
// its web client on another host.
func (l *Listener) messageLink(m *discordgo.Message) string {
	guild := m.GuildID
	if guild == "" {
		guild = "@me"
	}
	return l.linkBase + "/channels/" + guild + "/" + m.ChannelID + "/" + m.ID
}

// displayName returns the user's global display name, or the username
// when none is set.
func displayName(u *discordgo.User) string {
	if u.GlobalName != "" {
		return u.GlobalName
	}
	return u.Username
}
