package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"
	"github.com/jonboulle/clockwork"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/schedule"
	"github.com/agent-runner/agent-runner/state"
)

const (
	// wallCheckInterval is how often the scheduler compares each job's
	// next slot with the wall clock. Go timers follow the monotonic clock,
	// which stops while the machine sleeps, so after a suspend or a clock
	// step a timer can fire late or early; this check catches the slots
	// such timers would miss.
	wallCheckInterval = 30 * time.Second
	// overdueAfter is how late a slot must be before the wall-clock check
	// treats it as missed rather than about to fire.
	overdueAfter = 2 * time.Second
	// earlyTolerance lets a timer that fires slightly before its slot by
	// the wall clock, as after an NTP step, run that slot.
	earlyTolerance = time.Second
)

// Scheduler drives the runs of every enabled job from gocron and applies
// catch-up when slots were missed, while the daemon was stopped or while
// the machine slept.
type Scheduler struct {
	runner *Runner
	store  *state.Store
	clock  clockwork.Clock
	log    *slog.Logger
	cron   gocron.Scheduler

	// spread is catch_up_spread: catch-up runs at start are spread over
	// it.
	spread time.Duration
	// ctx is the context given to Start; it ends when the daemon stops.
	ctx context.Context

	mu      sync.Mutex
	entries map[string]*entry
	runs    sync.WaitGroup
}

// entry is the schedule position of one job in memory. next is the first
// slot not yet claimed or skipped.
type entry struct {
	job   *config.Job
	sched schedule.Schedule
	next  time.Time
	// id is the job's ID in gocron, for removal on reload.
	id uuid.UUID
}

