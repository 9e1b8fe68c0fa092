// Package jobs runs scheduled jobs: the run boundary (overlap, durable
// slot claim, timeout, panic recovery, output capture and recording), the
// dispatcher with its worker pool, and catch-up after downtime.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/internal/wait"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// Errors of Runner.Run.
var (
	ErrUnknownJob = errors.New("unknown job")
	ErrBusy       = errors.New("job is already running")
	ErrStopping   = errors.New("runner is shutting down")
)

// errWaitsForPlace is the ErrBusy of a job whose lock a run holds that has
// not started: it waits for a max_concurrent place, so "already running"
// would send its user looking for a process that does not exist.
var errWaitsForPlace = busyError("a run of the job waits for a free place under max_concurrent")

// busyError is an ErrBusy with its own text.
type busyError string

func (e busyError) Error() string        { return string(e) }
func (e busyError) Is(target error) bool { return target == ErrBusy }

// Request asks for one run of a job.
type Request struct {
	Job     string
	Trigger string
	// Slot is the schedule slot the run serves; zero for a manual run.
	Slot time.Time
	// Next is the slot after this one, recorded as the job's next run.
	Next time.Time
	// Wait makes a manual run wait for a running one instead of failing
	// with ErrBusy.
	Wait bool
	// Output receives every output line as it is read; it may be nil.
	// It is called from the goroutine of Run, one line at a time.
	Output func(Line)
	// Started, when set, is called once the run is claimed and about to
	// start.
	Started func(state.Run)
	// Waiting, when set, is called when the run waits for a free place
	// under max_concurrent.
	Waiting func()
	// WaitingForRun, when set, is called when a run with Wait waits for
	// a running run of its job to end.
	WaitingForRun func()

	// entered is when the scheduler's dispatcher woke to take the
	// request; the run's lateness is counted up to it.
	entered time.Time
	// later are more slots of a catch-up under "all", run in turn after
	// Slot.
	later []time.Time
	// backlogDone, set on a catch-up under "all", lets the scheduler
	// hand out the job's live slots again once every slot has run.
	backlogDone func()
	// release, when set, gives up the request's place in the worker pool
	// once the run has gone on for detachAfter or begins to wait for its
	// job lock.
	release func()
	// waiting, set on a scheduled request that the dispatcher queued, is
	// the slot it runs once it starts, which newer slots of the job replace
	// until then (see Runner.offer).
	waiting *waitingSlot
}

// waitingSlot is the slot of a job's scheduled request that waits to
// start: in the worker queue, for its job lock under overlap queue or
// replace, or for a max_concurrent place.
type waitingSlot struct {
	slot, next time.Time
	trigger    string
	entered    time.Time
	// stage is the resource the request waits for, named in the record
	// of a slot that a newer one replaced.
	stage string
}

// What a waiting request waits for.
const (
	stageWorker = "for a worker"
	stageLock   = "for the previous run to end"
	stagePlace  = "for a free place under max_concurrent"
)

// Runner runs jobs inside the run boundary and records them in the store.
// It is shared by the daemon and by a CLI that runs a job in-process.
type Runner struct {
	settings config.Runner
	store    state.Recorder
	reaper   *process.Reaper
	log      *slog.Logger
	// results logs each run's result; it is log unless a caller reports
	// results itself.
	results *slog.Logger
	now     func() time.Time
	// execute runs the job's work; tests replace it to exercise the
	// boundary without a child process.
	execute func(ctx context.Context, job *config.Job, run state.Run, emit func(Line)) execOutcome

	mu     sync.Mutex
	jobs   map[string]*config.Job
	active map[string]context.CancelCauseFunc
	// activeSlots holds the slot of each job's running run, zero for a
	// run that serves none, such as a manual one.
	activeSlots map[string]time.Time
	stopping    bool
	wg          sync.WaitGroup
	// poster posts the text of post jobs; nil outside the daemon.
	poster Poster
	// standalone is set for a runner that loaded the config for one run
	// without a daemon, so a reload would not apply a fixed load problem.
	standalone bool
	// loadProblem is called at each run that fails on its job's load
	// problem; nil when nothing looks again.
	loadProblem func()
	// observer is told about runs; nil when nothing observes them.
	observer Observer
	// final is told about the last run of a request, after retries.
	final func(state.Run)
	// gate caps runs at once across jobs.
	gate gate
	// pending holds, per job, the slot of the one run queued under
	// overlap = "queue". A later slot that arrives while it waits
	// replaces it, so the queued run serves the newest slot.
	pending map[string]time.Time
	// waiting holds, per job, the slot of the scheduled request that
	// waits to start (see offer).
	waiting map[string]*waitingSlot
	// placeWaits marks the jobs whose run holds the job lock and waits for
	// a max_concurrent place, so that the skip record or error of a request
	// that finds the lock held does not claim a run is going on.
	placeWaits map[string]bool
	// sleep waits between retries; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	// stopped ends when Shutdown begins, cutting retry waits short.
	stopped   context.Context
	stopWaits context.CancelFunc
	// killNow is closed by Kill to cut every grace period short.
	killNow  chan struct{}
	killOnce sync.Once
	// locks are the jobs' run locks.
	locks jobLocks
}

