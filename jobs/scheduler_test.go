package jobs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// schedHarness runs a Scheduler on a fake clock with a fake execute that
// records each run instead of starting a process.
type schedHarness struct {
	t     *testing.T
	dir   string
	clock *clockwork.FakeClock
	store *state.Store
	cfg   *config.Config
	runs  chan state.Run

	sched  *Scheduler
	runner *Runner
	cancel context.CancelFunc
}

func newSchedHarness(t *testing.T, start time.Time, jobs ...*config.Job) *schedHarness {
	t.Helper()
	dir := t.TempDir()
	for _, job := range jobs {
		job.WorkingDir = dir
	}
	h := &schedHarness{
		t:     t,
		dir:   dir,
		clock: clockwork.NewFakeClockAt(start),
		store: openStore(t, dir),
		cfg:   &config.Config{Path: filepath.Join(dir, "config.toml"), Dir: dir, Runner: testSettings(dir), Jobs: jobs},
		runs:  make(chan state.Run, 100),
	}
	return h
}

// start builds and starts a scheduler, as a daemon start does, and waits
// for the dispatcher to arm its timer, so a later Advance fires it.
func (h *schedHarness) start() {
	h.t.Helper()
	h.startHeld(nil)
}

// startHeld is start with runs that, once reported on h.runs, wait until
// release is closed. A nil release holds no run.
func (h *schedHarness) startHeld(release <-chan struct{}) {
	h.t.Helper()
	h.startWith(func(run state.Run) {
		if release != nil {
			<-release
		}
	})
}

// startWith is start with runs that, once reported on h.runs, call hold
// and end when it returns.
func (h *schedHarness) startWith(hold func(state.Run)) {
	h.t.Helper()
	h.runner = NewRunner(h.cfg, h.store, sharedReaper(h.t), testLogger(h.t), h.clock.Now)
	h.runner.execute = func(_ context.Context, _ *config.Job, run state.Run, _ func(Line)) execOutcome {
		h.runs <- run
		hold(run)
		return execOutcome{result: state.ResultOK}
	}
	sched, err := NewScheduler(h.cfg, h.runner, h.store, h.clock, testLogger(h.t))
	if err != nil {
		h.t.Fatalf("NewScheduler: %v", err)
	}
	h.sched = sched
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	sched.Start(ctx)
	h.waitArmed()
}

// waitArmed waits until the dispatcher's single timer is armed for an
// instant after the fake clock's time. The clock's waiter count alone
// does not show it: after the gocron job fires, gocron reschedules it a
// wallCheckInterval later, which is one waiter, until the dispatcher's
// Reset replaces the job.
func (h *schedHarness) waitArmed() {
	h.t.Helper()
	waitCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	for !h.sched.timer.armedUntil().After(h.clock.Now()) {
		select {
		case <-waitCtx.Done():
			h.t.Fatalf("dispatcher timer not armed after %s", h.clock.Now())
		case <-time.After(time.Millisecond):
		}
	}
	if err := h.clock.BlockUntilContext(waitCtx, 1); err != nil {
		h.t.Fatalf("dispatcher timer not armed: %v", err)
	}
}

func (h *schedHarness) enabledJobs() int {
	n := 0
	for _, job := range h.cfg.Jobs {
		if job.Enabled {
			n++
		}
	}
	return n
}

// stop stops the scheduler as a daemon stop does.
func (h *schedHarness) stop() {
	h.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h.runner.Shutdown(ctx)
	if err := h.sched.Stop(); err != nil {
		h.t.Errorf("Stop: %v", err)
	}
}

// advance moves the fake clock in steps no larger than step, so each
// timer fires at its own instant rather than all at the end.
func (h *schedHarness) advance(total, step time.Duration) {
	for total > 0 {
		d := min(step, total)
		h.clock.Advance(d)
		total -= d
		// A fired timer is re-armed once the dispatcher has handed out
		// what was due, so the runs get a moment to start before time
		// moves again.
		h.waitArmed()
		time.Sleep(2 * time.Millisecond)
	}
}

