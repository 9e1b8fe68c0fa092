package jobs

import (
	"context"
	"sort"
	"sync"
	"time"
)

// gate caps the runs going on at once across all jobs. Runs over the cap
// wait in slot order, so a backlog drains oldest slot first.
type gate struct {
	mu      sync.Mutex
	limit   int
	running int
	waiting []*waiter
	seq     uint64
}

type waiter struct {
	key   time.Time
	seq   uint64
	ready chan struct{}
}

// setLimit changes the cap; 0 means none.
func (g *gate) setLimit(limit int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit = limit
	g.grantLocked()
}

// acquire waits for a place. key orders the waiters: the slot of a
// scheduled run, the request time of any other. onWait, when set, is
// called once if there is no free place, before the wait.
func (g *gate) acquire(ctx context.Context, key time.Time, onWait func()) error {
	g.mu.Lock()
	if g.limit <= 0 || (g.running < g.limit && len(g.waiting) == 0) {
		g.running++
		g.mu.Unlock()
		return nil
	}
	g.seq++
	w := &waiter{key: key, seq: g.seq, ready: make(chan struct{})}
	i := sort.Search(len(g.waiting), func(i int) bool { return w.before(g.waiting[i]) })
	g.waiting = append(g.waiting, nil)
	copy(g.waiting[i+1:], g.waiting[i:])
	g.waiting[i] = w
	g.mu.Unlock()
	if onWait != nil {
		onWait()
	}

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		select {
		case <-w.ready:
			// Granted while giving up: pass the place on.
			g.running--
			g.grantLocked()
		default:
			g.removeLocked(w)
		}
		return context.Cause(ctx)
	}
}

func (w *waiter) before(o *waiter) bool {
	if !w.key.Equal(o.key) {
		return w.key.Before(o.key)
	}
	return w.seq < o.seq
}

// release frees a place taken by acquire.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	g.grantLocked()
}

func (g *gate) grantLocked() {
	for len(g.waiting) > 0 && (g.limit <= 0 || g.running < g.limit) {
		w := g.waiting[0]
		g.waiting = g.waiting[1:]
		g.running++
		close(w.ready)
	}
}

func (g *gate) removeLocked(w *waiter) {
	for i, other := range g.waiting {
		if other == w {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			return
		}
	}
}
