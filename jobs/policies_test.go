package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/schedule"
	"github.com/agent-runner/agent-runner/state"
)

func TestCatchUpAllRunsNewestSlotsInOrder(t *testing.T) {
	job := cronJob("hourly", "0 * * * *")
	job.CatchUp, job.MaxCatchUp = config.CatchUpAll, 3
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	h.clock.Advance(5 * time.Hour)
	h.start()
	defer h.stop()
	runs := h.expectRuns(3)
	for i, run := range runs {
		want := time.Date(2026, 3, 1, 15+i, 0, 0, 0, time.UTC)
		if !run.Slot.Equal(want) || run.Trigger != state.TriggerCatchUp {
			t.Errorf("run %d = %v %s, want %v catch-up", i, run.Slot, run.Trigger, want)
		}
	}
	h.expectNoRun()
}

func TestCatchUpDeadlineDropsOldSlots(t *testing.T) {
	job := cronJob("hourly", "0 * * * *")
	job.CatchUpDeadline = 10 * time.Minute
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	// The newest missed slot, 17:00, is 30 minutes old at 17:30.
	h.clock.Advance(5*time.Hour + 30*time.Minute)
	h.start()
	defer h.stop()
	h.expectNoRun()
	runs, _ := h.store.Runs("hourly", 5)
	if len(runs) != 1 || runs[0].Result != state.ResultSkipped {
		t.Errorf("history = %+v, want one skipped record", runs)
	}
}

func TestCatchUpSpreadStaggersStarts(t *testing.T) {
	// Runs are planned over 90% of the spread, a third of it apart. With
	// a one-second spread they fall within one wall-clock second.
	for _, spread := range []time.Duration{30 * time.Second, time.Second} {
		t.Run(spread.String(), func(t *testing.T) {
			a, b, c := cronJob("a", "0 * * * *"), cronJob("b", "0 * * * *"), cronJob("c", "0 * * * *")
			h := newSchedHarness(t, t0, a, b, c)
			h.cfg.Runner.CatchUpSpread = spread
			h.start()
			h.restartAfter(2 * time.Hour)
			defer h.stop()
			step := spread * 9 / 10 / 3
			for i, want := range []string{"a", "b", "c"} {
				if i > 0 {
					h.waitArmed()
					h.clock.Advance(step)
				}
				if run := h.expectRuns(1)[0]; run.Job != want {
					t.Errorf("catch-up %d = %s, want %s %v after the start", i+1, run.Job, want, step*time.Duration(i))
				}
				if i == 0 {
					h.expectNoRun()
				}
			}
		})
	}
}

func TestCatchUpSpreadCountsFromProcessStart(t *testing.T) {
	a, b, c := cronJob("a", "0 * * * *"), cronJob("b", "0 * * * *"), cronJob("c", "0 * * * *")
	h := newSchedHarness(t, t0, a, b, c)
	h.cfg.Runner.CatchUpSpread = 30 * time.Second
	h.start()
	h.stop()
	h.clock.Advance(2 * time.Hour)

	// The process started 12 s before the scheduler, so 15 s of the
	// spread's planned 27 s are left for the three runs.
	processAge = func() time.Duration { return 12 * time.Second }
	defer func() { processAge = func() time.Duration { return 0 } }()
	h.start()
	defer h.stop()
	if run := h.expectRuns(1)[0]; run.Job != "a" {
		t.Errorf("first catch-up = %s, want a", run.Job)
	}
	h.clock.Advance(4 * time.Second)
	h.expectNoRun()
	h.clock.Advance(time.Second)
	if run := h.expectRuns(1)[0]; run.Job != "b" {
		t.Errorf("second catch-up = %s, want b a third of 15 s after the start", run.Job)
	}
	h.waitArmed()
	h.clock.Advance(5 * time.Second)
	if run := h.expectRuns(1)[0]; run.Job != "c" {
		t.Errorf("third catch-up = %s, want c", run.Job)
	}
}

func TestReadProcessAge(t *testing.T) {
	if age := readProcessAge(); age <= 0 {
		t.Errorf("readProcessAge() = %v, want the positive age of the test process", age)
	}
}