// NewRunner returns a Runner for the jobs of cfg. now is the clock runs
// are stamped with.
func NewRunner(cfg *config.Config, store state.Recorder, reaper *process.Reaper, log *slog.Logger, now func() time.Time) *Runner {
	r := &Runner{
		settings:    cfg.Runner,
		store:       store,
		reaper:      reaper,
		log:         log,
		results:     log,
		now:         now,
		jobs:        make(map[string]*config.Job),
		active:      make(map[string]context.CancelCauseFunc),
		activeSlots: make(map[string]time.Time),
		killNow:     make(chan struct{}),
		pending:     make(map[string]time.Time),
		waiting:     make(map[string]*waitingSlot),
		placeWaits:  make(map[string]bool),
		sleep:       wait.For,
	}
	r.stopped, r.stopWaits = context.WithCancel(context.Background())
	r.gate.setLimit(cfg.Runner.MaxConcurrent)
	r.execute = r.runCommand
	for _, job := range cfg.Jobs {
		r.jobs[job.Name] = job
	}
	return r
}

// Run runs one job to completion and returns its record. Only errors that
// kept the run from being recorded are returned; a failed run is a record
// with a failed result.
func (r *Runner) Run(ctx context.Context, req Request) (state.Run, error) {
	if req.waiting != nil {
		defer r.forgetWaiting(req.Job, req.waiting)
	}
	job, err := r.admit(req.Job)
	if errors.Is(err, ErrUnknownJob) && retriable(req.Trigger) {
		// The scheduler queued the request before a reload removed the
		// job, which is no error of the run.
		return state.Run{}, fmt.Errorf("run %s: %w", req.Job, errJobRemoved)
	}
	if err != nil {
		return state.Run{}, err
	}
	defer r.wg.Done()

	lock, err := r.locks.lock(ctx, r.stateDir(), job.Name, req.Wait, req.WaitingForRun, r.stopped)
	if errors.Is(err, ErrBusy) && req.Trigger == state.TriggerManual && r.waitsForPlace(job.Name) {
		err = fmt.Errorf("run %s: %w", job.Name, errWaitsForPlace)
	}
	if errors.Is(err, ErrBusy) && req.Trigger != state.TriggerManual {
		var queued bool
		lock, req.Slot, queued, err = r.resolveOverlap(ctx, job, req)
		if lock == nil && err == nil {
			r.takeWaiting(&req)
			return r.skipBusy(req, queued)
		}
	}
	if err != nil {
		if lockBroken(err) {
			r.takeWaiting(&req)
			return r.failStart(job, req, err)
		}
		return state.Run{}, err
	}
	defer lock.Close()
	if r.isStopping() {
		// A run that waited for the lock, as a queued one does, must not
		// start once shutdown has begun.
		return state.Run{}, ErrStopping
	}

	order := req.Slot
	if order.IsZero() {
		order = r.now()
	}
	err = r.gate.acquire(ctx, order, func() { r.waitForPlace(req) })
	r.mu.Lock()
	delete(r.placeWaits, job.Name)
	r.mu.Unlock()
	if err != nil {
		return state.Run{}, fmt.Errorf("wait for a free run place: %w", err)
	}
	defer r.gate.release()
	if r.isStopping() {
		// The shutdown freed the place this run waited for by stopping
		// the runs going on. This one was not among them, so nothing
		// would stop it, and the shutdown would wait for all of it.
		return state.Run{}, ErrStopping
	}
	if current := r.job(job.Name); current == nil || (!current.Enabled && retriable(req.Trigger)) {
		// A reload removed the job, or disabled a scheduled one, while the
		// run waited for its lock or for a place, or while a catch-up ran
		// its slots. Manual and chained runs of a disabled job go ahead.
		return state.Run{}, fmt.Errorf("run %s: %w", job.Name, errJobRemoved)
	}

	r.takeWaiting(&req)
	run, err := r.store.Claim(state.Run{
		Job:     job.Name,
		Trigger: req.Trigger,
		Slot:    req.Slot,
		Start:   r.now(),
		Result:  state.ResultRunning,
	}, req.Next)
	if err != nil {
		return state.Run{}, fmt.Errorf("claim run of %s: %w", job.Name, err)
	}
	if req.release != nil {
		// A short run keeps its worker place, so a burst of them starts
		// no faster than the pool allows; a longer one gives it up.
		detach := time.AfterFunc(detachAfter, req.release)
		defer detach.Stop()
	}
	if req.Started != nil {
		req.Started(run)
	}
	if r.observer != nil {
		r.observer.RunStarted(run, lateness(req, run))
	}
	return r.finish(r.execBounded(ctx, job, run, req.Output))
}

