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
	// StateWaiting is a cluster leader's listener that waits out the
	// handover from a previous leader that did not resign.
	StateWaiting = "waiting"
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

// untilRetry returns wait, or the time until err's RetryError.At when
// that is later, capped at Max.
func (b Backoff) untilRetry(err error, wait time.Duration) time.Duration {
	var retry *RetryError
	if !errors.As(err, &retry) {
		return wait
	}
	return max(wait, min(time.Until(retry.At), b.Max))
}

// Health is what list and status show of one listener.
type Health struct {
	Name  string    `json:"name"`
	Kind  string    `json:"kind"`
	State string    `json:"state"`
	Since time.Time `json:"since"`
	// Restarts counts how often the listener was started again after a
	// failure.
	Restarts  int    `json:"restarts"`
	LastError string `json:"last_error,omitempty"`
	// Retrying is true while a listener in StateStarting connects again
	// after a failure, as opposed to its first start or a restart for a
	// new config. Health checks count it as down, so that a listener
	// that keeps failing does not show as healthy while each attempt
	// connects.
	Retrying  bool      `json:"retrying,omitempty"`
	LastEvent time.Time `json:"last_event,omitzero"`
	Handled   uint64    `json:"handled"`
	Dropped   uint64    `json:"dropped"`
	// Fenced counts events and replies dropped because this cluster node
	// no longer held a live term.
	Fenced uint64 `json:"fenced,omitempty"`
	// Stale is true when a running listener has had no event for longer
	// than its stale_after: see StaleReason.
	Stale bool `json:"stale"`
	// StaleReason is the reason the listener is stale, such as "no event for
	// 20m0s (stale_after 15m0s)"; empty otherwise.
	StaleReason string `json:"stale_reason,omitempty"`
}

// Supervisor runs one listener for the daemon's lifetime: it restarts the
// listener after every failure or panic, with capped backoff, and never
// returns before its context ends, so one broken listener cannot stop
// the rest of the run group.
type Supervisor struct {
	kv      KV
	log     *slog.Logger
	backoff Backoff

	mu       sync.Mutex
	health   Health
	listener Listener
	router   *Router
	// stopAttempt ends the running attempt, so a replaced listener
	// restarts at once and a retired one stops.
	stopAttempt context.CancelFunc
	// attemptRouter is the router of the running attempt, and
	// attemptSlot the slot its listener delivers through. Both are nil
	// between attempts.
	attemptRouter *Router
	attemptSlot   *routerSlot
	// wake ends a backoff wait early, so that Replace and Retire take
	// effect at once. It holds at most one signal.
	wake chan struct{}
	// redact removes secrets from errors; nil changes nothing.
	redact func(string) string
	// staleAfter is the listener's stale_after; 0 turns the check off.
	staleAfter time.Duration
	// connectedBefore is the longest time the running attempt stayed
	// connected before a Reconnecting, which the stable period counts.
	connectedBefore time.Duration
	replaced        bool
	retired         bool
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
		wake:     make(chan struct{}, 1),
		health:   Health{Name: name, Kind: kind, State: StateStarting, Since: time.Now()},
	}
}

// Run runs the listener until ctx ends. It returns nil then, and never
// earlier.
func (s *Supervisor) Run(ctx context.Context) error {
	failures := 0
	for {
		if s.isRetired() {
			s.setState(StateStopped, nil)
			<-ctx.Done()
			return nil
		}
		s.setStarting(failures > 0)
		started := time.Now()
		err := s.runAttempt(ctx)
		if ctx.Err() != nil {
			s.setState(StateStopped, nil)
			return nil
		}
		if s.takeReplaced() {
			failures = 0
			continue
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
		wait = s.backoff.untilRetry(err, wait)
		failures++
		s.setState(state, err)
		s.log.Error("listener failed; restarting", "err", err, "state", state, "retry_in", wait.Round(time.Millisecond))
		if !s.sleep(ctx, wait) {
			if ctx.Err() != nil {
				s.setState(StateStopped, nil)
				return nil
			}
			// A new config starts a fresh backoff sequence.
			failures = 0
			continue
		}
		s.mu.Lock()
		s.health.Restarts++
		s.mu.Unlock()
	}
}

// sleep waits out a backoff. It returns false when ctx ends first, or
// when Replace or Retire ends the wait so the new config applies at once.
func (s *Supervisor) sleep(ctx context.Context, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-s.wake:
		return false
	case <-timer.C:
		return true
	}
}