func TestAtJobRunsOnce(t *testing.T) {
	job := &config.Job{Name: "launch", Command: []string{"true"}, At: t0.Add(90 * time.Second), Location: time.UTC, CatchUp: config.CatchUpOnce, Enabled: true}
	h := newSchedHarness(t, t0, job)
	h.start()
	h.advance(5*time.Minute, 30*time.Second)
	if run := h.expectRuns(1)[0]; !run.Slot.Equal(job.At) {
		t.Errorf("slot = %v, want %v", run.Slot, job.At)
	}
	h.expectNoRun()
	h.stop()
	h.clock.Advance(time.Hour)
	h.start()
	defer h.stop()
	h.expectNoRun()
}

func TestRandomizedDelayShiftsSlots(t *testing.T) {
	job := cronJob("jittered", "0 * * * *")
	job.RandomizedDelay = 10 * time.Minute
	offset := schedule.StableDelay("jittered", 10*time.Minute)
	h := newSchedHarness(t, t0, job)
	h.start()
	defer h.stop()
	h.advance(time.Hour+10*time.Minute, 30*time.Second)
	run := h.expectRuns(1)[0]
	want := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(offset)
	if !want.After(t0) {
		want = want.Add(time.Hour)
	}
	if !run.Slot.Equal(want) {
		t.Errorf("slot = %v, want %v (the hour plus the stable offset %v)", run.Slot, want, offset)
	}
}

// recorded is a list of runs that several goroutines append to.
type recorded struct {
	mu   sync.Mutex
	runs []string
}

func (r *recorded) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, s)
}

func (r *recorded) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.runs...)
}

// scriptedRunner returns a runner whose execute returns results in turn,
// recording the job and trigger of each run.
func scriptedRunner(t *testing.T, results []string, jobs ...*config.Job) (*Runner, *recorded) {
	r, _ := newTestRunner(t, jobs...)
	triggers := &recorded{}
	var n atomic.Int32
	r.execute = func(_ context.Context, job *config.Job, run state.Run, _ func(Line)) execOutcome {
		triggers.add(job.Name + ":" + run.Trigger)
		i := int(n.Add(1)) - 1
		if job.Name != "flaky" || i >= len(results) {
			return execOutcome{result: state.ResultOK}
		}
		return execOutcome{result: results[i], exitCode: 1}
	}
	r.sleep = func(context.Context, time.Duration) error { return nil }
	return r, triggers
}

func TestRetriesThenChainOnSuccess(t *testing.T) {
	flaky := shellJob("flaky", "true")
	flaky.Retries, flaky.RetryBackoff = 3, time.Second
	flaky.OnSuccess = []string{"publish"}
	publish := shellJob("publish", "true")
	r, triggers := scriptedRunner(t, []string{state.ResultFailed, state.ResultTimeout}, flaky, publish)

	run, err := r.RunPolicies(context.Background(), Request{Job: "flaky", Trigger: state.TriggerSchedule, Slot: t0})
	if err != nil {
		t.Fatal(err)
	}
	if run.Result != state.ResultOK || run.Trigger != state.TriggerRetry {
		t.Errorf("final run = %s %s, want ok from a retry", run.Result, run.Trigger)
	}
	waitUntil(t, "the chained job", func() bool { return len(triggers.get()) == 4 })
	want := []string{"flaky:schedule", "flaky:retry", "flaky:retry", "publish:chain"}
	if fmt.Sprint(triggers.get()) != fmt.Sprint(want) {
		t.Errorf("runs = %v, want %v", triggers.get(), want)
	}
}

