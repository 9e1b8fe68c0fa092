package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/schedule"
	"github.com/agent-runner/agent-runner/state"
)

const (
	// wallCheckInterval is the longest the dispatcher sleeps. Go timers
	// follow the monotonic clock, which stops while the machine sleeps.
	// After a suspend or a clock step, a slot can therefore pass by the
	// wall clock while the timer still waits, and each wake-up compares
	// the two.
	wallCheckInterval = 30 * time.Second
	// overdueAfter is how late a slot must be, by a wall clock that ran
	// ahead of the timer, before it counts as missed and goes through the
	// catch-up policy instead of running as scheduled.
	overdueAfter = 2 * time.Second
	// earlyTolerance lets a timer that fires slightly before its slot by
	// the wall clock, as after an NTP step, run that slot. Other wake-ups
	// never run a slot early (see dueBy).
	earlyTolerance = time.Second
	// clockJump is how far the wall clock may move apart from elapsed
	// time between two wake-ups before the dispatcher logs it.
	clockJump = 5 * time.Second
)

// Scheduler drives the runs of every enabled job and applies catch-up
// when slots were missed, while the daemon was stopped or while the
// machine slept.
//
// One dispatcher goroutine keeps the jobs in a heap by next slot under a
// single timer, one gocron job (see wakeTimer), armed for the earliest
// slot, the next catch-up run of catch_up_spread, or wallCheckInterval,
// whichever comes first. When it fires, it takes every due job at once,
// stamps the requests and hands them to a pool of workers, so it never
// waits for a job lock, the max_concurrent gate or a claim.
type Scheduler struct {
	runner *Runner
	store  *state.Store
	clock  clockwork.Clock
	log    *slog.Logger
	pool   *pool

	// spread is catch_up_spread: catch-up runs at start are spread over
	// it.
	spread time.Duration
	// cluster is set for the scheduler of a cluster leader, whose
	// positions reset cannot move.
	cluster bool

	mu      sync.Mutex
	entries map[string]*entry
	// backlogs names the jobs whose catch_up = "all" runs are queued or
	// running. Their entries stay out of the heap until those finish, so
	// that no live slot claims a position past a catch-up slot not yet
	// run, even when a reload replaces the entry meanwhile.
	backlogs map[string]bool
	// backlogLeft counts, per job in backlogs, the catch-up runs that
	// have not started yet, for status.
	backlogLeft map[string]int
	slots       slotHeap
	delayed     delayedRuns
	// running is set between Start and Stop, while the dispatcher runs.
	running bool

	// timer is the dispatcher's wake-up timer, created by Start.
	timer *wakeTimer

	// wake signals the dispatcher that Apply added a job, whose slot may
	// come before the armed timer.
	wake chan struct{}
	// pings receive a reply from the dispatcher, for Ping.
	pings chan chan struct{}
	// done is closed when the dispatcher returns.
	done chan struct{}
	// background counts the goroutine that opens lock files after Start.
	background sync.WaitGroup
}

// entry is the schedule position of one job in memory. next is the first
// slot not yet claimed or skipped.
type entry struct {
	job   *config.Job
	sched schedule.Schedule
	next  time.Time
	// index is the entry's place in the slot heap, -1 outside it.
	index int
	// missed marks a job added by a reload with slots that already
	// passed: the dispatcher applies catch-up to them.
	missed bool
}

// NewScheduler builds a scheduler for the enabled jobs of cfg.
func NewScheduler(cfg *config.Config, runner *Runner, store *state.Store, clock clockwork.Clock, log *slog.Logger) (*Scheduler, error) {
	s := &Scheduler{
		runner:      runner,
		store:       store,
		clock:       clock,
		log:         log,
		entries:     make(map[string]*entry),
		backlogs:    make(map[string]bool),
		backlogLeft: make(map[string]int),
		spread:      cfg.Runner.CatchUpSpread,
		cluster:     cfg.Cluster != nil,
		wake:        make(chan struct{}, 1),
		pings:       make(chan chan struct{}),
		done:        make(chan struct{}),
	}
	s.pool = newPool(cfg.Runner.MaxConcurrent, s.dispatch)
	var enabled []*config.Job
	for _, job := range cfg.Jobs {
		if job.Enabled {
			enabled = append(enabled, job)
		}
	}
	if err := errors.Join(s.addAll(enabled)...); err != nil {
		return nil, err
	}
	return s, nil
}