// NewScheduler builds a scheduler for the enabled jobs of cfg.
func NewScheduler(cfg *config.Config, runner *Runner, store *state.Store, clock clockwork.Clock, log *slog.Logger) (*Scheduler, error) {
	cron, err := gocron.NewScheduler(
		gocron.WithClock(clock),
		gocron.WithLocation(time.UTC),
		gocron.WithLogger(gocronLogger{log}),
	)
	if err != nil {
		return nil, fmt.Errorf("create gocron scheduler: %w", err)
	}
	s := &Scheduler{
		runner:  runner,
		store:   store,
		clock:   clock,
		log:     log,
		cron:    cron,
		entries: make(map[string]*entry),
		spread:  cfg.Runner.CatchUpSpread,
		ctx:     context.Background(),
	}
	for _, job := range cfg.Jobs {
		if !job.Enabled {
			continue
		}
		if err := s.add(job); err != nil {
			cron.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

// Schedule returns the schedule of a job, anchoring an every-job at the
// moment the store first saw it.
func Schedule(job *config.Job, st state.JobState) (schedule.Schedule, error) {
	var sched schedule.Schedule
	switch {
	case !job.At.IsZero():
		sched = schedule.At{Instant: job.At}
	case job.Every > 0:
		// Whole seconds keep the slots on the second grid gocron times by.
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

// add registers a job with gocron, its position taken from the store.
func (s *Scheduler) add(job *config.Job) error {
	st, err := s.store.EnsureJob(job.Name, s.clock.Now())
	if err != nil {
		return fmt.Errorf("load state of job %s: %w", job.Name, err)
	}
	sched, err := Schedule(job, st)
	if err != nil {
		return fmt.Errorf("schedule job %s: %w", job.Name, err)
	}
	e := &entry{job: job, sched: sched, next: sched.Next(position(st))}
	if sched.Next(s.clock.Now()).IsZero() {
		// A passed at job: nothing for gocron to time, but catch-up may
		// still run its slot if it was missed.
		s.entries[job.Name] = e
		return nil
	}
	registered, err := s.cron.NewJob(
		gocron.CronJob(job.Name, false),
		gocron.NewTask(func() { s.fire(job.Name, state.TriggerSchedule) }),
		gocron.WithName(job.Name),
		gocron.WithCronImplementation(cronAdapter{sched}),
	)
	if err != nil {
		return fmt.Errorf("register job %s with gocron: %w", job.Name, err)
	}
	e.id = registered.ID()
	s.entries[job.Name] = e
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
	var errs []error
	for name, e := range s.entries {
		if job, keep := wanted[name]; keep && sameSchedule(e.job, job) {
			e.job = job
			continue
		}
		if e.id == uuid.Nil {
			delete(s.entries, name)
			continue
		}
		if err := s.cron.RemoveJob(e.id); err != nil {
			errs = append(errs, fmt.Errorf("remove job %s from gocron: %w", name, err))
		}
		delete(s.entries, name)
	}
	for name, job := range wanted {
		if _, ok := s.entries[name]; ok {
			continue
		}
		if err := s.add(job); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
// starts gocron and the wall-clock check. It returns at once; runs go on
// in the background until Stop.
func (s *Scheduler) Start(ctx context.Context) {
	s.ctx = ctx
	s.catchUp(ctx)
	s.cron.Start()
	s.runs.Add(1)
	go s.checkWallClock(ctx)
}

// catchUp runs, or skips, the slots of each job that passed while the
// daemon was stopped, spreading the runs over catch_up_spread.
func (s *Scheduler) catchUp(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	var due []*entry
	for _, name := range s.namesLocked() {
		if e := s.entries[name]; !e.next.IsZero() && !e.next.After(now) {
			due = append(due, e)
		}
	}
	for i, e := range due {
		var delay time.Duration
		if s.spread > 0 && len(due) > 1 {
			delay = s.spread * time.Duration(i) / time.Duration(len(due))
		}
		s.claimDueLocked(ctx, e, now, state.TriggerCatchUp, delay)
	}
}

// fire runs when gocron's timer for a job goes off.
func (s *Scheduler) fire(name, trigger string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[name]
	now := s.clock.Now()
	if e == nil || e.next.IsZero() || e.next.After(now.Add(earlyTolerance)) {
		// An early timer after a wall-clock step; the wall-clock check
		// runs the slot once it is due.
		return
	}
	s.claimDueLocked(s.ctx, e, now, trigger, 0)
}

// maxCountedSlots bounds the walk over missed slots; past it, only the
// newest slots matter and the count is reported as a lower bound.
const maxCountedSlots = 100000

// claimDueLocked handles every due slot of e: a late timer or a catch-up
// under "once" merges them into one run of the newest, "all" runs each of
// the newest max_catch_up in order, and "skip" records them as skipped.
// Slots older than catch_up_deadline are dropped.
func (s *Scheduler) claimDueLocked(ctx context.Context, e *entry, now time.Time, trigger string, delay time.Duration) {
	job := e.job
	keep := 1
	if trigger == state.TriggerCatchUp && job.CatchUp == config.CatchUpAll {
		keep = job.MaxCatchUp
	}
	slots, count := dueSlots(e.sched, e.next, now, keep)
	newest := slots[len(slots)-1]
	e.next = e.sched.Next(newest)
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
		return
	case len(slots) > 1 || count != "1":
		s.log.Info("running due slots", "job", job.Name, "due", count, "runs", len(slots), "newest", newest)
	}
	s.runs.Add(1)
	go func() {
		defer s.runs.Done()
		if delay > 0 && !s.wait(ctx, delay) {
			return
		}
		for _, slot := range slots {
			s.dispatch(Request{Job: job.Name, Trigger: trigger, Slot: slot, Next: e.sched.Next(newest)})
		}
	}()
}

// dueSlots returns the newest keep slots from first up to now, oldest
// first, and how many slots were due, as text since a huge backlog is
// counted only up to maxCountedSlots.
func dueSlots(sched schedule.Schedule, first, now time.Time, keep int) ([]time.Time, string) {
	slots := []time.Time{first}
	n := 1
	for next := sched.Next(first); !next.IsZero() && !next.After(now); next = sched.Next(next) {
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
			return slots, fmt.Sprintf("more than %d", maxCountedSlots)
		}
	}
	return slots, fmt.Sprint(n)
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

// wait waits for d on the scheduler's clock, and returns false when the
// scheduler stops first.
func (s *Scheduler) wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-s.clock.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Scheduler) dispatch(req Request) {
	_, err := s.runner.RunPolicies(context.Background(), req)
	switch {
	case err == nil, errors.Is(err, ErrStopping):
	case errors.Is(err, state.ErrSlotClaimed):
		s.log.Warn("slot already claimed", "job", req.Job, "slot", req.Slot, "err", err)
	default:
		s.log.Error("run failed to start", "job", req.Job, "err", err)
	}
}

// checkWallClock runs slots that are overdue by the wall clock, which
// happens after a suspend or a clock step.
func (s *Scheduler) checkWallClock(ctx context.Context) {
	defer s.runs.Done()
	ticker := s.clock.NewTicker(wallCheckInterval)
	defer ticker.Stop()
	lastWall, lastMono := s.clock.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.Chan():
		}
		wall, mono := s.clock.Now(), time.Now()
		if jump := wall.Sub(lastWall) - mono.Sub(lastMono); jump > 5*time.Second || jump < -5*time.Second {
			s.log.Warn("wall clock moved apart from elapsed time; checking for missed slots", "jump", jump.Round(time.Second))
		}
		lastWall, lastMono = wall, mono
		s.runOverdue(wall)
	}
}

func (s *Scheduler) runOverdue(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.namesLocked() {
		e := s.entries[name]
		if !e.next.IsZero() && e.next.Before(now.Add(-overdueAfter)) {
			s.claimDueLocked(s.ctx, e, now, state.TriggerCatchUp, 0)
		}
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

// Ping returns an error unless the scheduler's own lock and gocron's
// main loop both answer within timeout. The systemd watchdog depends on
// it, so a wedged scheduler gets the daemon restarted.
func (s *Scheduler) Ping(timeout time.Duration) error {
	done := make(chan struct{})
	go func() {
		s.mu.Lock()
		s.mu.Unlock()
		// Jobs is answered by gocron's scheduling loop.
		s.cron.Jobs()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("scheduler did not respond within %s", timeout)
	}
}

func (s *Scheduler) namesLocked() []string {
	names := make([]string, 0, len(s.entries))
	for name := range s.entries {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Stop stops gocron from starting runs and waits for the dispatches and
// the wall-clock check to return; the caller cancels ctx given to Start
// and shuts the runner down first so running jobs end.
func (s *Scheduler) Stop() error {
	err := s.cron.Shutdown()
	s.runs.Wait()
	if err != nil {
		return fmt.Errorf("stop gocron: %w", err)
	}
	return nil
}

// cronAdapter lets gocron time any schedule, cron or every, so one kind
// of gocron job serves both.
type cronAdapter struct{ sched schedule.Schedule }

func (cronAdapter) IsValid(string, *time.Location, time.Time) error { return nil }

// noSlot stands in for "never" towards gocron, whose v2.21.2 start loop
// (scheduler.go, selectStart) never ends when a job's next time is zero.
// A century is far enough and still fits a time.Duration.
const noSlot = 100 * 365 * 24 * time.Hour

func (c cronAdapter) Next(last time.Time) time.Time {
	next := c.sched.Next(last)
	if next.IsZero() {
		return last.Add(noSlot)
	}
	return next
}

// gocronLogger forwards gocron's own messages to slog at debug level,
// except its errors.
type gocronLogger struct{ log *slog.Logger }

func (l gocronLogger) Debug(msg string, args ...any) { l.log.Debug(msg, args...) }
func (l gocronLogger) Info(msg string, args ...any)  { l.log.Debug(msg, args...) }
func (l gocronLogger) Warn(msg string, args ...any)  { l.log.Warn(msg, args...) }
func (l gocronLogger) Error(msg string, args ...any) { l.log.Error(msg, args...) }

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