func TestRetriesStopWithinTimeout(t *testing.T) {
	flaky := shellJob("flaky", "true")
	flaky.Retries, flaky.RetryBackoff, flaky.Timeout = 5, time.Minute, 90*time.Second
	flaky.OnFailure = []string{"alert"}
	alert := shellJob("alert", "true")
	all := []string{state.ResultFailed, state.ResultFailed, state.ResultFailed, state.ResultFailed, state.ResultFailed, state.ResultFailed}
	r, triggers := scriptedRunner(t, all, flaky, alert)
	var clockMu sync.Mutex
	clock := t0
	r.now = func() time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		return clock
	}
	r.sleep = func(_ context.Context, d time.Duration) error {
		clockMu.Lock()
		defer clockMu.Unlock()
		clock = clock.Add(d)
		return nil
	}

	run, _ := r.RunPolicies(context.Background(), Request{Job: "flaky", Trigger: state.TriggerSchedule, Slot: t0})
	if run.Result != state.ResultFailed {
		t.Errorf("final result = %s, want failed", run.Result)
	}
	// One retry fits: 1m after the start; the next would wait 2m more,
	// past the 90s timeout.
	waitUntil(t, "the failure chain", func() bool { return len(triggers.get()) == 3 })
	want := []string{"flaky:schedule", "flaky:retry", "alert:chain"}
	if fmt.Sprint(triggers.get()) != fmt.Sprint(want) {
		t.Errorf("runs = %v, want %v", triggers.get(), want)
	}
}

func TestManualRunIsNotRetried(t *testing.T) {
	flaky := shellJob("flaky", "true")
	flaky.Retries = 3
	r, triggers := scriptedRunner(t, []string{state.ResultFailed}, flaky)
	r.RunPolicies(context.Background(), Request{Job: "flaky", Trigger: state.TriggerManual})
	time.Sleep(50 * time.Millisecond)
	if got := triggers.get(); len(got) != 1 {
		t.Errorf("runs = %v, want the manual run alone", got)
	}
}

