// Package alerts sends people alerts about failures: jobs that fail, time
// out or panic, listeners that go stale or crash-loop, and failed reloads. A
// Dispatcher takes alerts from the runner and the listeners without ever
// blocking them, suppresses repeats, and delivers each alert to every
// configured sink (a Discord webhook or a local command) with retries.
package alerts

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
)

// Values of Alert.Kind.
const (
	KindJob      = "job"
	KindListener = "listener"
	KindReload   = "reload"
	// KindDaemon is a problem of the daemon itself, such as a lost state
	// folder.
	KindDaemon = "daemon"
)

// Values of Alert.Event. Every event except EventRecovered reports a
// failure.
const (
	EventFailed       = "failed"
	EventTimeout      = "timeout"
	EventPanic        = "panic"
	EventStale        = "stale"
	EventCrashLooping = "crash-looping"
	EventReloadFailed = "reload-failed"
	EventRecovered    = "recovered"
)

// Events lists every value of Alert.Event, for validating a sink's events.
var Events = []string{
	EventFailed, EventTimeout, EventPanic, EventStale,
	EventCrashLooping, EventReloadFailed, EventRecovered,
}

// Values of SinkConfig.Kind.
const (
	SinkDiscordWebhook = "discord_webhook"
	SinkExec           = "exec"
)

// Defaults of SinkConfig.
const (
	DefaultCooldown = 15 * time.Minute
	DefaultTimeout  = 10 * time.Second
)

// Alert is one thing worth telling a person. Exec sinks get it as JSON on
// stdin.
type Alert struct {
	// Key is the deduplication key, such as "job:digest" or
	// "listener:chat". Notify fills in Kind:Name when it is empty.
	Key  string `json:"key"`
	Kind string `json:"kind"`
	// Name is the job or listener name, empty for a reload.
	Name  string `json:"name,omitempty"`
	Event string `json:"event"`
	// Summary is one line for people. It must carry no secrets and no
	// job output, because every sink shows it.
	Summary string `json:"summary"`
	// Detail is optional longer text, shown by every sink, so job output
	// belongs in Output instead.
	Detail string `json:"detail,omitempty"`
	// Output is the tail of the job's output. A sink shows it only when
	// its IncludeOutput is set.
	Output string `json:"output,omitempty"`
	// Time is when the event happened. Notify sets it to now when zero.
	// Cooldowns are measured between the Times of alerts.
	Time     time.Time `json:"time"`
	RunID    string    `json:"run_id,omitempty"`
	ExitCode int       `json:"exit_code"`
	// Suppressed is the number of alerts with the same Key and Event that
	// the dispatcher held back within the cooldown before this one. The
	// dispatcher sets it, so callers leave it zero.
	Suppressed int `json:"suppressed"`
}

// Sink delivers one alert.
type Sink interface {
	// Name is the sink's configured name, used in logs and errors.
	Name() string
	// Send makes one delivery attempt. It returns a *PermanentError when
	// retrying cannot help, and a *RetryAfterError when the receiver
	// requested a pause. Any other error is retried after a backoff.
	Send(ctx context.Context, a Alert) error
}

// SinkConfig is one [alerts.NAME] table of the config file.
type SinkConfig struct {
	Name string
	// Kind is SinkDiscordWebhook or SinkExec.
	Kind string
	// URL is the Discord webhook URL. It is a secret, because the URL
	// contains the webhook's token.
	URL *config.Secret
	// Command is the argv of an exec sink, which gets the alert as one
	// JSON object on stdin.
	Command []string
	// Events lists the events to send. Empty means all of them.
	Events []string
	// Cooldown is how long repeats of an alert with the same Key and
	// Event are suppressed. Zero means DefaultCooldown.
	Cooldown time.Duration
	// IncludeOutput lets the sink show the job's output, which may
	// contain anything the job printed.
	IncludeOutput bool
	// Timeout bounds each delivery attempt. Zero means DefaultTimeout.
	Timeout time.Duration
}

// Validate reports the first invalid field of c, naming the sink.
func (c SinkConfig) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("invalid alert sink: missing name")
	}
	switch c.Kind {
	case SinkDiscordWebhook:
		if c.URL == nil || c.URL.Reveal() == "" {
			return fmt.Errorf("invalid alert sink %q: missing url: set url to a secret reference such as { file = \"/run/keys/webhook\" }", c.Name)
		}
	case SinkExec:
		if len(c.Command) == 0 || c.Command[0] == "" {
			return fmt.Errorf("invalid alert sink %q: missing command: set command = [\"program\", \"arg\"]", c.Name)
		}
	default:
		return fmt.Errorf("invalid alert sink %q: unknown kind %q: use %q or %q", c.Name, c.Kind, SinkDiscordWebhook, SinkExec)
	}
	for _, event := range c.Events {
		if !slices.Contains(Events, event) {
			return fmt.Errorf("invalid alert sink %q: unknown event %q: use one of %v", c.Name, event, Events)
		}
	}
	if c.Cooldown < 0 {
		return fmt.Errorf("invalid alert sink %q: negative cooldown %s", c.Name, c.Cooldown)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("invalid alert sink %q: negative timeout %s", c.Name, c.Timeout)
	}
	return nil
}

// withDefaults fills in the zero durations.
func (c SinkConfig) withDefaults() SinkConfig {
	if c.Cooldown == 0 {
		c.Cooldown = DefaultCooldown
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// wants reports whether the sink sends event.
func (c SinkConfig) wants(event string) bool {
	return len(c.Events) == 0 || slices.Contains(c.Events, event)
}

// isFailure reports whether event reports a failure, which starts a
// cooldown and makes a later EventRecovered worth sending.
func isFailure(event string) bool { return event != EventRecovered }

// NewSink builds the sink that cfg.Kind names. Webhook sinks use client,
// and exec sinks use reaper, path, workDir and marker.
func NewSink(cfg SinkConfig, client *http.Client, reaper *process.Reaper, path []string, workDir, marker string) (Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Kind == SinkExec {
		return NewExec(cfg, reaper, path, workDir, marker)
	}
	return NewDiscordWebhook(cfg, client)
}