// runAttempt runs the current listener once, in a context that Replace
// and Retire can end, and turns a panic into an error.
func (s *Supervisor) runAttempt(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	listener, slot, ok := s.beginAttempt(cancel)
	if !ok {
		return nil
	}
	defer s.endAttempt()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("listener panicked", "err", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return listener.Run(ctx, host{s, slot})
}

// beginAttempt takes the current listener and router for one attempt,
// or returns false when the supervisor was retired. The attempt runs the
// newest config, so an earlier Replace has taken effect and its wake
// signal and replaced mark are cleared: a later failure waits its
// backoff.
func (s *Supervisor) beginAttempt(cancel context.CancelFunc) (Listener, *routerSlot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retired {
		return nil, nil, false
	}
	s.stopAttempt, s.replaced, s.connectedBefore = cancel, false, 0
	s.attemptRouter, s.attemptSlot = s.router, newRouterSlot(s.router)
	select {
	case <-s.wake:
	default:
	}
	return s.listener, s.attemptSlot, true
}

// endAttempt drains the attempt's router when Replace or Retire took it
// out of use, because the listener run that delivered to it has ended.
func (s *Supervisor) endAttempt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	router := s.attemptRouter
	s.attemptRouter, s.attemptSlot = nil, nil
	if router != s.router || s.retired {
		go s.drain(router)
	}
}

// Replace swaps in a listener built from a changed config. The running
// connection closes, or a backoff wait ends, and the new listener starts
// at once. The old router is drained once no attempt can deliver to it
// any more. Replace returns the old router, for the caller to close at
// shutdown if the drain has not finished by then. Health takes the kind
// from the config of router, because a reload may change the kind.
func (s *Supervisor) Replace(listener Listener, router *Router) *Router {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.router
	s.listener, s.router, s.replaced = listener, router, true
	s.health.Kind = router.cfg.Kind
	if old != s.attemptRouter && old != router {
		go s.drain(old)
	}
	s.stopLocked()
	return old
}

// Update swaps in router, built from a config whose changes the router
// alone applies, while the listener keeps running. Its connection stays
// open, and the next event it delivers goes to router. The new router
// shares the counters, the connection time and the command cooldowns of
// the old one, which is drained once nothing delivers to it any more.
// A backoff wait goes on.
//
// Update does not wait for a delivery in progress, such as one whose
// log_to write hangs on a stuck disk: that delivery ends in the old
// router, and a goroutine drains the old router after it. So Update
// returns without waiting for any delivery, and status and reloads go on
// meanwhile. Update returns the old router, for the caller to close at
// shutdown if the drain has not finished by then.
func (s *Supervisor) Update(router *Router) *Router {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.router
	router.inherit(old)
	switch {
	case s.attemptSlot != nil && s.attemptRouter == old:
		idle := s.attemptSlot.swap(router)
		s.attemptRouter = router
		go s.drainWhenIdle(old, idle)
	case old != s.attemptRouter:
		go s.drain(old)
	}
	s.router = router
	return old
}

// slowDrainWarning is how long a router that Update replaced may wait for
// its deliveries in progress before a warning names the stuck delivery.
const slowDrainWarning = 30 * time.Second

// drainWhenIdle drains router once idle closes, which happens when the
// last delivery to it has ended. It warns when that takes longer than
// slowDrainWarning, because a delivery that takes that long is stuck,
// as on a hung log_to write.
func (s *Supervisor) drainWhenIdle(router *Router, idle <-chan struct{}) {
	timer := time.NewTimer(slowDrainWarning)
	defer timer.Stop()
	select {
	case <-idle:
	case <-timer.C:
		s.log.Warn("replaced router still waits for a delivery in progress before it closes, so the delivery may be stuck on its log_to write", "waited", slowDrainWarning)
		<-idle
		s.log.Info("delivery in progress ended; closing the replaced router")
	}
	s.drain(router)
}

// Retire stops the listener for good while the supervisor's run-group
// actor, which cannot leave the group, idles until shutdown. The router
// is drained once the running attempt, if any, has ended.
func (s *Supervisor) Retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retired = true
	// The attempt's own router is drained when the attempt ends. A router
	// that a Replace installed after the attempt began is never used.
	if s.router != s.attemptRouter {
		go s.drain(s.router)
	}
	s.stopLocked()
}

// drain drains a router that Replace or Retire took out of use.
func (s *Supervisor) drain(router *Router) {
	if err := router.Drain(); err != nil {
		s.log.Error("close the router of a replaced or removed listener failed", "err", err)
	}
}

// stopLocked ends the running attempt and any backoff wait. The caller
// holds mu.
func (s *Supervisor) stopLocked() {
	if s.stopAttempt != nil {
		s.stopAttempt()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Supervisor) isRetired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.retired
}

// takeReplaced reports whether the last attempt ended because of Replace
// or Retire, and clears the replaced mark.
func (s *Supervisor) takeReplaced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	replaced := s.replaced || s.retired
	s.replaced = false
	return replaced
}

// connectedSince returns how long the listener stayed connected in the
// attempt that began at started, counting the time before a connection
// that Reconnecting reported lost and that the attempt did not get back.
func (s *Supervisor) connectedSince(started time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.connectedNow(started), s.connectedBefore)
}

