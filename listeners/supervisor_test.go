package listeners

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// fakeListener runs RunFunc, counting its calls.
type fakeListener struct {
	calls   atomic.Int32
	RunFunc func(ctx context.Context, host Host, call int) error
}

func (f *fakeListener) Run(ctx context.Context, host Host) error {
	return f.RunFunc(ctx, host, int(f.calls.Add(1)))
}

// memKV is an in-memory KV.
type memKV map[string][]byte

func (m memKV) Get(key string) ([]byte, bool, error) { v, ok := m[key]; return v, ok, nil }
func (m memKV) Put(key string, value []byte) error   { m[key] = value; return nil }

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTestSupervisor(l Listener) *Supervisor {
	cfg := &config.Listener{Name: "test", Kind: "exec", HookQueue: 10, HookConcurrency: 1}
	router := NewRouter(cfg, nil, nil, nil, quietLog)
	s := NewSupervisor("test", "exec", l, router, memKV{}, quietLog)
	s.backoff = Backoff{Initial: time.Millisecond, Max: 20 * time.Millisecond, Stable: time.Hour}
	return s
}

// runFor runs the supervisor until cond holds, then stops it and returns
// Run's error.
func runFor(t *testing.T, s *Supervisor, cond func() bool) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("condition not met; health %+v", s.Health())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

func TestSupervisorRestartsAfterErrors(t *testing.T) {
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		if call < 4 {
			return errors.New("connection reset")
		}
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	s := newTestSupervisor(l)
	err := runFor(t, s, func() bool { return s.Health().State == StateRunning })
	if err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	h := s.Health()
	if h.Restarts != 3 {
		t.Errorf("restarts = %d, want 3", h.Restarts)
	}
	if h.LastError != "connection reset" {
		t.Errorf("last error = %q", h.LastError)
	}
	if h.State != StateStopped {
		t.Errorf("state after stop = %q, want stopped", h.State)
	}
}

func TestSupervisorRecoversPanic(t *testing.T) {
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		if call == 1 {
			panic("listener bug")
		}
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	s := newTestSupervisor(l)
	runFor(t, s, func() bool { return s.Health().State == StateRunning })
	if h := s.Health(); h.LastError != "panic: listener bug" || h.Restarts != 1 {
		t.Errorf("health = %+v, want the panic recorded and one restart", h)
	}
}

func TestSupervisorAuthFailureShowsFailed(t *testing.T) {
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		return fmt.Errorf("login: %w", ErrAuth)
	}}
	s := newTestSupervisor(l)
	s.backoff.Max = time.Hour
	runFor(t, s, func() bool { return s.Health().State == StateFailed })
	if calls := l.calls.Load(); calls != 1 {
		t.Errorf("listener ran %d times, want 1: an auth failure waits the maximum backoff", calls)
	}
}

func TestSupervisorNeverReturnsOnFailure(t *testing.T) {
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		return nil // returning without an error is a failure too
	}}
	s := newTestSupervisor(l)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Errorf("Run returned before its context ended")
	}
	if l.calls.Load() < 3 {
		t.Errorf("listener ran %d times, want repeated restarts", l.calls.Load())
	}
}

func TestBackoffDoublesToMax(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Minute}
	tests := []struct {
		n    int
		base time.Duration
	}{
		{0, time.Second}, {1, 2 * time.Second}, {3, 8 * time.Second}, {8, 256 * time.Second}, {9, 5 * time.Minute}, {40, 5 * time.Minute},
	}
	for _, tt := range tests {
		for range 20 {
			d := b.delay(tt.n)
			if d < tt.base*8/10 || d > tt.base*12/10 {
				t.Errorf("delay(%d) = %v, want %v ± 20%%", tt.n, d, tt.base)
			}
		}
	}
}

