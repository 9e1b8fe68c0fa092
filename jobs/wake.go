package jobs

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"
)

// wakeTimer is the dispatcher's one timer, timed by gocron on the
// scheduler's clock. It holds a single gocron job whose schedule is the
// armed deadline, so gocron arms one clock timer however many jobs the
// scheduler has.
//
// Each Reset replaces the gocron job with a new one, under a new job id,
// instead of calling Update on the old one. In gocron v2.21.2 a job that
// fires is sent back for rescheduling by its id. When that request
// arrives after an Update of the same id, gocron replaces the new timer
// with one a wallCheckInterval after the new deadline, so the wake-up
// would come that much late. A request for a removed id is dropped. The
// jobs run without singleton mode because gocron's runJob sends the
// rescheduling request before it calls the task, so the task's wake-up
// reaches the dispatcher after gocron is done with the job. A singleton
// runner sends that request while the task may already run, and keeps
// one goroutine for each job id until the gocron scheduler stops.
type wakeTimer struct {
	clock clockwork.Clock
	cron  gocron.Scheduler
	log   *slog.Logger
	fired chan time.Time

	mu sync.Mutex
	// deadline is the instant the current gocron job fires at.
	deadline time.Time
	// armed is deadline once NewJob has returned for it, so gocron's
	// clock timer for it exists unless it already fired.
	armed time.Time
	// generation numbers the gocron jobs. A job whose task runs after
	// Reset replaced it carries an older generation and sends nothing.
	generation uint64
	// job is the current gocron job, nil before the first Reset.
	job gocron.Job
}

// newWakeTimer starts a gocron scheduler on clock with no job armed.
func newWakeTimer(clock clockwork.Clock, log *slog.Logger) (*wakeTimer, error) {
	cron, err := gocron.NewScheduler(
		gocron.WithClock(clock),
		gocron.WithLocation(time.UTC),
		gocron.WithLogger(gocronLogger{log: log}),
	)
	if err != nil {
		return nil, fmt.Errorf("create gocron scheduler: %w", err)
	}
	cron.Start()
	return &wakeTimer{clock: clock, cron: cron, log: log, fired: make(chan time.Time, 1)}, nil
}

// Chan returns the channel that receives the fire time once the armed
// deadline is reached. A deadline replaced by Reset sends nothing.
func (w *wakeTimer) Chan() <-chan time.Time {
	return w.fired
}

// Reset arms the timer to fire d from now, replacing any earlier
// deadline and dropping a fire time not yet received. d must be positive:
// gocron moves a deadline that has already passed forward by whole
// wallCheckIntervals (see deadlineCron.Next).
func (w *wakeTimer) Reset(d time.Duration) {
	w.mu.Lock()
	w.generation++
	generation := w.generation
	w.deadline = w.clock.Now().Add(d)
	deadline := w.deadline
	previous := w.job
	w.job = nil
	select {
	case <-w.fired:
	default:
	}
	w.mu.Unlock()

	if previous != nil {
		if err := w.cron.RemoveJob(previous.ID()); err != nil {
			w.log.Debug("remove gocron wake-up job failed", "err", err)
		}
	}
	job, err := w.cron.NewJob(
		gocron.CronJob("dispatch", false),
		gocron.NewTask(w.fire, generation),
		gocron.WithCronImplementation(deadlineCron{timer: w, generation: generation}),
		gocron.WithName("dispatch"),
	)
	if err != nil {
		// NOTE: gocron v2.21.2 fails NewJob only for an invalid task,
		// definition or option, which these are not. If it did fail,
		// the dispatcher would sleep until the next Apply wakes it.
		w.log.Error("arm gocron wake-up job failed", "err", err)
		return
	}
	if job != nil {
		w.mu.Lock()
		if w.generation == generation {
			w.job = job
			w.armed = deadline
		}
		w.mu.Unlock()
	}
	// gocron calls Next only after NewJob was called. When the deadline
	// passed in between, gocron scheduled the job a wallCheckInterval
	// later, so fire now instead.
	if !w.clock.Now().Before(deadline) {
		w.fire(generation)
	}
}

// fire sends the fire time unless Reset replaced the job of generation or
// a fire time is still waiting to be received. gocron runs it as the
// task.
func (w *wakeTimer) fire(generation uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if generation != w.generation {
		return
	}
	select {
	case w.fired <- w.clock.Now():
	default:
	}
}

// armedUntil returns the deadline of the last Reset whose gocron job has
// been added.
func (w *wakeTimer) armedUntil() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.armed
}

// Stop shuts the gocron scheduler down, which stops its timer.
func (w *wakeTimer) Stop() {
	if err := w.cron.Shutdown(); err != nil {
		w.log.Warn("stop gocron scheduler failed", "err", err)
	}
}

// deadlineCron is the schedule of one wake-up job: its next run is the
// deadline armed with it.
type deadlineCron struct {
	timer      *wakeTimer
	generation uint64
}

// IsValid accepts any crontab, since Next ignores it.
func (deadlineCron) IsValid(string, *time.Location, time.Time) error {
	return nil
}

// Next returns the armed deadline when it comes after last, and otherwise
// last plus wallCheckInterval. It never returns zero: gocron v2.21.2 calls
// Next until the result is not before now, and a zero time would keep it
// looping for ever. So a job that has fired, or whose deadline passed
// before gocron armed it, is rescheduled a wallCheckInterval later, which
// only matters until the dispatcher's next Reset removes the job.
//
// gocron v2.21.2 also calls Next a second time, with the first result,
// when that result falls in the same wall-clock second as last, to skip
// the repeated hour of a DST fall-back. A deadline less than a second
// away would then move a wallCheckInterval later, so Next returns a
// deadline that is still ahead when last is the deadline itself.
func (c deadlineCron) Next(last time.Time) time.Time {
	c.timer.mu.Lock()
	deadline := c.timer.deadline
	current := c.generation == c.timer.generation
	c.timer.mu.Unlock()
	if current && deadline.After(last) {
		return deadline
	}
	if current && deadline.Equal(last) && deadline.After(c.timer.clock.Now()) {
		return deadline
	}
	return last.Add(wallCheckInterval)
}

// gocronLogger passes gocron's log lines to slog, with its info lines at
// debug level since they only report its own start and stop.
type gocronLogger struct {
	log *slog.Logger
}

func (l gocronLogger) Debug(msg string, args ...any) { l.log.Debug(msg, args...) }
func (l gocronLogger) Info(msg string, args ...any)  { l.log.Debug(msg, args...) }
func (l gocronLogger) Warn(msg string, args ...any)  { l.log.Warn(msg, args...) }
func (l gocronLogger) Error(msg string, args ...any) { l.log.Error(msg, args...) }
