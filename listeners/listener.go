// Package listeners hosts the persistent connections of a bot fleet, such
// as Twitch chat, a Discord bot, a Bluesky mention poller and supervised
// long-running children. Each runs under a Supervisor that restarts it
// with capped backoff, and hands its events to a Router that logs them,
// answers chat commands and runs hooks.
package listeners

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// ErrAuth marks a failure that retrying soon cannot fix, such as a
// rejected token. The supervisor shows the listener as failed and retries
// once per maximum backoff interval.
var ErrAuth = errors.New("authentication failed")

// DefaultConnectTimeout bounds a chat listener's connect phase, from the
// dial to the moment it calls Host.Ready. A server that accepts the
// connection and then sends nothing would otherwise keep the listener in
// state starting, with no error shown, until a much longer idle timeout.
const DefaultConnectTimeout = 30 * time.Second

// RetryError is a failure with the time a retry can succeed, such as a
// rate limit with a known reset time. The supervisor waits until then, up
// to its maximum backoff, instead of retrying earlier and failing again.
type RetryError struct {
	Err error
	// At is the earliest time a retry can succeed.
	At time.Time
}

func (e *RetryError) Error() string { return e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }

// Event is one thing a listener received, in the form hooks get on stdin.
type Event struct {
	// Listener is the name from the config.
	Listener string `json:"listener"`
	// Kind is the listener kind: twitch, discord, bluesky or exec.
	Kind string `json:"kind"`
	// Type is kind-specific: message for chat, and for Bluesky the
	// notification reason (mention, reply, quote, follow).
	Type string    `json:"type"`
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Channel is the Twitch channel or the Discord channel ID.
	Channel string `json:"channel,omitempty"`
	// User is the sender's display name, UserID their platform ID.
	User   string `json:"user,omitempty"`
	UserID string `json:"user_id,omitempty"`
	Text   string `json:"text,omitempty"`
	// URI is the Bluesky record URI, or a message link where the platform
	// has one.
	URI string `json:"uri,omitempty"`
	// Fields holds other kind-specific values, such as Twitch tags.
	Fields map[string]string `json:"fields,omitempty"`
}

// Listener is one kind's connection logic.
type Listener interface {
	// Run connects and serves until ctx ends or the connection fails. It
	// calls host.Ready once connected and host.Deliver for each event. It
	// returns nil or ctx's error after ctx ends, and otherwise an error
	// saying what failed, wrapping ErrAuth when retrying soon is useless.
	// It must stop promptly when ctx ends, by closing its connection.
	Run(ctx context.Context, host Host) error
}

// Replier is implemented by listeners that can answer an event on the
// platform it came from; hooks' output and chat commands use it.
type Replier interface {
	Reply(ctx context.Context, to Event, text string) error
}

// Sender is implemented by listeners that can post outside of any event,
// for `agent-runner send` and post jobs. Target is kind-specific: a
// Twitch channel, a Discord channel ID, or empty for a Bluesky post.
type Sender interface {
	Send(ctx context.Context, target, text string) error
}

// Host is what a supervisor gives the listener it runs.
type Host interface {
	// Ready marks the listener connected; the supervisor shows it as
	// running and starts counting its stable period.
	Ready()
	// Reconnecting marks a listener that lost its connection and
	// connects again within the same Run, because of cause. The
	// supervisor shows it as connecting again after a failure, which
	// health checks count as down, until the next Ready.
	Reconnecting(cause error)
	// Deliver hands an event to the router. It never blocks for long: an
	// event the router cannot queue is dropped and counted.
	Deliver(Event)
	// Log is the listener's logger, with its name attached.
	Log() *slog.Logger
	// State is the listener's persistent key-value space in the store,
	// for cursors and sessions.
	State() KV
}

// KV is a listener's persistent key-value space. Values survive restarts
// and crashes once Put returns.
type KV interface {
	Get(key string) ([]byte, bool, error)
	Put(key string, value []byte) error
}