func TestSupervisorReplaceRestartsAtOnce(t *testing.T) {
	first := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	second := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	s := newTestSupervisor(first)
	s.backoff = Backoff{Initial: time.Hour, Max: time.Hour, Stable: time.Hour}
	replaced := false
	runFor(t, s, func() bool {
		if !replaced && s.Health().State == StateRunning {
			cfg := &config.Listener{Name: "test", Kind: "exec", HookQueue: 1}
			s.Replace(second, NewRouter(cfg, nil, nil, nil, quietLog))
			replaced = true
		}
		return second.calls.Load() == 1 && s.Health().State == StateRunning
	})
	if first.calls.Load() != 1 {
		t.Errorf("first listener ran %d times, want 1", first.calls.Load())
	}
	if s.Health().Restarts != 0 {
		t.Errorf("restarts = %d: a replacement is not a failure", s.Health().Restarts)
	}
}

func TestSupervisorRetireIdlesUntilShutdown(t *testing.T) {
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	s := newTestSupervisor(l)
	retired := false
	runFor(t, s, func() bool {
		if !retired && s.Health().State == StateRunning {
			s.Retire()
			retired = true
		}
		return retired && s.Health().State == StateStopped
	})
	if l.calls.Load() != 1 {
		t.Errorf("a retired listener ran %d times, want 1", l.calls.Load())
	}
}

func TestStaleReason(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		health     Health
		staleAfter time.Duration
		want       string
	}{
		{"off", Health{State: StateRunning, Since: now.Add(-time.Hour)}, 0, ""},
		{"recent event", Health{State: StateRunning, Since: now.Add(-time.Hour), LastEvent: now.Add(-time.Minute)}, 5 * time.Minute, ""},
		{"old event", Health{State: StateRunning, Since: now.Add(-time.Hour), LastEvent: now.Add(-20 * time.Minute)}, 15 * time.Minute, "no event for 20m0s (stale_after 15m0s)"},
		{"no event yet", Health{State: StateRunning, Since: now.Add(-time.Hour)}, 15 * time.Minute, "no event since connecting for 1h0m0s (stale_after 15m0s)"},
		{"not running", Health{State: StateBackoff, Since: now.Add(-time.Hour)}, 15 * time.Minute, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := staleReason(tt.health, tt.staleAfter, now); got != tt.want {
				t.Errorf("staleReason: got %q, want %q", got, tt.want)
			}
		})
	}
}

// startSupervisor runs s until the test ends.
func startSupervisor(t *testing.T, s *Supervisor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// failingListener fails every attempt at once.
func failingListener() *fakeListener {
	return &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		return errors.New("rejected")
	}}
}

// connectedListener runs until its attempt ends.
func connectedListener() *fakeListener {
	return &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		<-ctx.Done()
		return nil
	}}
}

func newPlainRouter() *Router {
	cfg := &config.Listener{Name: "test", Kind: "exec", HookQueue: 1}
	return NewRouter(cfg, nil, nil, nil, quietLog)
}

func TestSupervisorReplaceEndsBackoff(t *testing.T) {
	good := connectedListener()
	s := newTestSupervisor(failingListener())
	s.backoff = Backoff{Initial: time.Hour, Max: time.Hour, Stable: time.Hour}
	startSupervisor(t, s)
	waitUntil(t, "the first failure", func() bool { return s.Health().State == StateBackoff })

	s.Replace(good, newPlainRouter())
	waitUntil(t, "the replacement to run", func() bool { return s.Health().State == StateRunning })
	if n := good.calls.Load(); n != 1 {
		t.Errorf("replacement ran %d times, want 1", n)
	}
	if n := s.Health().Restarts; n != 0 {
		t.Errorf("restarts = %d: a replacement is not a failure", n)
	}
}

// A reload may change a listener's kind, as from exec to twitch. list,
// status and the metrics once kept showing the first kind.
func TestSupervisorReplaceTakesNewKind(t *testing.T) {
	s := newTestSupervisor(connectedListener())
	startSupervisor(t, s)
	waitUntil(t, "the first listener to run", func() bool { return s.Health().State == StateRunning })

	cfg := &config.Listener{Name: "test", Kind: "twitch", HookQueue: 1}
	s.Replace(connectedListener(), NewRouter(cfg, nil, nil, nil, quietLog))

	if kind := s.Health().Kind; kind != "twitch" {
		t.Errorf("kind after a replace with a twitch listener = %q, want twitch", kind)
	}
}