// lateness returns how long after its slot the scheduler's dispatcher
// woke to take the run's request. A request that did not pass the dispatcher
// counts up to the run's Start, and a manual run has none. Time spent
// waiting for a worker, the job lock, max_concurrent or the claim is not
// part of it, because the dispatcher stamps the request before those.
func lateness(req Request, run state.Run) time.Duration {
	switch {
	case run.Slot.IsZero():
		return 0
	case !req.entered.IsZero():
		return req.entered.Sub(run.Slot)
	default:
		return run.Start.Sub(run.Slot)
	}
}

// stateDir returns the state folder, which holds the job locks.
func (r *Runner) stateDir() string {
	return r.currentSettings().StateDir
}

// admit looks the job up and counts the run as active, unless the runner
// is shutting down.
func (r *Runner) admit(name string) (*config.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil, ErrStopping
	}
	job, ok := r.jobs[name]
	if !ok {
		return nil, fmt.Errorf("run %q: %w", name, ErrUnknownJob)
	}
	r.wg.Add(1)
	return job, nil
}

// lockBroken reports whether err, from taking a job's lock, is a failure
// of the lock file itself, rather than a run holding the lock or a stop.
func lockBroken(err error) bool {
	var broken *lockError
	return errors.As(err, &broken)
}

// failStart records a failed run for a request whose job lock cannot be
// taken, such as when a folder sits at the lock file's path. Each slot
// then shows as a failed run in history, health and alerts, instead of
// only as a log line.
func (r *Runner) failStart(job *config.Job, req Request, cause error) (state.Run, error) {
	now := r.now()
	run, err := r.store.Claim(state.Run{
		Job: job.Name, Trigger: req.Trigger, Slot: req.Slot, Start: now, Result: state.ResultRunning,
	}, req.Next)
	if err != nil {
		return state.Run{}, fmt.Errorf("claim run of %s: %w", job.Name, err)
	}
	run.Result, run.Error, run.Finish, run.ExitCode = state.ResultFailed, cause.Error(), now, -1
	return r.finish(run)
}