// expectRuns waits for n runs and returns them; it fails on fewer.
func (h *schedHarness) expectRuns(n int) []state.Run {
	h.t.Helper()
	var got []state.Run
	timeout := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case run := <-h.runs:
			got = append(got, run)
		case <-timeout:
			h.t.Fatalf("got %d runs, want %d: %+v", len(got), n, got)
		}
	}
	return got
}

// expectNoRun fails when a run arrives within a short real-time window.
func (h *schedHarness) expectNoRun() {
	h.t.Helper()
	select {
	case run := <-h.runs:
		h.t.Fatalf("unexpected run %+v", run)
	case <-time.After(100 * time.Millisecond):
	}
}

func cronJob(name, expr string) *config.Job {
	return &config.Job{Name: name, Command: []string{"true"}, Cron: expr, Location: time.UTC, CatchUp: config.CatchUpOnce, Enabled: true}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)

func TestScheduledRunsClaimEachSlot(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("minutely", "* * * * *"))
	h.start()
	defer h.stop()

	h.advance(3*time.Minute, 10*time.Second)
	runs := h.expectRuns(3)
	for i, run := range runs {
		want := time.Date(2026, 3, 1, 12, 1+i, 0, 0, time.UTC)
		if !run.Slot.Equal(want) {
			t.Errorf("run %d slot = %v, want %v", i, run.Slot, want)
		}
		if run.Trigger != state.TriggerSchedule {
			t.Errorf("run %d trigger = %q, want schedule", i, run.Trigger)
		}
	}
	h.expectNoRun()
}

func TestNewJobDoesNotCatchUp(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("hourly", "0 * * * *"))
	h.start()
	defer h.stop()
	h.expectNoRun()
}

func TestCatchUpRunsOnceAfterDowntime(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("hourly", "0 * * * *"))
	h.start()
	h.advance(time.Hour, time.Minute)
	first := h.expectRuns(1)[0]
	h.stop()

	// Down for five hours: five slots pass, one run makes up for them.
	h.clock.Advance(5 * time.Hour)
	h.start()
	defer h.stop()
	run := h.expectRuns(1)[0]
	if run.Trigger != state.TriggerCatchUp {
		t.Errorf("trigger = %q, want catch-up", run.Trigger)
	}
	if want := first.Slot.Add(5 * time.Hour); !run.Slot.Equal(want) {
		t.Errorf("catch-up slot = %v, want the newest missed slot %v", run.Slot, want)
	}
	h.expectNoRun()

	// The next slot after the catch-up runs on schedule.
	h.advance(time.Hour, time.Minute)
	if next := h.expectRuns(1)[0]; !next.Slot.Equal(run.Slot.Add(time.Hour)) {
		t.Errorf("next slot = %v, want %v", next.Slot, run.Slot.Add(time.Hour))
	}
}

func TestCatchUpSkipRecordsMiss(t *testing.T) {
	job := cronJob("hourly", "0 * * * *")
	job.CatchUp = config.CatchUpSkip
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	h.clock.Advance(3 * time.Hour)
	h.start()
	defer h.stop()
	h.expectNoRun()
	st, _, _ := h.store.Job("hourly")
	if want := time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC); !st.LastSlot.Equal(want) {
		t.Errorf("LastSlot = %v, want the skipped slot %v", st.LastSlot, want)
	}
	runs, _ := h.store.Runs("hourly", 10)
	if len(runs) != 1 || runs[0].Result != state.ResultSkipped {
		t.Errorf("history = %+v, want one skipped record", runs)
	}
}

func TestEveryJobAnchoredAtFirstSeen(t *testing.T) {
	job := &config.Job{Name: "tick", Command: []string{"true"}, Every: 10 * time.Minute, Location: time.UTC, CatchUp: config.CatchUpOnce, Enabled: true}
	h := newSchedHarness(t, t0, job)
	h.start()
	h.advance(25*time.Minute, time.Minute)
	runs := h.expectRuns(2)
	h.stop()
	for i, run := range runs {
		if want := t0.Add(time.Duration(i+1) * 10 * time.Minute); !run.Slot.Equal(want) {
			t.Errorf("run %d slot = %v, want %v", i, run.Slot, want)
		}
	}

	// A restart keeps the anchor: the next slot is still t0 + 30m.
	h.clock.Advance(time.Minute)
	h.start()
	defer h.stop()
	h.expectNoRun()
	h.advance(5*time.Minute, time.Minute)
	if run := h.expectRuns(1)[0]; !run.Slot.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("slot after restart = %v, want %v", run.Slot, t0.Add(30*time.Minute))
	}
}