// A listener that connects again within one Run, as Discord resumes its
// session, counts as down until it is ready again.
func TestSupervisorReconnectingShowsRetrying(t *testing.T) {
	reconnect, resumed := make(chan struct{}), make(chan struct{})
	s := newTestSupervisor(&fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		<-reconnect
		host.Reconnecting(errors.New("gateway connection lost"))
		<-resumed
		host.Ready()
		<-ctx.Done()
		return nil
	}})
	startSupervisor(t, s)
	// Cleanups run last first, so this one lets Run end before the
	// supervisor stops, also when a check fails.
	var lose, resume sync.Once
	t.Cleanup(func() {
		lose.Do(func() { close(reconnect) })
		resume.Do(func() { close(resumed) })
	})
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	lose.Do(func() { close(reconnect) })
	waitUntil(t, "the reconnect to show", func() bool { return s.Health().State == StateStarting })
	h := s.Health()
	if !h.Retrying || h.LastError != "gateway connection lost" {
		t.Errorf("health while reconnecting = retrying %v, last error %q; want retrying with the cause", h.Retrying, h.LastError)
	}

	resume.Do(func() { close(resumed) })
	waitUntil(t, "the listener to run again", func() bool { return s.Health().State == StateRunning })
	if s.Health().Retrying {
		t.Error("the resumed listener still shows as retrying")
	}
}

// TestSupervisorReconnectAfterStableResetsBackoff checks that a listener
// that stayed connected for the stable period before it lost the
// connection and failed to get it back restarts after the first delay.
func TestSupervisorReconnectAfterStableResetsBackoff(t *testing.T) {
	var ended atomic.Int64
	restarted := make(chan time.Duration, 1)
	s := newTestSupervisor(&fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		switch call {
		case 1:
			return errors.New("refused")
		case 2:
			host.Ready()
			time.Sleep(100 * time.Millisecond)
			host.Reconnecting(errors.New("gateway connection lost"))
			ended.Store(time.Now().UnixNano())
			return errors.New("resume failed")
		case 3:
			restarted <- time.Since(time.Unix(0, ended.Load()))
		}
		<-ctx.Done()
		return nil
	}})
	s.backoff = Backoff{Initial: 200 * time.Millisecond, Max: time.Hour, Stable: 50 * time.Millisecond}
	startSupervisor(t, s)

	select {
	case wait := <-restarted:
		// The first delay is 160 to 240 ms, and the second 320 to 480 ms.
		if wait >= 300*time.Millisecond {
			t.Errorf("restart after a stable connection was lost waited %s, want the first delay of 200 ms ±20%%", wait)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for the restart")
	}
}

func TestSupervisorReplaceEndsAuthWait(t *testing.T) {
	rejected := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		return fmt.Errorf("login: %w", ErrAuth)
	}}
	good := connectedListener()
	s := newTestSupervisor(rejected)
	s.backoff = Backoff{Initial: time.Millisecond, Max: time.Hour, Stable: time.Hour}
	startSupervisor(t, s)
	waitUntil(t, "the auth failure", func() bool { return s.Health().State == StateFailed })

	s.Replace(good, newPlainRouter())
	waitUntil(t, "the replacement to run", func() bool { return s.Health().State == StateRunning })
}

func TestSupervisorReplacementFailureBacksOff(t *testing.T) {
	replacement := failingListener()
	s := newTestSupervisor(failingListener())
	s.backoff = Backoff{Initial: time.Hour, Max: time.Hour, Stable: time.Hour}
	startSupervisor(t, s)
	waitUntil(t, "the first failure", func() bool { return s.Health().State == StateBackoff })

	s.Replace(replacement, newPlainRouter())
	waitUntil(t, "the replacement to fail", func() bool { return replacement.calls.Load() >= 1 })
	time.Sleep(100 * time.Millisecond)
	if n := replacement.calls.Load(); n != 1 {
		t.Errorf("the failing replacement ran %d times in 100ms, want 1: its failure must wait the backoff", n)
	}
	if state := s.Health().State; state != StateBackoff {
		t.Errorf("state = %q, want backoff", state)
	}
}