// prepareWorkers is how many jobs addAll prepares at once. Each one
// commits its state when the store has none, and concurrent commits share
// group commits, so a new store with many jobs is ready sooner.
const prepareWorkers = 16

// addAll adds jobs, preparing them concurrently, and returns the error of
// each job that could not be added.
func (s *Scheduler) addAll(jobs []*config.Job) []error {
	now := s.clock.Now()
	states := make([]state.JobState, len(jobs))
	errs := make([]error, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(prepareWorkers, len(jobs)) {
		wg.Go(func() {
			for i := range next {
				states[i], errs[i] = s.prepare(jobs[i], now)
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()

	var failed []error
	for i, job := range jobs {
		if errs[i] == nil {
			errs[i] = s.add(job, states[i], now)
		}
		if errs[i] != nil {
			failed = append(failed, errs[i])
		}
	}
	return failed
}

// prepare returns the job's stored state, creating it when the store has
// none.
func (s *Scheduler) prepare(job *config.Job, now time.Time) (state.JobState, error) {
	st, err := s.store.EnsureJob(job.Name, now)
	if err != nil {
		return state.JobState{}, fmt.Errorf("load state of job %s: %w", job.Name, err)
	}
	if ahead := PositionAhead(job, st, now); ahead > 0 {
		fix := "then run agent-runner reset " + job.Name
		if s.cluster {
			fix = "reset is not supported with [cluster]"
		}
		s.log.Warn("job's stored slot is ahead of the clock, so it runs nothing until the clock passes it: check the clock and its time zone, "+fix,
			"job", job.Name, "position", position(st), "ahead", ahead.Round(time.Second))
	}
	return st, nil
}

// NOTE: prepare keeps a position that is ahead and does not move it back
// to now. On a machine that starts with its clock far behind, before NTP
// sets it, that would let a slot that already ran run again once the
// clock is right. agent-runner reset moves it back on the operator's word.

// openLocks opens the lock files of the named jobs in the background,
// which keeps their creation off the path of each job's first run without
// delaying the start. A run that comes first opens its own.
func (s *Scheduler) openLocks(ctx context.Context, names []string) {
	defer s.background.Done()
	dir := s.runner.stateDir()
	for _, name := range names {
		if ctx.Err() != nil || s.runner.locks.full() {
			return
		}
		lock, err := s.runner.locks.open(dir, name)
		if err != nil {
			s.log.Warn("open job lock failed; the first run tries again", "job", name, "err", err)
			continue
		}
		if lock.transient {
			// Runs filled the capacity meanwhile.
			lock.file.Close()
			return
		}
	}
}

// Schedule returns the schedule of a job, anchoring an every-job at the
// moment the store first saw it.
func Schedule(job *config.Job, st state.JobState) (schedule.Schedule, error) {
	var sched schedule.Schedule
	switch {
	case !job.At.IsZero():
		sched = schedule.At{Instant: job.At}
	case job.Every > 0:
		// Whole seconds keep the slots on the second grid where stored
		// positions of earlier versions put them.
		sched = schedule.Every{Anchor: st.FirstSeen.Truncate(time.Second), Interval: job.Every}
	case len(job.Calendar) > 0:
		var err error
		if sched, err = schedule.ParseCalendar(job.Calendar, job.Location); err != nil {
			return nil, err
		}
	default:
		var err error
		if sched, err = schedule.ParseCron(job.Cron, job.Location); err != nil {
			return nil, err
		}
	}
	if job.RandomizedDelay > 0 {
		sched = schedule.Delayed{Inner: sched, Offset: schedule.StableDelay(job.Name, job.RandomizedDelay)}
	}
	return sched, nil
}

// add puts a prepared job in the slot heap at the position st stores.
func (s *Scheduler) add(job *config.Job, st state.JobState, now time.Time) error {
	sched, err := Schedule(job, st)
	if err != nil {
		return fmt.Errorf("schedule job %s: %w", job.Name, err)
	}
	e := &entry{job: job, sched: sched, next: sched.Next(position(st)), index: -1}
	// A passed at job stays in the heap while its slot is unclaimed, so
	// that catch-up may still run it.
	e.missed = s.running && !e.next.IsZero() && !e.next.After(now)
	s.entries[job.Name] = e
	if !s.backlogs[job.Name] {
		s.slots.schedule(e)
	}
	return nil
}

// Apply brings the scheduler in line with a reloaded config. Added jobs
// start counting from now, removed ones stop being scheduled (a running
// run finishes), jobs whose schedule changed are timed afresh from their
// stored position, and the others only take the new settings for their
// next run. Every job keeps its position in the store, so catch-up state
// survives. It returns the first error but applies every job it can.
func (s *Scheduler) Apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wanted := make(map[string]*config.Job)
	for _, job := range cfg.Jobs {
		if job.Enabled {
			wanted[job.Name] = job
		}
	}
	// planned contains the place in catch_up_spread of each replaced job
	// whose catch-up run had not started yet.
	planned := make(map[string]time.Time)
	for name, e := range s.entries {
		if job, keep := wanted[name]; keep && sameSchedule(e.job, job) {
			e.job = job
			continue
		}
		s.slots.remove(e)
		delete(s.entries, name)
		if at, ok := s.dropDelayedLocked(name); ok {
			planned[name] = at
		}
	}
	var added []*config.Job
	for _, job := range cfg.Jobs {
		if _, ok := s.entries[job.Name]; !ok && job.Enabled {
			added = append(added, job)
		}
	}
	errs := s.addAll(added)
	s.replanLocked(planned)
	s.pool.setLimit(cfg.Runner.MaxConcurrent)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return errors.Join(errs...)
}

// dropDelayedLocked removes the catch-up requests of a job that still
// wait for their place in catch_up_spread, and returns that place.
// Without this, the new entry's catch-up runs at the reload, and at its
// place the old request either runs the job again, for a newer slot of
// the old schedule, or fails because its slot was already claimed.
func (s *Scheduler) dropDelayedLocked(name string) (time.Time, bool) {
	at, requests, ok := s.delayed.take(name)
	if !ok {
		return time.Time{}, false
	}
	for _, req := range requests {
		if req.backlogDone != nil {
			// The dropped requests were the whole catch_up = "all"
			// backlog, since none of them has started.
			delete(s.backlogs, name)
			delete(s.backlogLeft, name)
		}
	}
	return at, true
}

// replanLocked gives each job in planned whose new entry has passed
// slots its catch-up run at the planned place in catch_up_spread, instead
// of at once.
func (s *Scheduler) replanLocked(planned map[string]time.Time) {
	now := s.clock.Now()
	for name, at := range planned {
		e, ok := s.entries[name]
		if !ok || !e.missed || s.backlogs[name] {
			continue
		}
		e.missed = false
		if requests := s.claimDueLocked(e, now, state.TriggerCatchUp); len(requests) > 0 {
			s.delayed.add(delayedRun{at: at, requests: requests})
		}
	}
}

func sameSchedule(a, b *config.Job) bool {
	return a.Cron == b.Cron && slices.Equal(a.Calendar, b.Calendar) && a.Every == b.Every && a.At.Equal(b.At) &&
		a.RandomizedDelay == b.RandomizedDelay && a.Location.String() == b.Location.String()
}

// position returns the instant after which a job's unclaimed slots
// start: its last claimed or skipped slot, or when it was first seen.
func position(st state.JobState) time.Time {
	if st.LastSlot.After(st.FirstSeen) {
		return st.LastSlot
	}
	return st.FirstSeen
}

// Start applies catch-up for slots missed while the daemon was down, then
// starts the dispatcher. It returns at once; runs go on in the background
// until Stop.
func (s *Scheduler) Start(ctx context.Context) {
	timer, err := newWakeTimer(s.clock, s.log)
	if err != nil {
		// NOTE: gocron v2.21.2 rejects only a nil clock, location or
		// logger, so this is not expected to happen.
		s.log.Error("start dispatcher failed; no job runs on schedule", "err", err)
		return
	}
	s.timer = timer
	s.mu.Lock()
	s.catchUpLocked()
	s.running = true
	names := make([]string, 0, len(s.entries))
	for name := range s.entries {
		names = append(names, name)
	}
	s.mu.Unlock()
	go s.dispatchLoop(ctx)
	s.background.Add(1)
	go s.openLocks(ctx, names)
}

// catchUpSlackPercent is the share of catch_up_spread that no catch-up
// run is planned in, at its end. A run that waits for a max_concurrent
// place, or starts late on a busy machine, still starts within the spread.
const catchUpSlackPercent = 10

// catchUpLocked runs, or skips, the slots of each job that passed while
// the daemon was stopped, spreading the runs over catch_up_spread. The
// spread counts from the process start, so every catch-up run starts
// within catch_up_spread of it, however long opening the store and
// registering the jobs took.
func (s *Scheduler) catchUpLocked() {
	now := s.clock.Now()
	due := s.slots.popDue(now)
	sort.Slice(due, func(i, j int) bool { return due[i].job.Name < due[j].job.Name })
	spread := max(s.spread*(100-catchUpSlackPercent)/100-processAge(), 0)
	var first []Request
	for i, e := range due {
		requests := s.claimDueLocked(e, now, state.TriggerCatchUp)
		var delay time.Duration
		if spread > 0 && len(due) > 1 {
			delay = spread * time.Duration(i) / time.Duration(len(due))
		}
		if delay == 0 {
			first = append(first, requests...)
		} else if len(requests) > 0 {
			s.delayed.add(delayedRun{at: now.Add(delay), requests: requests})
		}
	}
	entered := s.clock.Now()
	for i := range first {
		first[i].entered = entered
	}
	s.submit(first)
}

// dispatchLoop is the dispatcher: it sleeps until the next slot, the
// next spread catch-up run or the wall-clock check, then hands out what
// is due.
func (s *Scheduler) dispatchLoop(ctx context.Context) {
	defer close(s.done)
	timer := s.timer
	defer timer.Stop()
	wall, mono := s.clock.Now(), time.Now()
	armed := wall
	wait := s.untilWake(armed)
	if wait > 0 {
		timer.Reset(wait)
	}
	for {
		deadline := armed.Add(wait)
		// When something is already due, the dispatcher hands it out at
		// once without the timer, because gocron would move a deadline
		// that has passed a wallCheckInterval forward.
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case reply := <-s.pings:
				close(reply)
				continue
			case <-s.wake:
				deadline = time.Time{}
			case <-timer.Chan():
			}
		} else if ctx.Err() != nil {
			return
		}
		lastWall, lastMono := wall, mono
		wall, mono = s.clock.Now(), time.Now()
		elapsed := mono.Sub(lastMono)
		if jump := wall.Sub(lastWall) - elapsed; jump > clockJump || jump < -clockJump {
			s.log.Warn("wall clock moved apart from elapsed time; checking for missed slots", "jump", jump.Round(time.Second))
		}
		// The slots up to reached came due by the timer, however late it
		// fired. Those between it and the wall clock came due only
		// because the clock ran ahead, as after a suspend.
		reached := lastWall.Add(elapsed)
		if deadline.After(reached) {
			reached = deadline
		}
		s.dispatchDue(wall, reached, wall)
		armed = s.clock.Now()
		wait = s.untilWake(armed)
		if wait > 0 {
			timer.Reset(wait)
		}
	}
}

// untilWake returns how long the dispatcher may sleep from now.
func (s *Scheduler) untilWake(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := wallCheckInterval
	if next, ok := s.slots.earliest(); ok {
		wait = min(wait, next.Sub(now))
	}
	if len(s.delayed) > 0 {
		wait = min(wait, s.delayed[0].at.Sub(now))
	}
	return max(wait, 0)
}

// dispatchDue takes every job due by now at once, stamps the batch with
// entered, the moment the dispatcher woke for it, and queues its runs.
// A slot after reached is overdue by the wall clock alone. When it is more
// than overdueAfter late, it goes through the catch-up policy.
func (s *Scheduler) dispatchDue(now, reached, entered time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	requests := s.delayed.popDue(now)
	due := s.slots.popDue(dueBy(now, reached))
	for i := range requests {
		requests[i].entered = entered
	}
	for _, e := range due {
		trigger := state.TriggerSchedule
		overdue := e.next.After(reached.Add(earlyTolerance)) && e.next.Before(now.Add(-overdueAfter))
		if e.missed || overdue {
			trigger = state.TriggerCatchUp
		}
		e.missed = false
		for _, req := range s.claimDueLocked(e, now, trigger) {
			req.entered = entered
			requests = append(requests, req)
		}
	}
	s.submit(requests)
}

// submit queues requests for the workers, apart from the slots that join
// a waiting run of their job (see Runner.offer).
func (s *Scheduler) submit(requests []Request) {
	queued := requests[:0]
	for _, req := range requests {
		if s.runner.offer(&req) {
			queued = append(queued, req)
		}
	}
	s.pool.submit(queued)
}

// dueBy returns the latest slot a wake-up at now may run. A timer that
// fired for its slot still runs that slot while the wall clock reads up to
// earlyTolerance before it, as after a small NTP step. Any other wake-up,
// such as a reload's or the wall-clock check's, runs nothing whose slot
// the wall clock has not reached.
func dueBy(now, reached time.Time) time.Time {
	if reached.After(now) {
		return minTime(reached, now.Add(earlyTolerance))
	}
	return now
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// maxCountedSlots bounds the walk over missed slots; past it, only the
// newest slots matter and the count is reported as a lower bound.
const maxCountedSlots = 100000

// claimDueLocked handles every due slot of e, moves e to its next slot
// and returns the requests to run. A late timer or a catch-up under
// "once" merges the due slots into one run of the newest. Under "all" it
// runs each of the newest max_catch_up in order, and under "skip" it
// records them as skipped. Slots older than catch_up_deadline are dropped.
func (s *Scheduler) claimDueLocked(e *entry, now time.Time, trigger string) []Request {
	job := e.job
	keep := 1
	if trigger == state.TriggerCatchUp && job.CatchUp == config.CatchUpAll {
		keep = job.MaxCatchUp
	}
	slots, count, next := dueSlotsAndNext(e.sched, e.next, now, keep)
	newest := slots[len(slots)-1]
	e.next = next
	if trigger == state.TriggerCatchUp && job.CatchUp == config.CatchUpAll {
		// The entry leaves the heap until its catch-up runs finish. When
		// the deadline drops every slot, the skip below puts it back.
		s.backlogs[job.Name] = true
		s.slots.remove(e)
	} else {
		s.slots.schedule(e)
	}
	if trigger == state.TriggerCatchUp && job.CatchUpDeadline > 0 {
		slots = dropOlder(slots, now.Add(-job.CatchUpDeadline))
	}
	switch {
	case trigger == state.TriggerCatchUp && (job.CatchUp == config.CatchUpSkip || len(slots) == 0):
		reason := fmt.Sprintf("missed %s slot(s) up to %s while stopped; catch_up = %q", count, newest.UTC().Format(time.RFC3339), job.CatchUp)
		if len(slots) == 0 && job.CatchUp != config.CatchUpSkip {
			reason = fmt.Sprintf("missed %s slot(s), all older than catch_up_deadline %s", count, job.CatchUpDeadline)
		}
		s.log.Info("missed slots skipped", "job", job.Name, "slot", newest, "err", reason)
		if err := s.store.Skip(job.Name, newest, trigger, reason, now, e.next); err != nil {
			s.log.Error("record skipped slot failed", "job", job.Name, "err", err)
		}
		s.endBacklogLocked(job.Name)
		return nil
	case len(slots) > 1 || count != "1":
		s.log.Info("running due slots", "job", job.Name, "due", count, "runs", len(slots), "newest", newest)
	}
	// The slots of one job run one after another, in the order they fell.
	req := Request{Job: job.Name, Trigger: trigger, Slot: slots[0], Next: e.next, later: slots[1:]}
	if s.backlogs[job.Name] {
		req.backlogDone = func() { s.endBacklog(job.Name) }
		s.backlogLeft[job.Name] = len(slots)
	}
	return []Request{req}
}

// endBacklog puts a job whose catch-up backlog has ended back in the heap
// and wakes the dispatcher. The live slots that fell meanwhile are then
// due at once and merge into one run of the newest, as after a late timer.
func (s *Scheduler) endBacklog(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endBacklogLocked(name)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// endBacklogLocked ends the hold of the job's current entry, which a
// reload may have replaced since the backlog began. A removed job has
// none.
func (s *Scheduler) endBacklogLocked(name string) {
	if !s.backlogs[name] {
		return
	}
	delete(s.backlogs, name)
	delete(s.backlogLeft, name)
	e, ok := s.entries[name]
	if !ok {
		return
	}
	// A reload that replaced the entry timed it from the position stored
	// then, which the backlog has moved since. Its passed slots are now
	// the live slots that fell during the backlog.
	if st, found, err := s.store.Job(name); err == nil && found {
		if next := e.sched.Next(position(st)); next.After(e.next) {
			e.next = next
		}
	}
	e.missed = false
	s.slots.schedule(e)
}

// dueSlots returns the newest keep slots from first up to now, oldest
// first, and how many slots were due, as text since a huge backlog is
// counted only up to maxCountedSlots.
func dueSlots(sched schedule.Schedule, first, now time.Time, keep int) ([]time.Time, string) {
	slots, count, _ := dueSlotsAndNext(sched, first, now, keep)
	return slots, count
}

// dueSlotsAndNext is dueSlots that also returns the first slot after the
// newest due one, which the walk computes anyway, or zero when there is
// none.
func dueSlotsAndNext(sched schedule.Schedule, first, now time.Time, keep int) ([]time.Time, string, time.Time) {
	slots := []time.Time{first}
	n := 1
	next := sched.Next(first)
	for ; !next.IsZero() && !next.After(now); next = sched.Next(next) {
		n++
		slots = append(slots, next)
		if len(slots) > keep {
			slots = slots[1:]
		}
		if n >= maxCountedSlots {
			// Jump to the newest slot instead of walking a year of
			// minutes; the kept slots are then just the newest one.
			latest, _ := schedule.Latest(sched, next, now)
			if !latest.IsZero() {
				slots = []time.Time{latest}
			}
			newest := slots[len(slots)-1]
			return slots, fmt.Sprintf("more than %d", maxCountedSlots), sched.Next(newest)
		}
	}
	return slots, strconv.Itoa(n), next
}

func dropOlder(slots []time.Time, cutoff time.Time) []time.Time {
	kept := slots[:0:0]
	for _, slot := range slots {
		if !slot.Before(cutoff) {
			kept = append(kept, slot)
		}
	}
	return kept
}

// dispatch runs a request and, for a catch-up of several slots, the
// later slots after it. A worker calls it. Once a catch_up = "all"
// backlog has run, retries included, the job's live slots resume.
func (s *Scheduler) dispatch(req Request) {
	later, done := req.later, req.backlogDone
	req.later, req.backlogDone = nil, nil
	if done != nil {
		defer done()
	}
	s.backlogStarted(req.Job, done != nil)
	s.runOne(req)
	for _, slot := range later {
		s.backlogStarted(req.Job, done != nil)
		s.runOne(Request{Job: req.Job, Trigger: req.Trigger, Slot: slot, Next: req.Next, entered: s.clock.Now()})
	}
}

// backlogStarted counts one run of a catch_up = "all" backlog as started.
func (s *Scheduler) backlogStarted(name string, backlog bool) {
	if !backlog {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backlogLeft[name] > 0 {
		s.backlogLeft[name]--
	}
}

func (s *Scheduler) runOne(req Request) {
	run, err := s.runner.RunPolicies(context.Background(), req)
	switch {
	case err == nil, errors.Is(err, ErrStopping):
	case ran(run):
		// The runner logged that the run's final record failed to store.
	case errors.Is(err, errJobRemoved):
		s.log.Info("run dropped: a reload removed or disabled its job while it waited", "job", req.Job, "slot", req.Slot)
	case errors.Is(err, state.ErrSlotClaimed):
		s.log.Warn("slot already claimed", "job", req.Job, "slot", req.Slot, "err", err)
	default:
		s.log.Error("run failed to start", "job", req.Job, "err", err)
	}
}

// Next returns the next slot of a job, or false for an unknown or
// disabled job.
func (s *Scheduler) Next(name string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	if !ok {
		return time.Time{}, false
	}
	return e.next, true
}

// NextRuns returns when each enabled job runs next, as status shows it.
// It is the job's next slot, unless a run of it comes first: a catch-up
// run waiting for its place in catch_up_spread runs then, and one that
// waits to start (the rest of a catch_up = "all" backlog, or a run
// waiting for a worker, its job lock or a max_concurrent place) runs as
// soon as it can, shown as now. During a backlog the next slot can pass,
// and its run then follows the backlog at once, so a next run is never
// shown in the past. The queue of catch-up runs is read once for all
// jobs, since it can hold a run of each.
func (s *Scheduler) NextRuns() map[string]time.Time {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	delayed := s.delayed.firsts()
	out := make(map[string]time.Time, len(s.entries))
	for name, e := range s.entries {
		if at, ok := delayed[name]; ok {
			out[name] = at
			continue
		}
		next := e.next
		if s.backlogLeft[name] > 0 || s.runner.WaitsToStart(name) || (!next.IsZero() && next.Before(now)) {
			next = now
		}
		out[name] = next
	}
	return out
}

// Ping returns an error unless the scheduler's lock and its dispatcher
// both respond within timeout. The systemd watchdog depends on it, so a
// wedged scheduler gets the daemon restarted.
func (s *Scheduler) Ping(timeout time.Duration) error {
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		if !running {
			close(done)
			return
		}
		reply := make(chan struct{})
		select {
		case s.pings <- reply:
			<-reply
		case <-s.done:
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("scheduler did not respond within %s", timeout)
	}
}

// Stop waits for the dispatcher to return, drops the runs still queued
// and waits for the workers. The caller cancels the ctx given to Start and
// shuts the runner down first, so running jobs end.
func (s *Scheduler) Stop() error {
	s.mu.Lock()
	running := s.running
	s.running = false
	s.mu.Unlock()
	if running {
		<-s.done
	}
	s.background.Wait()
	s.pool.stop()
	return nil
}

// CatchUpPlan is what a start would do about the slots a job missed.
type CatchUpPlan struct {
	// Missed counts the slots that passed, as text since a huge backlog
	// is counted only up to a bound.
	Missed string
	// Runs are the slots that would run, oldest first; empty when the
	// policy or the deadline skips them.
	Runs []time.Time
}

// PlanCatchUp returns what a daemon starting at now would do about the
// slots of job that passed since from.
func PlanCatchUp(job *config.Job, sched schedule.Schedule, from, now time.Time) CatchUpPlan {
	first := sched.Next(from)
	if first.IsZero() || first.After(now) {
		return CatchUpPlan{Missed: "0"}
	}
	keep := 1
	if job.CatchUp == config.CatchUpAll {
		keep = job.MaxCatchUp
	}
	slots, count := dueSlots(sched, first, now, keep)
	if job.CatchUpDeadline > 0 {
		slots = dropOlder(slots, now.Add(-job.CatchUpDeadline))
	}
	if job.CatchUp == config.CatchUpSkip {
		slots = nil
	}
	return CatchUpPlan{Missed: count, Runs: slots}
}
