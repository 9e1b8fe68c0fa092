package twitch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/agent-runner/agent-runner/listeners"
)

// lineBreaks turns line breaks into spaces, because a line break would
// end the IRC line, and drops NUL, which IRC does not allow.
var lineBreaks = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ", "\x00", "")

// Reply posts text in the channel the event came from, as a plain
// message.
func (l *Listener) Reply(ctx context.Context, to listeners.Event, text string) error {
	if to.Channel == "" {
		return fmt.Errorf("reply to event %q: missing channel", to.ID)
	}
	return l.Send(ctx, to.Channel, text)
}

// Send posts text to the channel target, with or without its "#". Line
// breaks become spaces and text past 500 characters is cut off. Send
// waits for the rate limit (SendBurst and SendInterval), so it returns
// ctx's error when ctx ends first. A nil error means that go-twitch-irc
// queued the line, not that the server accepted it.
func (l *Listener) Send(ctx context.Context, target, text string) error {
	channel := normalizeChannel(target)
	if err := checkChannel(channel); err != nil {
		return fmt.Errorf("send to twitch channel %q: %w", target, err)
	}
	if l.anonymous() {
		return fmt.Errorf("send to #%s: listener %s is anonymous and read-only: set username and token", channel, l.name)
	}
	text = cleanText(text)
	if strings.TrimSpace(text) == "" {
		return fmt.Errorf("send to #%s: empty message", channel)
	}
	if l.activeSession() == nil {
		return fmt.Errorf("send to #%s: not connected to %s", channel, l.server)
	}
	if err := l.sendBucket().wait(ctx); err != nil {
		return fmt.Errorf("send to #%s: wait for the rate limit: %w", channel, err)
	}
	s := l.activeSession()
	if s == nil || s.stopping() {
		return fmt.Errorf("send to #%s: not connected to %s", channel, l.server)
	}
	s.client.Say(channel, text)
	return nil
}

// checkChannel accepts Twitch channel names: letters, digits and
// underscores. Anything else could break the PRIVMSG line.
func checkChannel(channel string) error {
	if channel == "" {
		return errors.New("missing channel name")
	}
	for _, r := range channel {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("invalid character %q: a channel name has only letters, digits and underscores", r)
		}
	}
	return nil
}

// cleanText makes text fit one Twitch chat message.
func cleanText(text string) string {
	text = lineBreaks.Replace(text)
	if utf8.RuneCountInString(text) > maxTextRunes {
		text = string([]rune(text)[:maxTextRunes])
	}
	return text
}

// sendBucket returns the token bucket shared by every Send, created from
// SendBurst and SendInterval on first use. It outlives sessions because
// Twitch counts messages per user, not per connection.
func (l *Listener) sendBucket() *tokenBucket {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bucket == nil {
		l.bucket = newTokenBucket(l.SendBurst, l.SendInterval)
	}
	return l.bucket
}