func TestSupervisorRetireEndsBackoff(t *testing.T) {
	l := failingListener()
	s := newTestSupervisor(l)
	s.backoff = Backoff{Initial: time.Hour, Max: time.Hour, Stable: time.Hour}
	startSupervisor(t, s)
	waitUntil(t, "the first failure", func() bool { return s.Health().State == StateBackoff })

	s.Retire()
	waitUntil(t, "the retired listener to stop", func() bool { return s.Health().State == StateStopped })
	if n := l.calls.Load(); n != 1 {
		t.Errorf("a retired listener ran %d times, want 1", n)
	}
}

func TestSupervisorReplaceThenRetireDrainsBoth(t *testing.T) {
	release := make(chan struct{})
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		<-ctx.Done()
		// A slow stop, as an exec child's stop_grace makes.
		<-release
		return nil
	}}
	first := newPlainRouter()
	s := NewSupervisor("test", config.KindTwitch, l, first, memKV{}, quietLog)
	startSupervisor(t, s)
	waitUntil(t, "the first attempt", func() bool { return s.Health().State == StateRunning })
	second := newPlainRouter()
	s.Replace(connectedListener(), second)
	s.Retire()
	close(release)
	waitUntil(t, "the first router to close", first.Closed)
	waitUntil(t, "the router that no attempt used to close", second.Closed)
}

func TestBackoffUntilRetry(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Minute}
	plain := errors.New("connection reset")
	retryIn := func(d time.Duration) error {
		return fmt.Errorf("poll: %w", &RetryError{Err: plain, At: time.Now().Add(d)})
	}
	tests := []struct {
		name     string
		err      error
		min, max time.Duration
	}{
		{"plain error", plain, 2 * time.Second, 2 * time.Second},
		{"retry later than backoff", retryIn(time.Minute), 59 * time.Second, time.Minute},
		{"retry past max", retryIn(time.Hour), 5 * time.Minute, 5 * time.Minute},
		{"retry in the past", retryIn(-time.Minute), 2 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		got := b.untilRetry(tt.err, 2*time.Second)
		if got < tt.min || got > tt.max {
			t.Errorf("%s: untilRetry = %v, want between %v and %v", tt.name, got, tt.min, tt.max)
		}
	}
}

func TestSupervisorWaitsForRetryTime(t *testing.T) {
	const pause = 300 * time.Millisecond
	var firstFailed time.Time
	var retried atomic.Int64
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		if call == 1 {
			firstFailed = time.Now()
			return &RetryError{Err: errors.New("rate limited"), At: firstFailed.Add(pause)}
		}
		retried.Store(int64(time.Since(firstFailed)))
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	s := newTestSupervisor(l)
	s.backoff.Max = time.Hour

	runFor(t, s, func() bool { return s.Health().State == StateRunning })
	if calls := l.calls.Load(); calls != 2 {
		t.Errorf("listener ran %d times, want 2: one failure, one retry at the retry time", calls)
	}
	if after := time.Duration(retried.Load()); after < pause {
		t.Errorf("retry came %v after the failure, want at least %v", after, pause)
	}
}

// TestSupervisorRetryingUntilReady checks that an attempt after a
// failure shows as retrying until the listener is ready, and the first
// attempt does not.
func TestSupervisorRetryingUntilReady(t *testing.T) {
	attempts := make(chan Health, 2)
	ready := make(chan struct{})
	var s *Supervisor
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		attempts <- s.Health()
		if call == 1 {
			return errors.New("connection reset")
		}
		<-ready
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	s = newTestSupervisor(l)
	s.backoff = Backoff{Initial: time.Millisecond, Max: time.Millisecond, Stable: time.Hour}
	startSupervisor(t, s)

	if first := <-attempts; first.State != StateStarting || first.Retrying {
		t.Errorf("first attempt: state %q, retrying %v; want starting, not retrying", first.State, first.Retrying)
	}
	if second := <-attempts; second.State != StateStarting || !second.Retrying {
		t.Errorf("attempt after a failure: state %q, retrying %v; want starting and retrying", second.State, second.Retrying)
	}
	close(ready)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })
	if s.Health().Retrying {
		t.Errorf("retrying after Ready: got true, want false")
	}
}