// resolveOverlap applies the job's overlap policy to a run that found
// the job running. It returns the job's lock and the slot to claim once
// the run may go ahead, or a nil lock and no error when the run is to be
// skipped; queued then says whether a queued run took over its slot.
func (r *Runner) resolveOverlap(ctx context.Context, job *config.Job, req Request) (lock *runLock, slot time.Time, queued bool, err error) {
	if req.release != nil && job.Overlap != config.OverlapSkip {
		req.release()
	}
	switch job.Overlap {
	case config.OverlapQueue:
		r.mu.Lock()
		pending, waiting := r.pending[job.Name]
		if waiting {
			// The request ends here, with the newest slot it was
			// handed while it waited for a worker.
			r.takeWaitingLocked(&req)
		}
		if waiting && !req.Slot.IsZero() && !req.Slot.After(pending) {
			// The queued run serves this slot or a newer one. A reload
			// that changes the job's schedule while a request waits can
			// queue an older slot again, and the queued run's slot never
			// moves back to it.
			r.mu.Unlock()
			return nil, req.Slot, false, fmt.Errorf("run %s for slot %s: the queued run serves it or a newer one: %w",
				job.Name, req.Slot.UTC().Format(time.RFC3339), state.ErrSlotClaimed)
		}
		if !waiting || req.Slot.After(pending) {
			r.pending[job.Name] = req.Slot
		}
		r.setStageLocked(req, stageLock)
		r.mu.Unlock()
		if waiting {
			return nil, req.Slot, true, nil
		}
		lock, err = r.locks.lock(ctx, r.stateDir(), job.Name, true, nil, r.stopped)
		r.mu.Lock()
		slot = r.pending[job.Name]
		delete(r.pending, job.Name)
		r.mu.Unlock()
		return lock, slot, false, err
	case config.OverlapReplace:
		r.mu.Lock()
		cancel, ok := r.active[job.Name]
		// A newer slot that took over the request while it waited is
		// the one it runs, and must stop an older run.
		newest := req.Slot
		if req.waiting != nil && req.waiting.slot.After(newest) {
			newest = req.waiting.slot
		}
		if ok && !newest.IsZero() && !newest.After(r.activeSlots[job.Name]) {
			// The running run already serves this slot, or a newer one.
			// A reload that changes the job's schedule while a request
			// waits for a place can queue the same slot again, and that
			// copy must not stop the run it would only duplicate.
			r.mu.Unlock()
			return nil, req.Slot, false, fmt.Errorf("run %s for slot %s: the running run serves it: %w",
				job.Name, newest.UTC().Format(time.RFC3339), state.ErrSlotClaimed)
		}
		if ok {
			r.log.Info("stopping the running run for a newer one", "job", job.Name)
			cancel(&stopCause{result: state.ResultInterrupted, reason: "replaced by the run of a newer slot", grace: r.settings.KillGrace})
		}
		r.setStageLocked(req, stageLock)
		r.mu.Unlock()
		lock, err = r.locks.lock(ctx, r.stateDir(), job.Name, true, nil, r.stopped)
		return lock, req.Slot, false, err
	default:
		return nil, req.Slot, false, nil
	}
}

// skipBusy records a scheduled slot that found the previous run still
// going. The slot counts as deliberately skipped, so catch-up never runs
// it later.
func (r *Runner) skipBusy(req Request, queued bool) (state.Run, error) {
	now := r.now()
	run := state.Run{
		Job:     req.Job,
		Trigger: req.Trigger,
		Slot:    req.Slot,
		Start:   now,
		Finish:  now,
		Result:  state.ResultSkipped,
		Error:   "previous run was still running",
	}
	r.mu.Lock()
	if r.placeWaits[req.Job] {
		// The lock's holder has not started: it waits for a place, as
		// a run of another job that holds the place may for hours.
		run.Error = "an earlier run of the job was waiting for a free place under max_concurrent"
	}
	r.mu.Unlock()
	if queued {
		// The queued run claims this slot when it starts, so the stored
		// position must not move past it now.
		run.Error = "merged into the queued run"
		if _, err := r.store.RecordSkipped(run); err != nil {
			return state.Run{}, fmt.Errorf("record skipped run of %s: %w", req.Job, err)
		}
	} else if !req.Slot.IsZero() {
		err := r.store.Skip(req.Job, req.Slot, req.Trigger, run.Error, now, req.Next)
		if err != nil {
			return state.Run{}, fmt.Errorf("record skipped slot of %s: %w", req.Job, err)
		}
	} else if _, err := r.store.RecordSkipped(run); err != nil {
		return state.Run{}, fmt.Errorf("record skipped run of %s: %w", req.Job, err)
	}
	r.log.Warn("run skipped", "job", req.Job, "trigger", req.Trigger, "err", run.Error)
	if r.observer != nil {
		r.observer.RunFinished(run)
	}
	return run, nil
}

