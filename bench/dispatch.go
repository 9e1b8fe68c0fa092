package bench

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// errNoChild is the Job.Problem of a no-op job. The run boundary records
// such a run as failed without starting a child, which makes it the only
// no-op work that the jobs package's public API allows.
var errNoChild = errors.New("benchmark job without a child process")

// DispatchOptions describes one dispatch-lateness measurement: Jobs jobs
// that share every slot, one slot each Period, and Slots measured slots,
// after one warm-up slot when Warmup is set.
type DispatchOptions struct {
	Jobs int
	// Period is a whole number of seconds. The warm-up and measured slots
	// together must span at most maxPlanSpan, or be a single slot, because
	// one cron seconds field lists them.
	Period time.Duration
	Slots  int
	Warmup bool
	// Children makes each agent-runner run start /bin/true. Without it a
	// run goes through lock, gate, claim, observer and finish, and records
	// errNoChild instead of starting a child. The baselines ignore it.
	Children bool
	// Dir is an empty folder for the store and the job locks.
	Dir string
}

// DispatchResult holds the samples of the measured slots.
type DispatchResult struct {
	// Lateness is, per run, the time from its slot to its entry into the
	// scheduler. For agent-runner it is the lateness argument of
	// jobs.Observer.RunStarted, which ends when the dispatcher woke to
	// take the slot's batch; for the baselines, time.Since(slot) at the
	// task's first line.
	Lateness []time.Duration `json:"lateness"`
	// Claimed is, per agent-runner run, the time from its slot to the
	// RunStarted call, which follows the claim's commit.
	Claimed []time.Duration `json:"claimed,omitempty"`
	// Expected is Jobs × Slots.
	Expected int `json:"expected"`
	// Skipped counts measured slots that found their job still running.
	Skipped int `json:"skipped"`
	// Overflow counts runs of measured slots past Expected, which would
	// mean that a slot ran twice.
	Overflow int `json:"overflow"`
	// Setup is how long storing and registering the jobs took.
	Setup time.Duration `json:"setup"`
	// PeakRSS is the VmHWM of the measuring process in KiB, or 0 when the
	// caller did not read it.
	PeakRSS int64 `json:"peak_rss_kib,omitempty"`
	// Runtime holds the peaks of the measuring process's Go runtime from
	// the start of the scheduler to the end of the measurement.
	Runtime RuntimePeaks `json:"runtime"`
}

// Missing returns how many expected runs neither started nor were
// skipped before the measurement gave up.
func (r DispatchResult) Missing() int {
	return r.Expected - len(r.Lateness) - r.Skipped
}

// slotLead is the time from planning the slots to the first of them,
// enough to register 10,000 jobs with gocron.
const slotLead = 2 * time.Second

// maxPlanSpan bounds the span of a plan of several slots. The seconds
// field repeats every minute, and a span of less than a minute minus
// slotLead keeps a listed second of the next minute from falling between
// the planning and the first slot.
const maxPlanSpan = 50 * time.Second

// slotWindow is the set of measured slots: count slots period apart from
// first, after warmup slots.
type slotWindow struct {
	first  time.Time
	period time.Duration
	count  int
	warmup int
}

// planSlots places the slots of opts on whole seconds from slotLead after
// now, and returns them with a cron expression whose seconds field lists
// them.
func planSlots(now time.Time, opts DispatchOptions) (slotWindow, string, error) {
	if opts.Period < time.Second || opts.Period%time.Second != 0 {
		return slotWindow{}, "", fmt.Errorf("invalid slot period %s: use a whole number of seconds", opts.Period)
	}
	if opts.Slots < 1 || opts.Jobs < 1 {
		return slotWindow{}, "", fmt.Errorf("invalid dispatch plan: %d slots of %d jobs; both must be at least 1", opts.Slots, opts.Jobs)
	}
	w := slotWindow{period: opts.Period, count: opts.Slots}
	if opts.Warmup {
		w.warmup = 1
	}
	total := w.warmup + w.count
	if total > 1 && time.Duration(total)*opts.Period > maxPlanSpan {
		return slotWindow{}, "", fmt.Errorf("invalid dispatch plan: %d slots %s apart span more than %s", total, opts.Period, maxPlanSpan)
	}
	start := now.Add(slotLead).Truncate(time.Second).Add(time.Second)
	w.first = start.Add(time.Duration(w.warmup) * opts.Period)
	seconds := make([]int, 0, total)
	for i := range total {
		seconds = append(seconds, start.Add(time.Duration(i)*opts.Period).UTC().Second())
	}
	slices.Sort(seconds)
	fields := make([]string, len(seconds))
	for i, second := range seconds {
		fields[i] = strconv.Itoa(second)
	}
	return w, strings.Join(fields, ",") + " * * * * *", nil
}

