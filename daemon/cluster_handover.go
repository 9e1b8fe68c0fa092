package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/agent-runner/agent-runner/cluster"
)

// listenerGate holds a term's listeners back until the handover delay
// ends, and fences their outbound actions on the term. A nil gate, as a
// single node has, lets everything through.
type listenerGate struct {
	opened chan struct{}
	timer  *time.Timer
	// until is when the delay ends, zero when there was none.
	until time.Time
	// previous is the node whose unclean end caused the delay.
	previous string
	// fence returns nil while the term is live.
	fence  func() error
	log    *slog.Logger
	denied atomic.Uint64
}

// newListenerGate returns a gate that opens after delay, at once when
// delay is 0, and fences on term.
func newListenerGate(term *cluster.Term, delay time.Duration, log *slog.Logger) *listenerGate {
	g := &listenerGate{opened: make(chan struct{}), previous: term.Handover.Previous, fence: term.CheckLive, log: log}
	if delay <= 0 {
		close(g.opened)
		return g
	}
	g.until = time.Now().Add(delay)
	g.timer = time.AfterFunc(delay, func() {
		log.Info("listener handover delay ended; starting listeners", "term", term.Rev)
		close(g.opened)
	})
	return g
}

// stop ends the delay's timer when the term ends first.
func (g *listenerGate) stop() {
	if g != nil && g.timer != nil {
		g.timer.Stop()
	}
}

// wait blocks until the gate opens, and returns false when ctx ends
// first.
func (g *listenerGate) wait(ctx context.Context) bool {
	if g == nil {
		return true
	}
	select {
	case <-g.opened:
		return true
	case <-ctx.Done():
		return false
	}
}

// waiting returns when the delay ends while it has not.
func (g *listenerGate) waiting() (time.Time, bool) {
	if g == nil {
		return time.Time{}, false
	}
	select {
	case <-g.opened:
		return time.Time{}, false
	default:
		return g.until, true
	}
}

// waitReason returns what status shows for a listener held back.
func (g *listenerGate) waitReason(until time.Time) string {
	return fmt.Sprintf("waiting for the handover until %s, because the previous leader %s did not resign and may still be connected",
		until.UTC().Format(time.RFC3339), g.previous)
}

// check returns nil when a listener may act now: the delay is over and
// the term is live. Otherwise it logs and counts the denial.
func (g *listenerGate) check(listener, action string) error {
	if g == nil {
		return nil
	}
	err := g.fence()
	if until, ok := g.waiting(); ok && err == nil {
		err = fmt.Errorf("listener %s is %s", listener, g.waitReason(until))
	}
	if err != nil {
		n := g.denied.Add(1)
		g.log.Warn("listener action dropped", "listener", listener, "action", action, "err", err, "dropped_total", n)
	}
	return err
}