func TestOverlapQueueHoldsOneRun(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	job := shellJob("long", fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done`, release))
	job.Overlap = config.OverlapQueue
	r, _ := newTestRunner(t, job)
	go r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerManual})
	waitRunning(t, r, "long")

	queued := make(chan state.Run)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: t0})
		queued <- run
	}()
	waitUntil(t, "the queued run", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.pending["long"]
		return ok
	})
	// A second slot while one waits merges into the queued run.
	skipped, err := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: t0.Add(time.Minute)})
	if err != nil || skipped.Result != state.ResultSkipped {
		t.Errorf("second queued slot = %v %v, want skipped", skipped.Result, err)
	}
	os.WriteFile(release, nil, 0o600)
	if run := <-queued; run.Result != state.ResultOK || !run.Slot.Equal(t0.Add(time.Minute)) {
		t.Errorf("queued run = %s %v, want ok for the newest slot", run.Result, run.Slot)
	}
}

func TestOverlapReplaceStopsRunningRun(t *testing.T) {
	job := shellJob("replaceable", "sleep 300")
	job.Overlap = config.OverlapReplace
	r, _ := newTestRunner(t, job)
	first := make(chan state.Run)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "replaceable", Trigger: state.TriggerSchedule, Slot: t0})
		first <- run
	}()
	waitRunning(t, r, "replaceable")
	r.execute = func(context.Context, *config.Job, state.Run, func(Line)) execOutcome {
		return execOutcome{result: state.ResultOK}
	}
	second, err := r.Run(context.Background(), Request{Job: "replaceable", Trigger: state.TriggerSchedule, Slot: t0.Add(time.Minute)})
	if err != nil || second.Result != state.ResultOK {
		t.Errorf("replacing run = %v %v, want ok", second.Result, err)
	}
	if run := <-first; run.Result != state.ResultInterrupted {
		t.Errorf("replaced run = %s, want interrupted", run.Result)
	}
}

// TestOverlapReplaceKeepsRunOfSameSlot checks that a second request for
// the slot that the running run serves, as a reload can queue, leaves
// that run alone instead of stopping it for a claim that must fail.
func TestOverlapReplaceKeepsRunOfSameSlot(t *testing.T) {
	job := shellJob("replaceable", "sleep 300")
	job.Overlap = config.OverlapReplace
	r, _ := newTestRunner(t, job)
	first := make(chan state.Run, 1)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "replaceable", Trigger: state.TriggerSchedule, Slot: t0})
		first <- run
	}()
	waitRunning(t, r, "replaceable")

	_, err := r.Run(context.Background(), Request{Job: "replaceable", Trigger: state.TriggerSchedule, Slot: t0})
	if !errors.Is(err, state.ErrSlotClaimed) {
		t.Errorf("request for the running slot: err = %v, want ErrSlotClaimed", err)
	}
	select {
	case run := <-first:
		t.Fatalf("the running run ended as %s: %s", run.Result, run.Error)
	case <-time.After(200 * time.Millisecond):
	}

	// A newer slot still replaces it, which also ends the test's run.
	r.execute = func(context.Context, *config.Job, state.Run, func(Line)) execOutcome {
		return execOutcome{result: state.ResultOK}
	}
	if second, err := r.Run(context.Background(), Request{Job: "replaceable", Trigger: state.TriggerSchedule, Slot: t0.Add(time.Minute)}); err != nil || second.Result != state.ResultOK {
		t.Errorf("replacing run = %v %v, want ok", second.Result, err)
	}
	if run := <-first; run.Result != state.ResultInterrupted {
		t.Errorf("replaced run = %s, want interrupted", run.Result)
	}
}

func TestGateGrantsInSlotOrder(t *testing.T) {
	var g gate
	g.setLimit(1)
	if err := g.acquire(context.Background(), t0, nil); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for _, hour := range []int{3, 1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.acquire(context.Background(), t0.Add(time.Duration(hour)*time.Hour), nil)
			mu.Lock()
			order = append(order, hour)
			mu.Unlock()
			g.release()
		}()
	}
	waitUntil(t, "three waiters", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.waiting) == 3
	})
	g.release()
	wg.Wait()
	if fmt.Sprint(order) != "[1 2 3]" {
		t.Errorf("grant order = %v, want slot order [1 2 3]", order)
	}
}

func TestGateWaiterGivesUp(t *testing.T) {
	var g gate
	g.setLimit(1)
	g.acquire(context.Background(), t0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.acquire(ctx, t0, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("acquire past its deadline = %v", err)
	}
	g.release()
	if err := g.acquire(context.Background(), t0, nil); err != nil {
		t.Errorf("acquire after release = %v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOnCalendarJobFollowsSystemdSyntax(t *testing.T) {
	job := &config.Job{Name: "weekdays", Command: []string{"true"}, Calendar: []string{"Mon..Fri *-*-* 12:30:00"},
		Location: time.UTC, CatchUp: config.CatchUpOnce, Enabled: true}
	// t0 is Sunday 2026-03-01 12:00:30; the first weekday slot is Monday.
	h := newSchedHarness(t, t0, job)
	h.start()
	defer h.stop()
	h.advance(25*time.Hour, 5*time.Minute)
	if run := h.expectRuns(1)[0]; !run.Slot.Equal(time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC)) {
		t.Errorf("slot = %v, want Monday 12:30", run.Slot)
	}
	h.expectNoRun()
}

func TestPassedAtJobShowsDoneOrMissed(t *testing.T) {
	at := t0.Add(-time.Hour)
	job := &config.Job{Name: "launch", At: at, Enabled: true}
	done := StatusOf(job, state.JobState{LastSlot: at, LastResult: state.ResultOK}, false, time.Time{}, t0)
	if done.State != StateDone {
		t.Errorf("state after its run = %q, want done", done.State)
	}
	missed := StatusOf(job, state.JobState{LastSlot: at, LastResult: state.ResultSkipped}, false, time.Time{}, t0)
	if missed.State != StateMissed {
		t.Errorf("state after a skip = %q, want missed", missed.State)
	}
	pending := StatusOf(job, state.JobState{}, false, at, t0)
	if pending.State != StateScheduled {
		t.Errorf("state before its slot was handled = %q, want scheduled", pending.State)
	}
}

// TestDailyJobSixtyDaysWithRestarts runs a daily 08:00 job for 60
// simulated days, stopping and starting the scheduler around the slot in
// different ways each day, and checks that every day's slot ran exactly
// once.
func TestDailyJobSixtyDaysWithRestarts(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	h := newSchedHarness(t, start, cronJob("daily", "0 8 * * *"))
	ran := map[string]int{}
	collect := func() {
		for {
			select {
			case run := <-h.runs:
				ran[run.Slot.Format(time.DateOnly)]++
				if run.Slot.Hour() != 8 || run.Slot.Minute() != 0 {
					t.Errorf("run for slot %v, want 08:00", run.Slot)
				}
			case <-time.After(30 * time.Millisecond):
				return
			}
		}
	}
	for day := 0; day < 60; day++ {
		h.start()
		h.clock.Advance(8*time.Hour - 2*time.Second) // 07:59:58
		switch day % 4 {
		case 0: // up across the slot
			h.advance(4*time.Second, time.Second)
			collect()
			h.stop()
		case 1: // down across the slot: catch-up at 08:00:02
			h.stop()
			h.clock.Advance(4 * time.Second)
			h.start()
			collect()
			h.stop()
		case 2: // stopped right as the slot fires, started again at once
			h.advance(2*time.Second, time.Second)
			h.stop()
			h.start()
			collect()
			h.stop()
		case 3: // restarted twice just after the slot
			h.advance(3*time.Second, time.Second)
			h.stop()
			h.start()
			h.stop()
			h.start()
			collect()
			h.stop()
		}
		// The rest of the day passes while stopped.
		next := start.AddDate(0, 0, day+1)
		h.clock.Advance(next.Sub(h.clock.Now()))
	}
	for day := 0; day < 60; day++ {
		key := start.AddDate(0, 0, day).Format(time.DateOnly)
		if ran[key] != 1 {
			t.Errorf("slot of %s ran %d times, want once", key, ran[key])
		}
	}
}

func TestQueuedRunDoesNotStartDuringShutdown(t *testing.T) {
	job := shellJob("slow", "sleep 300")
	job.Overlap = config.OverlapQueue
	r, _ := newTestRunner(t, job)
	go r.Run(context.Background(), Request{Job: "slow", Trigger: state.TriggerSchedule, Slot: t0})
	waitRunning(t, r, "slow")
	queued := make(chan error, 1)
	go func() {
		_, err := r.Run(context.Background(), Request{Job: "slow", Trigger: state.TriggerSchedule, Slot: t0.Add(time.Minute)})
		queued <- err
	}()
	waitUntil(t, "the queued run", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.pending["slow"]
		return ok
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	r.Shutdown(ctx)
	if err := <-queued; !errors.Is(err, ErrStopping) {
		t.Errorf("queued run after shutdown = %v, want ErrStopping", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("shutdown took %v; the queued run must not start", elapsed)
	}
}

func TestCatchUpAllKeepsLaterSlots(t *testing.T) {
	job := cronJob("hourly", "0 * * * *")
	job.CatchUp, job.MaxCatchUp = config.CatchUpAll, 3
	job.Overlap = config.OverlapSkip
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	// Each catch-up run waits until released, so the 18:00 slot falls
	// while the first one still runs.
	release := make(chan struct{})
	h.clock.Advance(5*time.Hour + 59*time.Minute)
	h.runner = NewRunner(h.cfg, h.store, sharedReaper(t), testLogger(t), h.clock.Now)
	h.runner.execute = func(_ context.Context, _ *config.Job, run state.Run, _ func(Line)) execOutcome {
		h.runs <- run
		<-release
		return execOutcome{result: state.ResultOK}
	}
	sched, err := NewScheduler(h.cfg, h.runner, h.store, h.clock, testLogger(t))
	if err != nil {
		t.Fatalf("NewScheduler: %v", err)
	}
	h.sched = sched
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	sched.Start(ctx)
	defer h.stop()
	first := h.expectRuns(1)[0]
	h.waitArmed()
	h.advance(time.Minute, time.Minute)
	close(release)
	runs := append([]state.Run{first}, h.expectRuns(3)...)
	for i, run := range runs {
		want := time.Date(2026, 3, 1, 15+i, 0, 0, 0, time.UTC)
		if !run.Slot.Equal(want) {
			t.Errorf("run %d slot = %v, want %v", i, run.Slot, want)
		}
	}
	h.expectNoRun()
	history, _ := h.store.Runs("hourly", 10)
	for _, run := range history {
		if run.Result == state.ResultSkipped {
			t.Errorf("slot %v recorded as skipped: %s", run.Slot, run.Error)
		}
	}
}

func TestCatchUpAllRunsBacklogBeforeLiveSlots(t *testing.T) {
	job := cronJob("often", "*/2 * * * * *")
	job.CatchUp, job.MaxCatchUp = config.CatchUpAll, 10
	job.Overlap = config.OverlapSkip
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	// Down from 12:00:30 to 12:00:43: the six slots 12:00:32 to 12:00:42
	// passed. The live slots 12:00:44 and 12:00:46 fall while the first
	// catch-up run is held.
	h.clock.Advance(13 * time.Second)
	release := make(chan struct{})
	h.startHeld(release)
	defer h.stop()
	first := h.expectRuns(1)[0]
	h.advance(4*time.Second, time.Second)
	// A live slot handed out now would find the job running and be
	// skipped past the backlog's position before the backlog runs.
	time.Sleep(100 * time.Millisecond)
	close(release)

	runs := append([]state.Run{first}, h.expectRuns(6)...)
	for i, run := range runs[:6] {
		want := t0.Add(time.Duration(2+2*i) * time.Second)
		if !run.Slot.Equal(want) {
			t.Errorf("catch-up run %d slot = %v, want %v", i, run.Slot, want)
		}
		if run.Trigger != state.TriggerCatchUp {
			t.Errorf("catch-up run %d trigger = %q, want catch-up", i, run.Trigger)
		}
	}
	live := runs[6]
	if want := t0.Add(16 * time.Second); !live.Slot.Equal(want) {
		t.Errorf("live run slot = %v, want the newest live slot %v", live.Slot, want)
	}
	if live.Trigger != state.TriggerSchedule {
		t.Errorf("live run trigger = %q, want schedule", live.Trigger)
	}
	h.expectNoRun()

	history, err := h.store.Runs("often", 20)
	if err != nil {
		t.Fatalf("Runs: %v", err)
	}
	if len(history) != 7 {
		t.Errorf("history has %d records, want 7", len(history))
	}
	for _, run := range history {
		if run.Result != state.ResultOK {
			t.Errorf("slot %v recorded as %s: %s", run.Slot, run.Result, run.Error)
		}
	}
}

// finishFails is a recorder whose Finish always fails, as on a full disk.
type finishFails struct{ state.Recorder }

func (finishFails) Finish(state.Run) error { return errors.New("no space left on device") }

func TestFailedRecordKeepsRunPolicies(t *testing.T) {
	flaky := shellJob("flaky", "true")
	flaky.Retries = 1
	flaky.OnFailure = []string{"alert"}
	alert := shellJob("alert", "true")
	r, triggers := scriptedRunner(t, []string{state.ResultFailed, state.ResultFailed}, flaky, alert)
	r.store = finishFails{r.store}
	var hooked recorded
	r.SetFinalHook(func(run state.Run) {
		if run.Job == "flaky" {
			hooked.add(run.Trigger + ":" + run.Result)
		}
	})

	run, err := r.RunPolicies(context.Background(), Request{Job: "flaky", Trigger: state.TriggerSchedule, Slot: t0})
	if err == nil {
		t.Error("RunPolicies returned no error, want the failed record's")
	}
	if run.Result != state.ResultFailed || run.Trigger != state.TriggerRetry {
		t.Errorf("final run = %s %s, want failed from the retry", run.Result, run.Trigger)
	}
	if got := fmt.Sprint(hooked.get()); got != "[retry:failed]" {
		t.Errorf("final hook saw %s, want the retry's failure once", got)
	}
	waitUntil(t, "the failure chain", func() bool { return len(triggers.get()) == 3 })
	want := []string{"flaky:schedule", "flaky:retry", "alert:chain"}
	if fmt.Sprint(triggers.get()) != fmt.Sprint(want) {
		t.Errorf("runs = %v, want %v", triggers.get(), want)
	}
}

func TestQueuedRunOfARemovedJobDoesNotStart(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	job := shellJob("long", fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done`, release))
	job.Overlap = config.OverlapQueue
	r, _ := newTestRunner(t, job)
	go r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerManual})
	waitRunning(t, r, "long")

	queued := make(chan error)
	go func() {
		_, err := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: t0})
		queued <- err
	}()
	waitUntil(t, "the queued run", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.pending["long"]
		return ok
	})
	r.SetJobs(&config.Config{Runner: r.currentSettings()})
	os.WriteFile(release, nil, 0o600)
	if err := <-queued; !errors.Is(err, errJobRemoved) {
		t.Errorf("queued run of a removed job = %v, want it dropped", err)
	}
}

