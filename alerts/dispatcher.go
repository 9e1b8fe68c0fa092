package alerts

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// queueSize is the number of alerts each sink's queue holds. Alerts
	// that arrive while a sink's queue is full are dropped for that sink.
	queueSize = 256
	// defaultDrainTimeout bounds the deliveries that Run still makes after
	// its context ends, so a dead sink cannot hold up shutdown.
	defaultDrainTimeout = 3 * time.Second
	// defaultDropLogInterval is the minimum time between two log records
	// about dropped alerts.
	defaultDropLogInterval = time.Minute
)

// SinkConfigured is a sink paired with the settings that decide which
// alerts reach it and how often.
type SinkConfigured struct {
	Sink   Sink
	Config SinkConfig
}

// Dispatcher receives alerts from the runner and the listeners and
// delivers them without making the caller wait for a sink. Each sink has
// its own queue and goroutine, so a slow sink does not delay another one.
type Dispatcher struct {
	log     *slog.Logger
	workers []*worker
	dropped atomic.Uint64
	// memory, when set by Remember, keeps the deduplication state.
	memory *Memory

	// The fields below are set by NewDispatcher, and tests shorten them
	// before Run.
	retry           retryPolicy
	drainTimeout    time.Duration
	dropLogInterval time.Duration

	dropMu     sync.Mutex
	dropLogged time.Time
	// dropPending counts the drops not logged yet, by sink name.
	dropPending map[string]uint64
	// dropFlush is the timer that logs the drops held back within
	// dropLogInterval once it ends, so that the count of a storm that
	// stops is logged too.
	dropFlush *time.Timer
}

// NewDispatcher returns a dispatcher for sinks. Zero durations in their
// configs take the defaults.
func NewDispatcher(sinks []SinkConfigured, log *slog.Logger) *Dispatcher {
	d := &Dispatcher{
		log:             log,
		retry:           defaultRetry,
		drainTimeout:    defaultDrainTimeout,
		dropLogInterval: defaultDropLogInterval,
	}
	for _, s := range sinks {
		d.workers = append(d.workers, newWorker(s, d))
	}
	return d
}

// Remember loads each sink's deduplication state from m and keeps it
// there from then on. Call it before Run.
// The state of sinks that are no longer configured is dropped.
func (d *Dispatcher) Remember(m *Memory) {
	d.memory = m
	names := make([]string, 0, len(d.workers))
	for _, w := range d.workers {
		w.memory = m
		w.keys = m.keys(w.sink.Name())
		names = append(names, w.sink.Name())
	}
	m.retain(names)
}

// Alerted returns the keys whose failure alert a sink delivered and no
// recovery has ended, as the memory keeps them; nil without a memory.
func (d *Dispatcher) Alerted() map[string]bool {
	if d.memory == nil {
		return nil
	}
	return d.memory.Alerted()
}

// Notify queues a for every sink whose events include a.Event. It never
// waits for a sink. When a sink's queue is full, the alert is dropped for
// that sink, counted in Dropped and logged at most once per minute. Alerts
// queued before Run starts wait for it.
func (d *Dispatcher) Notify(a Alert) {
	if a.Time.IsZero() {
		a.Time = time.Now()
	}
	if a.Key == "" {
		a.Key = a.Kind + ":" + a.Name
	}
	a.Suppressed = 0
	for _, w := range d.workers {
		if !w.cfg.wants(a.Event) {
			continue
		}
		select {
		case w.queue <- a:
		default:
			d.dropped.Add(1)
			d.noteDrop(w.sink.Name())
		}
	}
}

// Dropped returns how many alerts were dropped because a sink's queue was
// full or shutdown cut its drain short, counting each sink separately.
func (d *Dispatcher) Dropped() uint64 { return d.dropped.Load() }

// Run delivers alerts until ctx ends. It then keeps delivering what is
// queued, and the attempt in flight, for at most the drain timeout, and
// returns once every sink's goroutine has stopped. Call it once.
func (d *Dispatcher) Run(ctx context.Context) {
	deliverCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(d.drainTimeout, cancel) })
	defer stop()

	var wg sync.WaitGroup
	for _, w := range d.workers {
		wg.Go(func() { w.run(ctx, deliverCtx) })
	}
	wg.Wait()
	if d.memory != nil {
		d.memory.Flush()
	}
}

// noteDrop logs dropped alerts, but at most once per dropLogInterval, so
// a flood of alerts does not also flood the log. The drops held back are
// logged when the interval ends.
func (d *Dispatcher) noteDrop(sink string) {
	d.dropMu.Lock()
	if d.dropPending == nil {
		d.dropPending = map[string]uint64{}
	}
	d.dropPending[sink]++
	now := time.Now()
	if wait := d.dropLogInterval - now.Sub(d.dropLogged); wait > 0 {
		if d.dropFlush == nil {
			d.dropFlush = time.AfterFunc(wait, d.flushDrops)
		}
		d.dropMu.Unlock()
		return
	}
	pending := d.takePendingDrops(now)
	d.dropMu.Unlock()
	d.logDrops(pending)
}

// flushDrops logs the drops that noteDrop held back, if any.
func (d *Dispatcher) flushDrops() {
	d.dropMu.Lock()
	d.dropFlush = nil
	pending := d.takePendingDrops(time.Now())
	d.dropMu.Unlock()
	d.logDrops(pending)
}

// takePendingDrops returns the drops not logged yet and marks them
// logged at now, unless there are none. The caller holds dropMu.
func (d *Dispatcher) takePendingDrops(now time.Time) map[string]uint64 {
	pending := d.dropPending
	if len(pending) > 0 {
		d.dropLogged, d.dropPending = now, nil
	}
	return pending
}

// logDrops logs one line per sink with its count of dropped alerts.
func (d *Dispatcher) logDrops(pending map[string]uint64) {
	for _, sink := range slices.Sorted(maps.Keys(pending)) {
		d.log.Warn("alert queue full; dropped alerts",
			"sink", sink, "dropped", pending[sink], "dropped_total", d.dropped.Load(), "queue_size", queueSize)
	}
}