func (w slotWindow) last() time.Time {
	return w.first.Add(time.Duration(w.count-1) * w.period)
}

func (w slotWindow) contains(slot time.Time) bool {
	if slot.Before(w.first) || slot.After(w.last()) {
		return false
	}
	return slot.Sub(w.first)%w.period == 0
}

// slotBefore returns the latest planned slot, warm-up included, at or
// before t, or the first planned slot when t is earlier.
func (w slotWindow) slotBefore(t time.Time) time.Time {
	start := w.first.Add(-time.Duration(w.warmup) * w.period)
	if t.Before(start) {
		return start
	}
	return start.Add(t.Sub(start) / w.period * w.period)
}

// dispatchRecorder collects the samples of the measured slots and
// reports when every expected run has started or been skipped. Recording
// takes no lock, so that contention in the recorder does not delay the
// tasks it measures. Because of that, snapshot must only run once every
// recording call has returned.
type dispatchRecorder struct {
	window   slotWindow
	expected int64

	lateness []time.Duration
	claimed  []time.Duration
	// recorded counts the samples written, and overflow the samples
	// dropped because more runs started than expected.
	recorded atomic.Int64
	overflow atomic.Int64
	skipped  atomic.Int64
	// withClaims is set once a sample carries a claim time.
	withClaims atomic.Bool
	done       chan struct{}
	doneOnce   sync.Once
}

func newDispatchRecorder(window slotWindow, jobs int) *dispatchRecorder {
	expected := jobs * window.count
	return &dispatchRecorder{
		window:   window,
		expected: int64(expected),
		lateness: make([]time.Duration, expected),
		claimed:  make([]time.Duration, expected),
		done:     make(chan struct{}),
	}
}

func (r *dispatchRecorder) record(slot time.Time, lateness, claimed time.Duration, withClaim bool) {
	if !r.window.contains(slot) {
		return
	}
	i := r.recorded.Add(1) - 1
	if i >= r.expected {
		r.overflow.Add(1)
		return
	}
	r.lateness[i] = lateness
	if withClaim {
		r.claimed[i] = claimed
		r.withClaims.Store(true)
	}
	r.checkDone()
}

func (r *dispatchRecorder) skip(slot time.Time) {
	if !r.window.contains(slot) {
		return
	}
	r.skipped.Add(1)
	r.checkDone()
}

func (r *dispatchRecorder) checkDone() {
	if r.recorded.Load()+r.skipped.Load() >= r.expected {
		r.doneOnce.Do(func() { close(r.done) })
	}
}