// TestScheduledRunOfARemovedJobIsDropped checks that a scheduled request
// whose job a reload removed before a worker took it counts as dropped,
// which the scheduler logs as such, and that a manual run of an unknown
// job still fails as unknown.
func TestScheduledRunOfARemovedJobIsDropped(t *testing.T) {
	r, _ := newTestRunner(t, shellJob("kept", "true"))
	r.SetJobs(&config.Config{Runner: r.currentSettings()})
	for _, trigger := range []string{state.TriggerSchedule, state.TriggerCatchUp, state.TriggerRetry} {
		_, err := r.Run(context.Background(), Request{Job: "kept", Trigger: trigger, Slot: t0})
		if !errors.Is(err, errJobRemoved) {
			t.Errorf("%s run of a removed job = %v, want it dropped", trigger, err)
		}
	}
	if _, err := r.Run(context.Background(), Request{Job: "kept", Trigger: state.TriggerManual}); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("manual run of an unknown job = %v, want ErrUnknownJob", err)
	}
}

func TestCatchUpAllBacklogSurvivesAReload(t *testing.T) {
	job := cronJob("often", "*/2 * * * * *")
	job.CatchUp, job.MaxCatchUp = config.CatchUpAll, 10
	job.Overlap = config.OverlapSkip
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	h.clock.Advance(13 * time.Second)
	release := make(chan struct{})
	h.startHeld(release)
	defer h.stop()
	h.expectRuns(1)
	// The same slots written another way replace the job's entry while
	// its backlog runs.
	changed := *job
	changed.Cron = "0/2 * * * * *"
	if err := h.sched.Apply(&config.Config{Runner: h.cfg.Runner, Jobs: []*config.Job{&changed}}); err != nil {
		t.Fatal(err)
	}
	h.advance(4*time.Second, time.Second)
	time.Sleep(100 * time.Millisecond)
	close(release)
	h.expectRuns(6)
	h.expectNoRun()

	var history []state.Run
	waitUntil(t, "every run to finish", func() bool {
		var err error
		history, err = h.store.Runs("often", 20)
		return err == nil && !slices.ContainsFunc(history, func(r state.Run) bool { return r.Result == state.ResultRunning })
	})
	if len(history) != 7 {
		t.Errorf("history has %d records, want 6 catch-up runs and one live run", len(history))
	}
	for _, run := range history {
		if run.Result != state.ResultOK {
			t.Errorf("slot %v recorded as %s: %s", run.Slot, run.Result, run.Error)
		}
	}
}