func TestDisabledJobNeverRuns(t *testing.T) {
	job := cronJob("off", "* * * * *")
	job.Enabled = false
	h := newSchedHarness(t, t0, job, cronJob("on", "0 0 1 1 *"))
	h.start()
	defer h.stop()
	h.advance(3*time.Minute, 30*time.Second)
	h.expectNoRun()
}

func TestWallClockJumpRunsOverdueSlot(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("hourly", "0 * * * *"))
	h.start()
	defer h.stop()
	// A suspend: the wall clock moves three hours while the timer waited
	// for its 30 s wall-clock check.
	h.clock.Advance(3 * time.Hour)
	run := h.expectRuns(1)[0]
	if run.Trigger != state.TriggerCatchUp {
		t.Errorf("trigger = %q, want catch-up", run.Trigger)
	}
	if want := time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC); !run.Slot.Equal(want) {
		t.Errorf("slot = %v, want %v", run.Slot, want)
	}
	// The three missed slots became one run; nothing else is due.
	h.waitArmed()
	h.advance(time.Minute, 30*time.Second)
	h.expectNoRun()
}

func TestLateTimerRunsAsScheduled(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("hourly", "0 * * * *"))
	h.start()
	defer h.stop()
	// Minute steps from 12:00:30 fire the 13:00 timer at 13:00:30.
	h.advance(time.Hour, time.Minute)
	run := h.expectRuns(1)[0]
	if run.Trigger != state.TriggerSchedule {
		t.Errorf("trigger = %q, want schedule", run.Trigger)
	}
	if want := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC); !run.Slot.Equal(want) {
		t.Errorf("slot = %v, want %v", run.Slot, want)
	}
}

func TestSharedSlotDispatchedAsOneBatch(t *testing.T) {
	var jobs []*config.Job
	for i := range 30 {
		jobs = append(jobs, cronJob(fmt.Sprintf("job-%02d", i), "* * * * *"))
	}
	h := newSchedHarness(t, t0, jobs...)
	h.cfg.Runner.MaxConcurrent = 4
	h.start()
	defer h.stop()
	h.advance(30*time.Second, 30*time.Second)
	runs := h.expectRuns(len(jobs))
	seen := make(map[string]bool)
	for _, run := range runs {
		if want := time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC); !run.Slot.Equal(want) {
			t.Errorf("%s slot = %v, want %v", run.Job, run.Slot, want)
		}
		if seen[run.Job] {
			t.Errorf("%s ran twice", run.Job)
		}
		seen[run.Job] = true
	}
	h.expectNoRun()
}

func TestApplyAddedJobWakesDispatcher(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("daily", "0 0 * * *"))
	h.start()
	defer h.stop()
	cfg := *h.cfg
	added := &config.Job{Name: "often", Command: []string{"true"}, Every: 5 * time.Second, Location: time.UTC,
		CatchUp: config.CatchUpOnce, Enabled: true, WorkingDir: h.dir}
	cfg.Jobs = append(slices.Clone(h.cfg.Jobs), added)
	h.runner.SetJobs(&cfg)
	if err := h.sched.Apply(&cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// A ping passes through the dispatcher, which then has the wake-up
	// queued or done.
	if err := h.sched.Ping(5 * time.Second); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	h.waitArmed()
	// The armed timer was the 30 s wall-clock check; the new job's first
	// slot comes 5 s after it was added.
	h.advance(5*time.Second, time.Second)
	run := h.expectRuns(1)[0]
	if run.Job != "often" || run.Trigger != state.TriggerSchedule {
		t.Errorf("run = %s %s, want often schedule", run.Job, run.Trigger)
	}
	if want := t0.Add(5 * time.Second); !run.Slot.Equal(want) {
		t.Errorf("slot = %v, want %v", run.Slot, want)
	}
}

