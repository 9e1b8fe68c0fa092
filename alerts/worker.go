package alerts

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/agent-runner/agent-runner/internal/wait"
)

// retryPolicy is how often and how long a worker retries one alert.
type retryPolicy struct {
	// attempts is the maximum number of Send calls per alert.
	attempts int
	// initial is the first backoff, doubled after each failure up to max.
	initial time.Duration
	max     time.Duration
	// maxRetryAfter caps the wait that a receiver requests, so a bogus
	// Retry-After cannot park a sink for hours.
	maxRetryAfter time.Duration
}

// defaultRetry waits 1s, 2s, 4s and 8s between five attempts.
var defaultRetry = retryPolicy{
	attempts:      5,
	initial:       time.Second,
	max:           30 * time.Second,
	maxRetryAfter: 5 * time.Minute,
}

// wait returns how long to wait after attempt failed with err, and false
// when the alert should not be retried.
func (p retryPolicy) wait(err error, attempt int, backoff time.Duration) (time.Duration, bool) {
	if attempt >= p.attempts {
		return 0, false
	}
	var permanent *PermanentError
	if errors.As(err, &permanent) {
		return 0, false
	}
	var after *RetryAfterError
	if errors.As(err, &after) {
		return min(max(after.Wait, 0), p.maxRetryAfter), true
	}
	return backoff, true
}

// worker delivers the alerts of one sink, one at a time, in order. Only
// its goroutine touches keys, so the deduplication state needs no lock.
type worker struct {
	sink   Sink
	cfg    SinkConfig
	queue  chan Alert
	policy *retryPolicy
	d      *Dispatcher
	log    *slog.Logger
	keys   map[string]*keyState
	// memory, when set, keeps keys across restarts.
	memory *Memory
}

// keyState is one sink's deduplication state for one alert key.
type keyState struct {
	// alerted is set once a failure alert for the key was delivered, and
	// the state is deleted when the key recovers.
	alerted bool
	events  map[string]*eventState
}

// eventState tracks the cooldown of one key and event.
type eventState struct {
	// lastSent is the Time of the last delivered alert, zero if none was.
	lastSent   time.Time
	suppressed int
}

func newWorker(s SinkConfigured, d *Dispatcher) *worker {
	return &worker{
		sink:   s.Sink,
		cfg:    s.Config.withDefaults(),
		queue:  make(chan Alert, queueSize),
		policy: &d.retry,
		d:      d,
		log:    d.log.With("sink", s.Sink.Name()),
		keys:   make(map[string]*keyState),
	}
}

// run handles queued alerts until ctx ends, then drains the queue until
// deliverCtx ends.
func (w *worker) run(ctx, deliverCtx context.Context) {
	for {
		select {
		case <-ctx.Done():
			w.drain(deliverCtx)
			return
		case a := <-w.queue:
			w.handle(deliverCtx, a)
		}
	}
}

// drain handles what is left in the queue, and counts as dropped what
// deliverCtx leaves no time for.
func (w *worker) drain(deliverCtx context.Context) {
	for deliverCtx.Err() == nil {
		select {
		case a := <-w.queue:
			w.handle(deliverCtx, a)
		default:
			return
		}
	}
	abandoned := 0
	for len(w.queue) > 0 {
		<-w.queue
		abandoned++
	}
	if abandoned > 0 {
		w.d.dropped.Add(uint64(abandoned))
		w.log.Warn("shutdown drain timed out; dropped queued alerts", "dropped", abandoned)
	}
}

// handle delivers a unless deduplication holds it back.
func (w *worker) handle(ctx context.Context, a Alert) {
	a, ok := w.admit(a)
	if !ok {
		return
	}
	attempts, err := w.deliver(ctx, a)
	w.record(a, err == nil)
	if err != nil {
		w.log.Error("deliver alert failed; giving up",
			"key", a.Key, "event", a.Event, "run_id", a.RunID, "attempts", attempts, "err", err)
		return
	}
	w.log.Info("sent alert", "key", a.Key, "event", a.Event, "run_id", a.RunID, "attempts", attempts)
}

// admit decides whether a goes out. A recovery goes out only after a
// delivered failure alert for its key. A failure goes out unless an alert
// with the same key and event was delivered less than the cooldown before
// it. The returned alert carries the number of repeats suppressed since
// then.
func (w *worker) admit(a Alert) (Alert, bool) {
	state := w.keys[a.Key]
	if !isFailure(a.Event) {
		if state == nil || !state.alerted {
			w.log.Debug("skipped recovery alert because no failure alert was sent", "key", a.Key)
			return a, false
		}
		return a, true
	}
	if state == nil {
		return a, true
	}
	event := state.events[a.Event]
	if event == nil {
		return a, true
	}
	if !event.lastSent.IsZero() && a.Time.Sub(event.lastSent) < w.cfg.Cooldown {
		event.suppressed++
		w.remember(a.Key)
		w.log.Debug("suppressed repeated alert within cooldown",
			"key", a.Key, "event", a.Event, "suppressed", event.suppressed, "cooldown", w.cfg.Cooldown)
		return a, false
	}
	a.Suppressed = event.suppressed
	return a, true
}

// record updates the deduplication state after a delivery. A recovery
// clears the key even when its delivery failed, because the failure is
// over either way. A failure that could not be delivered starts no
// cooldown and keeps the suppressed count, so the next one is tried at
// once and still reports the repeats.
func (w *worker) record(a Alert, delivered bool) {
	if !isFailure(a.Event) {
		delete(w.keys, a.Key)
		w.remember(a.Key)
		return
	}
	if !delivered {
		return
	}
	state := w.keys[a.Key]
	if state == nil {
		state = &keyState{events: make(map[string]*eventState)}
		w.keys[a.Key] = state
	}
	state.alerted = true
	state.events[a.Event] = &eventState{lastSent: a.Time}
	w.remember(a.Key)
}

// remember passes the state of key to the memory, if there is one.
func (w *worker) remember(key string) {
	if w.memory != nil {
		w.memory.update(w.sink.Name(), key, w.keys[key])
	}
}

// deliver sends a with retries and returns the number of attempts made.
func (w *worker) deliver(ctx context.Context, a Alert) (int, error) {
	backoff := w.policy.initial
	for attempt := 1; ; attempt++ {
		err := w.sink.Send(ctx, a)
		if err == nil {
			return attempt, nil
		}
		delay, retry := w.policy.wait(err, attempt, backoff)
		if !retry || ctx.Err() != nil {
			return attempt, err
		}
		w.log.Warn("deliver alert failed; retrying",
			"key", a.Key, "event", a.Event, "attempt", attempt, "retry_in", delay, "err", err)
		if wait.For(ctx, delay) != nil {
			return attempt, err
		}
		backoff = min(backoff*2, w.policy.max)
	}
}