func TestDisabledJobStopsItsCatchUpBacklog(t *testing.T) {
	job := cronJob("often", "*/2 * * * * *")
	job.CatchUp, job.MaxCatchUp = config.CatchUpAll, 10
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	h.clock.Advance(13 * time.Second)
	release := make(chan struct{})
	h.startHeld(release)
	defer h.stop()
	h.expectRuns(1)
	disabled := *job
	disabled.Enabled = false
	cfg := &config.Config{Runner: h.cfg.Runner, Jobs: []*config.Job{&disabled}}
	h.runner.SetJobs(cfg)
	if err := h.sched.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	close(release)
	h.expectNoRun()
}

func TestReloadKeepsSpreadCatchUpOnce(t *testing.T) {
	// c's catch-up waits for its place in the spread when a reload
	// changes its schedule. The catch-up of the new schedule takes that
	// place: c runs once, at it, and not at the reload too.
	a, b, c := cronJob("a", "0 * * * *"), cronJob("b", "0 * * * *"), cronJob("c", "0 * * * *")
	h := newSchedHarness(t, t0, a, b, c)
	h.cfg.Runner.CatchUpSpread = 30 * time.Second
	h.start()
	h.restartAfter(2 * time.Hour)
	defer h.stop()
	if run := h.expectRuns(1)[0]; run.Job != "a" {
		t.Fatalf("first catch-up = %s, want a", run.Job)
	}

	h.applyCron(c, "30 * * * *", a, b)
	h.expectNoRun()

	// Planned over 27 s: b at 9 s, c at 18 s.
	h.advance(20*time.Second, time.Second)
	runs := h.expectRuns(2)
	if runs[0].Job != "b" {
		t.Errorf("second catch-up = %s, want b", runs[0].Job)
	}
	if runs[1].Job != "c" {
		t.Fatalf("third catch-up = %s, want c", runs[1].Job)
	}
	if want := time.Date(2026, 3, 1, 13, 30, 0, 0, time.UTC); !runs[1].Slot.Equal(want) {
		t.Errorf("c catch-up slot = %v, want the newest slot of the new schedule %v", runs[1].Slot, want)
	}
	if runs[1].Start.Before(t0.Add(2*time.Hour + 18*time.Second)) {
		t.Errorf("c catch-up started at %v, before its place in the spread", runs[1].Start)
	}
	h.advance(20*time.Second, time.Second)
	h.expectNoRun()
}