// TestNoSlotRunsTwiceAcrossRestarts restarts the scheduler at awkward
// moments over two simulated days of a job due every 15 minutes, and
// checks every slot was claimed at most once and, with catch-up, that no
// stretch of time went without a run.
func TestNoSlotRunsTwiceAcrossRestarts(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("quarter", "*/15 * * * *"))
	seen := map[time.Time]bool{}
	var mu sync.Mutex
	collect := func() {
		for {
			select {
			case run := <-h.runs:
				mu.Lock()
				if seen[run.Slot] {
					t.Errorf("slot %v ran twice", run.Slot)
				}
				seen[run.Slot] = true
				mu.Unlock()
			case <-time.After(50 * time.Millisecond):
				return
			}
		}
	}
	// Uptimes and downtimes in minutes, chosen to stop right at, just
	// before and just after slots.
	pattern := []struct{ up, down int }{{15, 0}, {44, 1}, {1, 30}, {60, 15}, {14, 2}, {90, 240}, {30, 0}}
	for day := 0; day < 2; day++ {
		for _, p := range pattern {
			h.start()
			h.advance(time.Duration(p.up)*time.Minute, time.Minute)
			collect()
			h.stop()
			h.clock.Advance(time.Duration(p.down) * time.Minute)
		}
	}
	if len(seen) < 20 {
		t.Errorf("only %d slots ran; the schedule was not followed", len(seen))
	}
}

func TestWakeBeforeSlotRunsNothingEarly(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 59, 500_000_000, time.UTC)
	h := newSchedHarness(t, start, cronJob("minutely", "* * * * *"))
	h.start()
	defer h.stop()
	// A reload half a second before the slot wakes the dispatcher.
	cfg := *h.cfg
	cfg.Jobs = append(slices.Clone(h.cfg.Jobs), cronJob("daily", "0 0 * * *"))
	cfg.Jobs[1].WorkingDir = h.dir
	h.runner.SetJobs(&cfg)
	if err := h.sched.Apply(&cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := h.sched.Ping(5 * time.Second); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	h.waitArmed()
	h.expectNoRun()
	h.advance(500*time.Millisecond, 500*time.Millisecond)
	run := h.expectRuns(1)[0]
	if run.Start.Before(run.Slot) {
		t.Errorf("run of slot %v started early at %v", run.Slot, run.Start)
	}
}

func TestUnopenableLockRecordsFailedRuns(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("minutely", "* * * * *"))
	// A folder where the lock file belongs makes every open of it fail.
	if err := os.MkdirAll(lockPath(h.dir, "minutely"), 0o700); err != nil {
		t.Fatal(err)
	}
	h.start()
	defer h.stop()

	// Each slot's record is final before the next slot falls, which would
	// otherwise take over a request that has not started yet.
	var runs []state.Run
	for n := 1; n <= 3; n++ {
		h.advance(time.Minute, 10*time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			var err error
			if runs, err = h.store.Runs("minutely", 10); err != nil {
				t.Fatal(err)
			}
			if len(runs) >= n && runs[0].Result != state.ResultRunning {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(runs) != 3 {
		t.Fatalf("got %d run records, want a failed one for each of 3 slots: %+v", len(runs), runs)
	}
	for _, run := range runs {
		if run.Result != state.ResultFailed || !strings.Contains(run.Error, "open job lock") {
			t.Errorf("run %s: result %q, error %q, want failed with the lock error", run.ID, run.Result, run.Error)
		}
	}
}

func TestPositionFarAheadWarns(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("minutely", "* * * * *"), cronJob("fine", "* * * * *"))
	// A clock that ran a day ahead claimed a slot of tomorrow.
	ahead := t0.Add(24 * time.Hour)
	if _, err := h.store.EnsureJob("minutely", ahead); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Skip("minutely", ahead.Add(time.Minute), state.TriggerSchedule, "clock ahead", ahead, ahead.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	runner := NewRunner(h.cfg, h.store, sharedReaper(t), log, h.clock.Now)
	if _, err := NewScheduler(h.cfg, runner, h.store, h.clock, log); err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(logs.String(), "ahead of the clock") || !strings.Contains(logs.String(), "job=minutely") {
		t.Errorf("log lacks the warning for minutely:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "job=fine") {
		t.Errorf("log warns of job fine, whose position is not ahead:\n%s", logs.String())
	}
}
