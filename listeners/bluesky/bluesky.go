// Package bluesky is the Bluesky listener: it polls an account's
// notifications and delivers mentions, replies, quotes and follows as
// events, and it posts and replies as that account.
//
// The listener sends at most one login that the server accepts or
// rejects per 5 minutes, and keeps the session in the listener's state,
// so a daemon restart resumes the session instead of logging in again. A high-water mark in the same state delivers each new
// notification at least once across polls and restarts, unless more
// arrive between two polls than one poll reads (10 pages of 100).
package bluesky

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/bluesky-social/indigo/atproto/atclient"
)

// Defaults for settings the config leaves empty.
const (
	defaultHost = "https://bsky.social"
	defaultPoll = 30 * time.Second
)

// defaultReasons are the notification reasons delivered when the config
// names none.
var defaultReasons = []string{"mention", "reply", "quote", "follow"}

// Listener is a Bluesky notification poller and poster. It implements
// listeners.Listener, listeners.Replier and listeners.Sender.
type Listener struct {
	name     string
	handle   string
	password config.Secret
	// host is the PDS or entryway URL that logins and handle resolution
	// go to; the session's own PDS may differ.
	host    string
	poll    time.Duration
	reasons []string
	http    *http.Client

	// pageLimit and maxPages bound one poll to maxPages requests of
	// pageLimit notifications.
	pageLimit int
	maxPages  int
	// minRateWait is the shortest wait after a 429, and fallbackRateWait
	// the wait when the response names no reset time.
	minRateWait      time.Duration
	fallbackRateWait time.Duration
	// maxInlineRateWait is the longest rate-limit wait spent inside a
	// request, so that a poll or send that meets the end of a limit
	// window still succeeds. maxRateWait caps a longer pause.
	maxInlineRateWait time.Duration
	maxRateWait       time.Duration
	// loginInterval is the shortest time between two logins that the
	// server accepts or rejects. It equals the supervisor's retry
	// interval after an ErrAuth error, so each retry can log in once.
	loginInterval time.Duration

	// mu guards state and log, which Run sets from its host, and
	// pausedUntil, the end of a rate-limit pause.
	mu          sync.Mutex
	state       listeners.KV
	log         *slog.Logger
	pausedUntil time.Time

	// sessionLock is a one-slot semaphore that serializes session setup
	// between Run, Send and Reply, and guards the fields below it.
	sessionLock chan struct{}
	client      *atclient.APIClient
	// loginAt is when the last login that the server accepted or
	// rejected was sent, and loginErr is its rejection, or nil after an
	// accepted login.
	loginAt  time.Time
	loginErr error
}

// New validates the Bluesky settings of cfg and applies the defaults for
// host, poll interval and reasons. It does not connect.
func New(cfg *config.Listener) (*Listener, error) {
	if cfg == nil || cfg.Bluesky == nil {
		return nil, errors.New("new bluesky listener: missing bluesky settings")
	}
	settings := cfg.Bluesky
	if settings.Handle == "" {
		return nil, fmt.Errorf("new bluesky listener %s: missing handle", cfg.Name)
	}
	if settings.Password == nil || settings.Password.Reveal() == "" {
		return nil, fmt.Errorf("new bluesky listener %s: missing app password", cfg.Name)
	}

	host := settings.Host
	if host == "" {
		host = defaultHost
	}
	if err := validateHost(host); err != nil {
		return nil, fmt.Errorf("new bluesky listener %s: %w", cfg.Name, err)
	}

	l := &Listener{
		name:             cfg.Name,
		handle:           settings.Handle,
		password:         *settings.Password,
		host:             host,
		poll:             settings.Poll,
		reasons:          settings.Reasons,
		http:             newHTTPClient(),
		pageLimit:        100,
		maxPages:         10,
		minRateWait:      time.Second,
		fallbackRateWait: time.Minute,
		// A rate-limit pause ends no later than the supervisor's
		// longest backoff, so the listener is back when it retries.
		maxInlineRateWait: 10 * time.Second,
		maxRateWait:       listeners.DefaultBackoff.Max,
		loginInterval:     listeners.DefaultBackoff.Max,
		sessionLock:       make(chan struct{}, 1),
	}
	if l.poll <= 0 {
		l.poll = defaultPoll
	}
	if len(l.reasons) == 0 {
		l.reasons = defaultReasons
	}
	return l, nil
}

// newHTTPClient returns the client for every request of a Listener,
// with its time and response size bounded.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: limitTransport{base: http.DefaultTransport, limit: maxResponseBody},
	}
}

// validateHost rejects a host that is not an absolute http or https URL.
func validateHost(host string) error {
	u, err := url.Parse(host)
	if err != nil {
		return fmt.Errorf("invalid host %q: %w", host, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid host %q: expected an http or https URL such as %s", host, defaultHost)
	}
	return nil
}

// Run polls notifications every poll interval until ctx ends. It calls
// host.Ready after the first successful poll. A 429 response whose reset
// is at most maxInlineRateWait away is waited out, while a later reset,
// a 5xx response or a network error ends Run with an error so that the
// supervisor backs off.
func (l *Listener) Run(ctx context.Context, host listeners.Host) error {
	l.attach(host)

	m, err := l.loadMark(host.State())
	if err != nil {
		return err
	}

	timer := time.NewTimer(0)
	defer timer.Stop()
	ready := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}

		m, err = l.pollOnce(ctx, host, m)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !ready {
			host.Ready()
			ready = true
		}
		timer.Reset(l.poll)
	}
}

// attach keeps the host's state and logger for Send, Reply and the token
// refresh callback, which have no host of their own.
func (l *Listener) attach(host listeners.Host) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state = host.State()
	l.log = host.Log()
}

// stateKV returns the state that Run attached, or nil before Run.
func (l *Listener) stateKV() listeners.KV {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// logger returns the host's logger, or the default logger before Run.
func (l *Listener) logger() *slog.Logger {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.log == nil {
		return slog.Default()
	}
	return l.log
}
