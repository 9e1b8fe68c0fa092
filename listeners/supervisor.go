package listeners

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"
)

// Listener states shown by list and status.
const (
	StateDisabled = "disabled"
	StateStarting = "starting"
	StateRunning  = "running"
	StateBackoff  = "backoff"
	StateFailed   = "failed"
	StateStopped  = "stopped"
)

// Backoff is the restart policy of a supervisor.
type Backoff struct {
	// Initial is the first delay after a failure; it doubles per
	// consecutive failure up to Max.
	Initial time.Duration
	Max     time.Duration
	// Stable is how long a listener must stay connected for the next
	// failure to start again from Initial.
	Stable time.Duration
}

// DefaultBackoff restarts after 1 s, doubling to 5 min, and forgets the
// failures of a listener that stayed connected for a minute.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 5 * time.Minute, Stable: time.Minute}

// delay returns the wait before restart number n (0 for the first), with
// ±20% jitter so that listeners failing together do not retry together.
func (b Backoff) delay(n int) time.Duration {
	d := b.Initial
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) * 2
	return d - d/5 + jitter
}

// Health is what list and status show of one listener.
type Health struct {
	Name  string    `json:"name"`
	Kind  string    `json:"kind"`
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Restarts counts how often the listener was started again after a
	// failure.
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	LastEvent time.Time `json:"last_event,omitzero"`
	Handled   uint64    `json:"handled"`
	Dropped   uint64    `json:"dropped"`
}

// Supervisor runs one listener for the daemon's lifetime: it restarts the
// listener after every failure or panic, with capped backoff, and never
// returns before its context ends, so one broken listener cannot stop
// the rest of the run group.
type Supervisor struct {
	listener Listener
	router   *Router
	kv       KV
	log      *slog.Logger
	backoff  Backoff

	mu     sync.Mutex
	health Health
}

// NewSupervisor returns a supervisor for listener; events go to router and
// the listener's persistent state to kv.
func NewSupervisor(name, kind string, listener Listener, router *Router, kv KV, log *slog.Logger) *Supervisor {
	return &Supervisor{
		listener: listener,
		router:   router,
		kv:       kv,
		log:      log.With("listener", name),
		backoff:  DefaultBackoff,
		health:   Health{Name: name, Kind: kind, State: StateStarting, Since: time.Now()},
	}
}

// Run runs the listener until ctx ends. It returns nil then, and never
// earlier.
func (s *Supervisor) Run(ctx context.Context) error {
	failures := 0
	for {
		s.setState(StateStarting, nil)
		started := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			s.setState(StateStopped, nil)
			return nil
		}
		if err == nil {
			err = errors.New("listener returned without an error")
		}
		if s.connectedSince(started) >= s.backoff.Stable {
			failures = 0
		}
		wait, state := s.backoff.delay(failures), StateBackoff
		if errors.Is(err, ErrAuth) {
			wait, state = s.backoff.Max, StateFailed
		}
		failures++
		s.setState(state, err)
		s.log.Error("listener failed; restarting", "err", err, "state", state, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			s.setState(StateStopped, nil)
			return nil
		case <-time.After(wait):
		}
		s.mu.Lock()
		s.health.Restarts++
		s.mu.Unlock()
	}
}

// runOnce runs the listener once and turns a panic into an error.
func (s *Supervisor) runOnce(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("listener panicked", "err", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return s.listener.Run(ctx, host{s})
}

// connectedSince returns how long the listener has been running in the
// attempt that began at started.
func (s *Supervisor) connectedSince(started time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.health.State != StateRunning || s.health.Since.Before(started) {
		return 0
	}
	return time.Since(s.health.Since)
}

func (s *Supervisor) setState(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health.State = state
	s.health.Since = time.Now()
	if err != nil {
		s.health.LastError = err.Error()
	}
}

// Health returns the listener's health with the router's counters.
func (s *Supervisor) Health() Health {
	s.mu.Lock()
	h := s.health
	s.mu.Unlock()
	h.Handled, h.Dropped, h.LastEvent = s.router.counts()
	return h
}

// Listener returns the listener the supervisor runs, for replies and
// sends.
func (s *Supervisor) Listener() Listener { return s.listener }

// host is the Host a supervisor gives its listener.
type host struct{ s *Supervisor }

func (h host) Ready() {
	h.s.setState(StateRunning, nil)
	h.s.router.connected(time.Now())
	h.s.log.Info("listener connected")
}

func (h host) Deliver(ev Event) { h.s.router.Deliver(ev) }

func (h host) Log() *slog.Logger { return h.s.log }

func (h host) State() KV { return h.s.kv }