func TestReloadReplansSpreadBacklog(t *testing.T) {
	// A catch_up = "all" backlog that waits in the spread when a reload
	// changes its schedule: the new schedule's backlog takes its place,
	// and the job's live slots resume after it.
	a, c := cronJob("a", "0 * * * *"), cronJob("c", "0 * * * *")
	c.CatchUp = config.CatchUpAll
	c.MaxCatchUp = 2
	h := newSchedHarness(t, t0, a, c)
	h.cfg.Runner.CatchUpSpread = 20 * time.Second
	h.start()
	h.restartAfter(3 * time.Hour)
	defer h.stop()
	if run := h.expectRuns(1)[0]; run.Job != "a" {
		t.Fatalf("first catch-up = %s, want a", run.Job)
	}

	h.applyCron(c, "30 * * * *", a)
	h.expectNoRun()

	// Planned over 18 s: c at 9 s.
	h.advance(10*time.Second, time.Second)
	runs := h.expectRuns(2)
	for i, want := range []time.Time{
		time.Date(2026, 3, 1, 13, 30, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 14, 30, 0, 0, time.UTC),
	} {
		if runs[i].Job != "c" || !runs[i].Slot.Equal(want) {
			t.Errorf("backlog run %d = %s at %v, want c at %v", i+1, runs[i].Job, runs[i].Slot, want)
		}
	}
	h.expectNoRun()

	// The backlog has ended, so the next slot of the new schedule runs.
	h.advance(30*time.Minute, time.Minute)
	if run := h.expectRuns(1)[0]; run.Job != "c" || run.Trigger != state.TriggerSchedule {
		t.Errorf("after the backlog: %s run with trigger %q, want c on schedule", run.Job, run.Trigger)
	}
}

// restartAfter stops the scheduler, moves the clock on by outage and
// starts a new scheduler and runner, as a daemon restart after an outage
// does.
func (h *schedHarness) restartAfter(outage time.Duration) {
	h.t.Helper()
	h.stop()
	h.clock.Advance(outage)
	h.start()
}

// applyCron applies a reloaded config of the unchanged jobs and a copy of
// job with its cron schedule set to cron.
func (h *schedHarness) applyCron(job *config.Job, cron string, unchanged ...*config.Job) {
	h.t.Helper()
	changed := *job
	changed.Cron = cron
	cfg := &config.Config{Runner: h.cfg.Runner, Jobs: append(unchanged, &changed)}
	if err := h.sched.Apply(cfg); err != nil {
		h.t.Fatalf("Apply: %v", err)
	}
}