// connectedNow returns how long the listener has been running since it
// last became ready in the attempt that began at started. The caller
// holds mu.
func (s *Supervisor) connectedNow(started time.Time) time.Duration {
	if s.health.State != StateRunning || s.health.Since.Before(started) {
		return 0
	}
	return time.Since(s.health.Since)
}

// setStarting marks the start of an attempt, which retries a failure
// when retrying is set.
func (s *Supervisor) setStarting(retrying bool) {
	s.setState(StateStarting, nil)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health.Retrying = retrying
}

func (s *Supervisor) setState(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health.State = state
	s.health.Since = time.Now()
	s.health.Retrying = false
	if err != nil {
		s.health.LastError = err.Error()
		if s.redact != nil {
			s.health.LastError = s.redact(s.health.LastError)
		}
	}
}

// SetRedact sets the function that removes the listener's secrets from
// the errors its health shows, since a server may echo a credential in
// an error.
func (s *Supervisor) SetRedact(redact func(string) string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redact = redact
}

// Health returns the listener's health with the router's counters.
func (s *Supervisor) Health() Health {
	s.mu.Lock()
	h, router, staleAfter := s.health, s.router, s.staleAfter
	s.mu.Unlock()
	h.Handled, h.Dropped, h.LastEvent = router.counts()
	h.Fenced = router.fencedCount()
	h.StaleReason = staleReason(h, staleAfter, time.Now())
	h.Stale = h.StaleReason != ""
	return h
}

// SetStaleAfter sets how long the running listener may go without an
// event before Health marks it stale; 0 turns the check off.
func (s *Supervisor) SetStaleAfter(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staleAfter = d
}

// staleReason returns why a running listener is stale at now, or "".
// Its last event counts, or the time it connected when no event came
// yet.
func staleReason(h Health, staleAfter time.Duration, now time.Time) string {
	if staleAfter <= 0 || h.State != StateRunning {
		return ""
	}
	last, what := h.LastEvent, "no event"
	if last.IsZero() {
		last, what = h.Since, "no event since connecting"
	}
	age := now.Sub(last)
	if age <= staleAfter {
		return ""
	}
	return fmt.Sprintf("%s for %s (stale_after %s)", what, age.Round(time.Second), staleAfter)
}

// Listener returns the listener the supervisor runs, for replies and
// sends.
func (s *Supervisor) Listener() Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listener
}

// routerSlot holds the router that one attempt of a listener delivers
// to. Update swaps it while the attempt runs. A delivery registers with
// the router it took from the slot, and the lock covers only that step,
// so a swap never waits for a delivery. The old router is drained once
// its registered deliveries end, so no event goes to it after it closed.
type routerSlot struct {
	mu      sync.RWMutex
	current *slotRouter
}

// slotRouter is a router in a slot and the deliveries in progress to it.
// deliveries gains members only while the router is the slot's current
// one, so once a swap has replaced it, Wait on deliveries is safe and
// ends with the last delivery.
type slotRouter struct {
	router     *Router
	deliveries sync.WaitGroup
}

func newRouterSlot(router *Router) *routerSlot {
	return &routerSlot{current: &slotRouter{router: router}}
}

// acquire returns the current router with a delivery registered, which
// the caller ends with deliveries.Done.
func (slot *routerSlot) acquire() *slotRouter {
	slot.mu.RLock()
	defer slot.mu.RUnlock()
	current := slot.current
	current.deliveries.Add(1)
	return current
}

func (slot *routerSlot) connected(at time.Time) {
	current := slot.acquire()
	defer current.deliveries.Done()
	current.router.connected(at)
}

func (slot *routerSlot) deliver(ev Event) {
	current := slot.acquire()
	defer current.deliveries.Done()
	current.router.Deliver(ev)
}

// swap makes router the slot's router at once. It returns a channel that
// closes once the deliveries in progress to the old router have ended.
func (slot *routerSlot) swap(router *Router) <-chan struct{} {
	slot.mu.Lock()
	old := slot.current
	slot.current = &slotRouter{router: router}
	slot.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		old.deliveries.Wait()
		close(idle)
	}()
	return idle
}

// host is the Host a supervisor gives one attempt of its listener.
type host struct {
	s    *Supervisor
	slot *routerSlot
}

func (h host) Ready() {
	h.s.setState(StateRunning, nil)
	h.slot.connected(time.Now())
	h.s.log.Info("listener connected")
}

func (h host) Reconnecting(cause error) {
	h.s.mu.Lock()
	if h.s.health.State == StateRunning {
		// The stable period counts this time, since the state below
		// no longer shows it.
		h.s.connectedBefore = max(h.s.connectedBefore, time.Since(h.s.health.Since))
	}
	h.s.mu.Unlock()
	h.s.setState(StateStarting, cause)
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.health.Retrying = true
}

func (h host) Deliver(ev Event) { h.slot.deliver(ev) }

func (h host) Log() *slog.Logger { return h.s.log }

func (h host) State() KV { return h.s.kv }
