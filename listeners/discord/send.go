package discord

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/internal/wait"
	"github.com/agent-runner/agent-runner/listeners"
)

const (
	// maxMessageLength is Discord's limit on message content, in Unicode
	// code points, which is how Discord's API counts characters. Longer
	// text is truncated.
	maxMessageLength = 2000
	// maxRateLimitWaits bounds how many 429 responses one Send or Reply
	// waits out before it returns an error.
	maxRateLimitWaits = 5
)

// Send posts text to the channel with ID target.
func (l *Listener) Send(ctx context.Context, target, text string) error {
	if !isSnowflake(target) {
		return fmt.Errorf("send discord message: invalid channel ID %q: expected a numeric ID", target)
	}
	if text == "" {
		return fmt.Errorf("send discord message to channel %s: empty text", target)
	}
	msg := &discordgo.MessageSend{Content: l.truncate(text)}
	if err := l.post(ctx, target, msg); err != nil {
		return fmt.Errorf("send discord message to channel %s: %w", target, err)
	}
	return nil
}

// Reply posts text in the channel of the event to as a reply to its
// message. If that message was deleted meanwhile, the text is posted as
// a plain message.
func (l *Listener) Reply(ctx context.Context, to listeners.Event, text string) error {
	if to.Kind != "" && to.Kind != config.KindDiscord {
		return fmt.Errorf("reply to discord message: event %s is from a %s listener", to.ID, to.Kind)
	}
	if !isSnowflake(to.Channel) || !isSnowflake(to.ID) {
		return fmt.Errorf("reply to discord message: invalid channel ID %q or message ID %q: expected numeric IDs", to.Channel, to.ID)
	}
	if text == "" {
		return fmt.Errorf("reply to discord message %s: empty text", to.ID)
	}
	failIfMissing := false
	msg := &discordgo.MessageSend{
		Content: l.truncate(text),
		Reference: &discordgo.MessageReference{
			MessageID:       to.ID,
			ChannelID:       to.Channel,
			GuildID:         to.Fields[fieldGuildID],
			FailIfNotExists: &failIfMissing,
		},
	}
	if err := l.post(ctx, to.Channel, msg); err != nil {
		return fmt.Errorf("reply to discord message %s in channel %s: %w", to.ID, to.Channel, err)
	}
	return nil
}

// post sends msg and waits out 429 responses itself, because discordgo's
// own retry sleeps without watching ctx.
func (l *Listener) post(ctx context.Context, channelID string, msg *discordgo.MessageSend) error {
	for waits := 0; ; waits++ {
		if err := l.waitForBucket(ctx, channelID); err != nil {
			return fmt.Errorf("wait for rate limit: %w", err)
		}
		_, err := l.rest.ChannelMessageSendComplex(channelID, msg,
			discordgo.WithContext(ctx), discordgo.WithRetryOnRatelimit(false))
		var limited *discordgo.RateLimitError
		if !errors.As(err, &limited) {
			return err
		}
		if waits == maxRateLimitWaits {
			return fmt.Errorf("rate limited %d times in a row: %w", waits+1, err)
		}
		l.log().Info("discord rate limit reached, waiting",
			"channel_id", channelID, "retry_after", limited.RetryAfter)
		if err := wait.For(ctx, limited.RetryAfter); err != nil {
			return fmt.Errorf("wait for rate limit: %w", err)
		}
	}
}

// waitForBucket waits until discordgo's rate limiter would send to the
// channel without sleeping, because that sleep ignores ctx. The limiter
// sleeps when an earlier response reported the bucket exhausted or a
// global limit.
func (l *Listener) waitForBucket(ctx context.Context, channelID string) error {
	limiter := l.rest.Ratelimiter
	bucket := limiter.GetBucket(discordgo.EndpointChannelMessages(channelID))
	bucket.Lock()
	delay := limiter.GetWaitTime(bucket, 1)
	bucket.Unlock()
	if delay <= 0 {
		return nil
	}
	l.log().Info("discord rate limit bucket exhausted, waiting",
		"channel_id", channelID, "wait", delay.Round(time.Millisecond))
	return wait.For(ctx, delay)
}

// truncate cuts text to maxMessageLength code points.
func (l *Listener) truncate(text string) string {
	length := utf8.RuneCountInString(text)
	if length <= maxMessageLength {
		return text
	}
	l.log().Warn("discord message text truncated",
		"characters", length, "max", maxMessageLength)
	cut, count := 0, 0
	for i := range text {
		if count == maxMessageLength {
			cut = i
			break
		}
		count++
	}
	return text[:cut]
}