// offer prepares a scheduled request that the dispatcher is about to
// queue, and returns false when the request is not to be queued.
//
// An earlier scheduled request of the job may still wait to start: in the
// worker queue, for its job lock or for a max_concurrent place. A newer
// slot then replaces that request's slot instead of queueing a run of its
// own, and the replaced slot is recorded as skipped. So a job whose slots
// fall while it waits runs once, for its newest slot, as a late timer
// does, instead of once per slot in a burst when a place frees. A slot
// that is not newer, which a reload that changes the schedule can queue
// again, is dropped. The slots of a catch_up = "all" backlog are meant to
// run each, so they are queued as they are.
func (r *Runner) offer(req *Request) bool {
	if req.Slot.IsZero() || len(req.later) > 0 || req.backlogDone != nil {
		return true
	}
	r.mu.Lock()
	w, ok := r.waiting[req.Job]
	if !ok {
		w = &waitingSlot{slot: req.Slot, next: req.Next, trigger: req.Trigger, entered: req.entered, stage: stageWorker}
		if r.settings.MaxConcurrent > 0 {
			// The pool has a worker for each place, so a full pool is
			// a wait for a place.
			w.stage = stagePlace
		}
		r.waiting[req.Job] = w
		req.waiting = w
		r.mu.Unlock()
		return true
	}
	if !req.Slot.After(w.slot) {
		r.mu.Unlock()
		r.log.Info("slot dropped: a waiting run of the job serves it or a newer one",
			"job", req.Job, "slot", req.Slot, "waiting", w.slot)
		return false
	}
	replaced := *w
	w.slot, w.next, w.trigger, w.entered = req.Slot, req.Next, req.Trigger, req.entered
	r.mu.Unlock()
	r.recordReplaced(req.Job, replaced, req.Slot)
	return false
}

// recordReplaced records in the background a slot whose waiting run a
// newer slot took over, so that the dispatcher does not wait for the
// write. The stored position does not move: the run claims the newer
// slot when it starts.
func (r *Runner) recordReplaced(name string, replaced waitingSlot, newer time.Time) {
	reason := fmt.Sprintf("replaced by the newer slot %s while its run waited %s",
		newer.UTC().Format(time.RFC3339), replaced.stage)
	r.log.Info("slot merged into a newer one", "job", name, "slot", replaced.slot, "newer", newer, "reason", reason)
	if _, err := r.admit(name); err != nil {
		return
	}
	go func() {
		defer r.wg.Done()
		now := r.now()
		run := state.Run{Job: name, Trigger: replaced.trigger, Slot: replaced.slot, Start: now, Finish: now,
			Result: state.ResultSkipped, Error: reason}
		run, err := r.store.RecordSkipped(run)
		if err != nil {
			r.log.Error("record replaced slot failed", "job", name, "slot", replaced.slot, "err", err)
			return
		}
		if r.observer != nil {
			r.observer.RunFinished(run)
		}
	}()
}

// takeWaiting ends the wait of req, which newer slots no longer replace,
// and gives it the newest slot handed to it while it waited.
func (r *Runner) takeWaiting(req *Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.takeWaitingLocked(req)
}

func (r *Runner) takeWaitingLocked(req *Request) {
	w := req.waiting
	if w == nil {
		return
	}
	if r.waiting[req.Job] == w {
		delete(r.waiting, req.Job)
	}
	if w.slot.After(req.Slot) {
		req.Slot, req.Next, req.Trigger, req.entered = w.slot, w.next, w.trigger, w.entered
	}
}

// forgetWaiting ends the wait of a request that Run returns from, so that
// no newer slot is handed to a request that will not run.
func (r *Runner) forgetWaiting(name string, w *waitingSlot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting[name] == w {
		delete(r.waiting, name)
	}
}