// wait returns once every expected run started or was skipped, 30
// seconds and one period after the last measured slot, or when ctx ends.
func (r *dispatchRecorder) wait(ctx context.Context) error {
	deadline := r.window.last().Add(r.window.period + 30*time.Second)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-r.done:
		return nil
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// snapshot returns the samples. The caller must have stopped every task
// that records, so that no write races with the copy.
func (r *dispatchRecorder) snapshot() DispatchResult {
	n := min(r.recorded.Load(), r.expected)
	result := DispatchResult{
		Lateness: slices.Clone(r.lateness[:n]),
		Expected: int(r.expected),
		Skipped:  int(r.skipped.Load()),
		Overflow: int(r.overflow.Load()),
	}
	if r.withClaims.Load() {
		result.Claimed = slices.Clone(r.claimed[:n])
	}
	return result
}

// RunStarted implements jobs.Observer.
func (r *dispatchRecorder) RunStarted(run state.Run, lateness time.Duration) {
	if run.Trigger != state.TriggerSchedule {
		return
	}
	r.record(run.Slot, lateness, time.Since(run.Slot), true)
}

// RunFinished implements jobs.Observer.
func (r *dispatchRecorder) RunFinished(run state.Run) {
	if run.Trigger == state.TriggerSchedule && run.Result == state.ResultSkipped {
		r.skip(run.Slot)
	}
}

// DispatchRunner measures the lateness of the real jobs.Scheduler and
// jobs.Runner, with a store in opts.Dir. Every job is stored before the
// slots are planned, as a daemon's store holds them after its first
// start, so that planning does not have to guess how long 10,000 store
// commits take.
func DispatchRunner(ctx context.Context, opts DispatchOptions) (DispatchResult, error) {
	log := slog.New(slog.DiscardHandler)
	store, err := state.Open(filepath.Join(opts.Dir, "state.db"), state.Options{LockTimeout: 10 * time.Second, Logger: log})
	if err != nil {
		return DispatchResult{}, err
	}
	defer store.Close()
	reaper, err := process.NewReaper(log)
	if err != nil {
		return DispatchResult{}, err
	}
	defer reaper.Close()

	setupStart := time.Now()
	cfg := RunnerConfig(opts.Dir)
	for i := range opts.Jobs {
		job := TrueJob(fmt.Sprintf("job-%05d", i), opts.Dir)
		if !opts.Children {
			job.Problem = errNoChild
		}
		if _, err := store.EnsureJob(job.Name, setupStart); err != nil {
			return DispatchResult{}, err
		}
		cfg.Jobs = append(cfg.Jobs, job)
	}
	window, expr, err := planSlots(time.Now(), opts)
	if err != nil {
		return DispatchResult{}, err
	}
	for _, job := range cfg.Jobs {
		job.Cron = expr
	}
	runner := jobs.NewRunner(cfg, store, reaper, log, time.Now)
	recorder := newDispatchRecorder(window, opts.Jobs)
	runner.SetObserver(recorder)
	sched, err := jobs.NewScheduler(cfg, runner, store, clockwork.NewRealClock(), log)
	if err != nil {
		return DispatchResult{}, err
	}
	setup := time.Since(setupStart)

	stopSampling := sampleRuntime()
	runCtx, cancel := context.WithCancel(ctx)
	sched.Start(runCtx)
	waitErr := recorder.wait(ctx)

	cancel()
	stopCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	runner.Shutdown(stopCtx)
	stopErr := sched.Stop()
	result := recorder.snapshot()
	result.Setup = setup
	result.Runtime = stopSampling()
	return result, errors.Join(waitErr, stopErr)
}

// RunnerConfig returns a config without jobs whose state folder is dir,
// with the defaults that config.Load applies to an empty [runner] table.
func RunnerConfig(dir string) *config.Config {
	return &config.Config{
		Path: filepath.Join(dir, "config.toml"),
		Dir:  dir,
		Runner: config.Runner{
			StateDir:        dir,
			Socket:          filepath.Join(dir, "control.sock"),
			Location:        time.UTC,
			Path:            []string{"/usr/local/bin", "/usr/bin", "/bin"},
			ShutdownTimeout: 30 * time.Second,
			KillGrace:       10 * time.Second,
			HistoryLimit:    50,
		},
	}
}

// TrueJob returns an enabled job that runs true, with the policy defaults
// of config.Load and no schedule: callers set Cron, Every or nothing, for
// a job run only by hand.
func TrueJob(name, dir string) *config.Job {
	return &config.Job{
		Name:         name,
		Command:      []string{"true"},
		Location:     time.UTC,
		WorkingDir:   dir,
		Env:          map[string]config.Secret{},
		CatchUp:      config.CatchUpOnce,
		MaxCatchUp:   10,
		Overlap:      config.OverlapSkip,
		RetryBackoff: 30 * time.Second,
		Enabled:      true,
	}
}

// DispatchGocron measures bare gocron v2: one no-op task per job on the
// same cron expression, recording time.Since(slot) at the task's start.
// The slot is the latest planned slot at or before the task's start,
// which assumes a lateness below one period.
func DispatchGocron(ctx context.Context, opts DispatchOptions) (DispatchResult, error) {
	window, expr, err := planSlots(time.Now(), opts)
	if err != nil {
		return DispatchResult{}, err
	}
	cron, err := gocron.NewScheduler(gocron.WithLocation(time.UTC))
	if err != nil {
		return DispatchResult{}, err
	}

	recorder := newDispatchRecorder(window, opts.Jobs)
	task := func() {
		now := time.Now()
		slot := window.slotBefore(now)
		recorder.record(slot, now.Sub(slot), 0, false)
	}

	setupStart := time.Now()
	for range opts.Jobs {
		if _, err := cron.NewJob(gocron.CronJob(expr, true), gocron.NewTask(task)); err != nil {
			_ = cron.Shutdown()
			return DispatchResult{}, err
		}
	}
	stopSampling := sampleRuntime()
	cron.Start()
	setup := time.Since(setupStart)
	waitErr := recorder.wait(ctx)
	stopErr := cron.Shutdown()
	result := recorder.snapshot()
	result.Setup = setup
	result.Runtime = stopSampling()
	return result, errors.Join(waitErr, stopErr)
}

// timerEntry is one job in the hand-written timer heap.
type timerEntry struct {
	next time.Time
	job  int
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	last := old[len(old)-1]
	*h = old[:len(old)-1]
	return last
}

// DispatchTimerHeap measures the simplest scheduler that does the same
// work: a min-heap of next slots under one time.Timer, starting a
// goroutine per due job that records time.Since(slot) at its start.
func DispatchTimerHeap(ctx context.Context, opts DispatchOptions) (DispatchResult, error) {
	window, _, err := planSlots(time.Now(), opts)
	if err != nil {
		return DispatchResult{}, err
	}
	recorder := newDispatchRecorder(window, opts.Jobs)
	first := window.first.Add(-time.Duration(window.warmup) * window.period)
	h := make(timerHeap, opts.Jobs)
	for i := range h {
		h[i] = timerEntry{next: first, job: i}
	}
	heap.Init(&h)

	stopSampling := sampleRuntime()
	stop := make(chan struct{})
	var loop, tasks sync.WaitGroup
	loop.Add(1)
	go func() {
		defer loop.Done()
		timer := time.NewTimer(time.Until(h[0].next))
		defer timer.Stop()
		for {
			select {
			case <-stop:
				return
			case <-timer.C:
			}
			now := time.Now()
			for !h[0].next.After(now) {
				slot := h[0].next
				tasks.Add(1)
				go func() {
					recorder.record(slot, time.Since(slot), 0, false)
					tasks.Done()
				}()
				h[0].next = slot.Add(opts.Period)
				heap.Fix(&h, 0)
			}
			timer.Reset(time.Until(h[0].next))
		}
	}()
	waitErr := recorder.wait(ctx)
	close(stop)
	loop.Wait()
	tasks.Wait()
	result := recorder.snapshot()
	result.Runtime = stopSampling()
	return result, waitErr
}

// RuntimeSampleInterval is how often a dispatch measurement reads the Go
// runtime's goroutine count and memory classes.
const RuntimeSampleInterval = 100 * time.Millisecond

// RuntimePeaks are the highest values the sampler read in the measuring
// process.
type RuntimePeaks struct {
	Goroutines uint64 `json:"goroutines"`
	// StackBytes is the memory of goroutine stacks.
	StackBytes uint64 `json:"stack_bytes"`
	// HeapBytes is the memory of heap objects, live and not yet swept.
	HeapBytes uint64 `json:"heap_bytes"`
}

// PollEvery calls poll from its own goroutine every interval until the
// returned stop function is called. Stop returns after the goroutine has
// exited, so the caller can read what poll wrote without a lock.
func PollEvery(interval time.Duration, poll func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				poll()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// sampleRuntime reads runtime/metrics, which does not stop the world,
// every RuntimeSampleInterval until the returned function is called. That
// function returns the peaks.
func sampleRuntime() func() RuntimePeaks {
	samples := []metrics.Sample{
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}
	var peaks RuntimePeaks
	read := func() {
		metrics.Read(samples)
		peaks.Goroutines = max(peaks.Goroutines, samples[0].Value.Uint64())
		peaks.StackBytes = max(peaks.StackBytes, samples[1].Value.Uint64())
		peaks.HeapBytes = max(peaks.HeapBytes, samples[2].Value.Uint64())
	}
	stop := PollEvery(RuntimeSampleInterval, read)
	return func() RuntimePeaks {
		stop()
		read()
		return peaks
	}
}