// setStageLocked notes what the waiting request req waits for now.
func (r *Runner) setStageLocked(req Request, stage string) {
	if req.waiting != nil {
		req.waiting.stage = stage
	}
}

// waitForPlace marks req as holding its job's lock while it waits for a
// max_concurrent place, then calls req.Waiting.
func (r *Runner) waitForPlace(req Request) {
	r.mu.Lock()
	r.placeWaits[req.Job] = true
	r.setStageLocked(req, stagePlace)
	r.mu.Unlock()
	if req.Waiting != nil {
		req.Waiting()
	}
}

// waitsForPlace reports whether the run that holds the job's lock waits
// for a max_concurrent place.
func (r *Runner) waitsForPlace(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.placeWaits[name]
}

// WaitsToStart reports whether a scheduled run of the job waits to start,
// for a worker, its job lock or a max_concurrent place.
func (r *Runner) WaitsToStart(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.waiting[name]
	return ok
}

// execBounded runs the job's work with its timeout, turns a panic into a
// result, and returns the run record to store.
func (r *Runner) execBounded(ctx context.Context, job *config.Job, run state.Run, output func(Line)) (run2 state.Run) {
	log := r.log.With("job", job.Name, "run", run.ID)
	log.Info("run started", "trigger", run.Trigger)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if job.Timeout > 0 {
		var stop context.CancelFunc
		cause := &stopCause{result: state.ResultTimeout, reason: fmt.Sprintf("timed out after %s", job.Timeout), grace: r.currentSettings().KillGrace}
		ctx, stop = context.WithTimeoutCause(ctx, job.Timeout, cause)
		defer stop()
	}
	r.track(job.Name, run.Slot, cancel)
	defer r.untrack(job.Name)

	capture := newCapture(log, output)
	defer func() {
		if v := recover(); v != nil {
			log.Error("run panicked", "err", v, "stack", string(debug.Stack()))
			run2 = r.record(run, execOutcome{
				result:   state.ResultPanic,
				exitCode: -1,
				err:      fmt.Errorf("panic: %v\n%s", v, debug.Stack()),
			}, capture)
		}
	}()
	if job.Problem != nil {
		var err error = loadProblemError{job.Problem}
		if r.standalone {
			err = job.Problem
		}
		if r.loadProblem != nil {
			r.loadProblem()
		}
		return r.record(run, execOutcome{result: state.ResultFailed, exitCode: -1, err: err}, capture)
	}
	before := statModTime(job.ExpectFileUpdated)
	// The work redacts its output itself, as only it reads the env_file
	// and the inherited variables whose secrets the child gets.
	out := r.execute(ctx, job, run, capture.emit)
	return r.record(run, checkFileUpdated(job, run.Start, before, out), capture)
}

// record fills in the outcome of a run.
func (r *Runner) record(run state.Run, out execOutcome, capture *capture) state.Run {
	run.Finish = r.now()
	run.Duration = run.Finish.Sub(run.Start)
	run.Result = out.result
	run.ExitCode = out.exitCode
	if out.err != nil {
		run.Error = out.err.Error()
	}
	if capture.panicked != nil {
		run.Result = state.ResultPanic
		run.Error = fmt.Sprintf("panic in output handler: %v", capture.panicked)
	}
	run.Output = capture.tail.String()
	if capture.dropped > 0 {
		capture.log.Info("output lines not logged", "count", capture.dropped)
	}
	return run
}

// finish stores a run's result and logs it.
func (r *Runner) finish(run state.Run) (state.Run, error) {
	attrs := []any{"job", run.Job, "run", run.ID, "trigger", run.Trigger,
		"result", run.Result, "exit_code", run.ExitCode, "duration", run.Duration.Round(time.Millisecond)}
	switch run.Result {
	case state.ResultOK:
		r.results.Info("run finished", attrs...)
	case state.ResultInterrupted:
		r.results.Warn("run interrupted", append(attrs, "err", run.Error)...)
	default:
		r.results.Error("run failed", append(attrs, "err", run.Error)...)
	}
	if r.observer != nil {
		r.observer.RunFinished(run)
	}
	if err := r.store.Finish(run); err != nil {
		r.log.Error("record run result failed", "job", run.Job, "run", run.ID, "err", err)
		return run, fmt.Errorf("record run of %s: %w", run.Job, err)
	}
	return run, nil
}

func (r *Runner) track(name string, slot time.Time, cancel context.CancelCauseFunc) {
	r.mu.Lock()
	r.active[name] = cancel
	r.activeSlots[name] = slot
	r.mu.Unlock()
}

func (r *Runner) untrack(name string) {
	r.mu.Lock()
	delete(r.active, name)
	delete(r.activeSlots, name)
	r.mu.Unlock()
}

// SetResultLogger sets the logger of each run's result line, for a caller
// that reports results in its own words. It must be called before the
// first run.
func (r *Runner) SetResultLogger(log *slog.Logger) { r.results = log }

// SetJobs replaces the runner's jobs and settings after a reload. A run
// already going keeps the job it started with; the next run of each job
// uses the new settings. The state folder cannot change while the daemon
// runs, so it is kept.
func (r *Runner) SetJobs(cfg *config.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	jobs := make(map[string]*config.Job, len(cfg.Jobs))
	for _, job := range cfg.Jobs {
		jobs[job.Name] = job
	}
	stateDir := r.settings.StateDir
	r.jobs, r.settings = jobs, cfg.Runner
	r.settings.StateDir = stateDir
	r.gate.setLimit(cfg.Runner.MaxConcurrent)
	keep := make(map[string]bool, len(jobs))
	for name := range jobs {
		keep[name] = true
	}
	r.locks.closeExcept(keep)
}

func (r *Runner) isStopping() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopping
}

// currentSettings returns the runner settings, which a reload may change.
func (r *Runner) currentSettings() config.Runner {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.settings
}

// Running returns the names of the jobs running now, sorted.
func (r *Runner) Running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.active))
	for name := range r.active {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Shutdown refuses new runs, asks the running ones to stop with SIGTERM,
// and waits for them until ctx ends. Runs still going then get SIGKILL
// through their grace period running out; the wait continues until they
// are recorded as interrupted.
func (r *Runner) Shutdown(ctx context.Context) {
	deadline, ok := ctx.Deadline()
	grace := time.Until(deadline)
	if !ok || grace < 0 {
		grace = 0
	}
	r.stopWaits()
	r.mu.Lock()
	r.stopping = true
	for name, cancel := range r.active {
		r.log.Info("stopping run", "job", name)
		cancel(&stopCause{result: state.ResultInterrupted, reason: "agent-runner shut down during the run", grace: grace})
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Kill ends the grace period of every stopping run, so their process
// groups get SIGKILL now. Shutdown must have been called.
func (r *Runner) Kill() {
	r.killOnce.Do(func() { close(r.killNow) })
}

// capture routes output lines to the run's tail, the log and the caller.
type capture struct {
	log      *slog.Logger
	output   func(Line)
	tail     tail
	mu       sync.Mutex
	logged   int
	dropped  int
	panicked any
}

func newCapture(log *slog.Logger, output func(Line)) *capture {
	return &capture{log: log, output: output}
}

// emit takes lines that are already redacted: the job's secret values
// are replaced before a line reaches the log, the store or the caller.
func (c *capture) emit(line Line) {
	c.tail.add(line)
	c.logLine(line)
	if c.output == nil {
		return
	}
	// A panic of the caller's handler is caught here, so the child is
	// still read and waited for, and the run fails with the panic.
	defer func() {
		if v := recover(); v != nil {
			c.mu.Lock()
			c.panicked = v
			c.output = nil
			c.mu.Unlock()
		}
	}()
	c.mu.Lock()
	out := c.output
	c.mu.Unlock()
	if out != nil {
		out(line)
	}
}

func (c *capture) logLine(line Line) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logged >= maxLoggedLines {
		c.dropped++
		if c.dropped == 1 {
			c.log.Warn("output not logged past the line limit; the run record keeps the tail", "limit", maxLoggedLines)
		}
		return
	}
	c.logged++
	text := line.Text
	if len(text) > maxLoggedLineBytes {
		text = text[:maxLoggedLineBytes] + "…"
	}
	c.log.Info("output", "stream", line.Stream, "line", text)
}
