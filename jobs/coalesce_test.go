package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// TestSlotsWaitingForAPlaceCoalesce holds every max_concurrent place
// with long runs while a minutely job's slots fall, one of its requests
// waiting at the gate with its job lock. Under max_concurrent = 1 no
// worker is spare, so the later slots queue in the pool. Under 2 a worker
// is spare, so they reach the runner and find the job's lock held. Both
// times the job runs once, for its newest slot, when a place frees, and
// each older slot is recorded as skipped with the reason that it waited.
func TestSlotsWaitingForAPlaceCoalesce(t *testing.T) {
	for _, limit := range []int{1, 2} {
		t.Run(fmt.Sprintf("max_concurrent=%d", limit), func(t *testing.T) {
			jobs := []*config.Job{cronJob("minutely", "* * * * *")}
			for i := range limit {
				jobs = append(jobs, cronJob(fmt.Sprintf("a-long-%d", i), "1 12 * * *"))
			}
			h := newSchedHarness(t, t0, jobs...)
			h.cfg.Runner.MaxConcurrent = limit
			release := make(chan struct{})
			h.startWith(func(run state.Run) {
				if strings.HasPrefix(run.Job, "a-long") {
					<-release
				}
			})
			defer h.stop()

			h.advance(30*time.Second, 30*time.Second)
			h.expectRuns(limit)
			// The long runs let go of their worker places after
			// detachAfter, and the minutely slot then waits at the gate.
			waitUntil(t, "the minutely run to wait for a place", func() bool {
				h.runner.gate.mu.Lock()
				defer h.runner.gate.mu.Unlock()
				return len(h.runner.gate.waiting) == 1
			})
			h.advance(3*time.Minute, time.Minute)
			h.expectNoRun()
			close(release)

			run := h.expectRuns(1)[0]
			if want := time.Date(2026, 3, 1, 12, 4, 0, 0, time.UTC); run.Job != "minutely" || !run.Slot.Equal(want) {
				t.Errorf("run = %s at %v, want minutely at its newest slot %v", run.Job, run.Slot, want)
			}
			h.expectNoRun()

			var history []state.Run
			waitUntil(t, "every record", func() bool {
				history, _ = h.store.Runs("minutely", 10)
				return len(history) == 4 && history[0].Result == state.ResultOK
			})
			for _, rec := range history[1:] {
				if rec.Result != state.ResultSkipped || !strings.Contains(rec.Error, "max_concurrent") {
					t.Errorf("slot %v: %s %q, want skipped for the wait for a place", rec.Slot, rec.Result, rec.Error)
				}
			}
		})
	}
}

// TestSkipWhileHolderWaitsForAPlace checks the record of a scheduled run
// that finds its job's lock held by a run that has not started, because
// it waits for a max_concurrent place: the record names that wait, and
// the waiting run still runs.
func TestSkipWhileHolderWaitsForAPlace(t *testing.T) {
	r, store, release := placeHeldByLongRun(t)
	manual := runWaitingForPlace(r, Request{Job: "job", Trigger: state.TriggerManual})

	skipped, err := r.Run(context.Background(), Request{Job: "job", Trigger: state.TriggerCatchUp, Slot: t0})
	if err != nil || skipped.Result != state.ResultSkipped {
		t.Fatalf("catch-up run = %s %v, want skipped", skipped.Result, err)
	}
	if !strings.Contains(skipped.Error, "waiting for a free place under max_concurrent") {
		t.Errorf("skip reason %q, want the wait for a place", skipped.Error)
	}
	close(release)
	if run := <-manual; run.Result != state.ResultOK {
		t.Errorf("waiting run = %s, want ok", run.Result)
	}
	history, _ := store.Runs("job", 5)
	for _, rec := range history {
		if strings.Contains(rec.Error, "still running") {
			t.Errorf("record %s says %q", rec.ID, rec.Error)
		}
	}
}

// TestOverlapQueueKeepsNewestSlot checks that a request of an older slot,
// as a reload can queue again, does not replace the newer slot a queued
// run waits to serve.
func TestOverlapQueueKeepsNewestSlot(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	job := shellJob("long", fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done`, release))
	job.Overlap = config.OverlapQueue
	r, _ := newTestRunner(t, job)
	go r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerManual})
	waitRunning(t, r, "long")

	queued := make(chan state.Run)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: t0.Add(2 * time.Minute)})
		queued <- run
	}()
	waitUntil(t, "the queued run", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.pending["long"]
		return ok
	})
	_, err := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: t0.Add(time.Minute)})
	if !errors.Is(err, state.ErrSlotClaimed) {
		t.Errorf("request of an older slot = %v, want ErrSlotClaimed", err)
	}
	os.WriteFile(release, nil, 0o600)
	if run := <-queued; run.Result != state.ResultOK || !run.Slot.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("queued run = %s %v, want ok for the newest slot %v", run.Result, run.Slot, t0.Add(2*time.Minute))
	}
}

// TestStatusNextRunDuringBacklog checks that status never shows a next
// run in the past while a catch_up = "all" backlog drains past the job's
// next slot, and shows the backlog's next run as due now.
func TestStatusNextRunDuringBacklog(t *testing.T) {
	job := cronJob("hourly", "0 * * * *")
	job.CatchUp, job.MaxCatchUp = config.CatchUpAll, 3
	h := newSchedHarness(t, t0, job)
	h.start()
	h.stop()

	// Down until 17:00:30: the backlog is 15:00, 16:00 and 17:00, and the
	// next slot 18:00 passes while the first catch-up run is held.
	h.clock.Advance(5 * time.Hour)
	release := make(chan struct{})
	h.startHeld(release)
	defer h.stop()
	h.expectRuns(1)
	h.clock.Advance(90 * time.Minute)
	statuses, err := h.sched.Status(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if next := statuses[0].NextRun; !next.Equal(h.clock.Now()) {
		t.Errorf("next run %v at %v, want now: two catch-up runs wait", next, h.clock.Now())
	}
	close(release)
	h.expectRuns(3)
	waitUntil(t, "the backlog to end", func() bool {
		h.sched.mu.Lock()
		defer h.sched.mu.Unlock()
		return !h.sched.backlogs["hourly"]
	})
	statuses, _ = h.sched.Status(h.cfg)
	if want := time.Date(2026, 3, 1, 19, 0, 0, 0, time.UTC); !statuses[0].NextRun.Equal(want) {
		t.Errorf("next run after the backlog = %v, want %v", statuses[0].NextRun, want)
	}
}

// TestOfflineStatusShowsCatchUp checks the next run that list shows
// without a daemon: now for a job whose missed slots a start would run,
// under "all" as under "once", and the next slot when the policy or the
// deadline skips them.
func TestOfflineStatusShowsCatchUp(t *testing.T) {
	dir := t.TempDir()
	store := openStore(t, dir)
	now := t0.Add(5 * time.Hour)
	cases := []struct {
		policy   string
		deadline time.Duration
		want     time.Time
	}{
		{config.CatchUpOnce, 0, now},
		{config.CatchUpAll, 0, now},
		{config.CatchUpSkip, 0, time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC)},
		{config.CatchUpOnce, 10 * time.Second, time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC)},
	}
	var jobs []*config.Job
	for i, c := range cases {
		job := cronJob(fmt.Sprintf("job-%d", i), "0 * * * *")
		job.CatchUp, job.MaxCatchUp, job.CatchUpDeadline = c.policy, 3, c.deadline
		jobs = append(jobs, job)
		if _, err := store.EnsureJob(job.Name, t0); err != nil {
			t.Fatal(err)
		}
	}
	statuses, err := OfflineStatus(&config.Config{Runner: testSettings(dir), Jobs: jobs}, store, now)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		if got := statuses[i].NextRun; !got.Equal(c.want) {
			t.Errorf("catch_up %q, deadline %v: next run %v, want %v", c.policy, c.deadline, got, c.want)
		}
	}
}

// longOutage returns 1,000 secondly jobs, a third of them under
// catch_up = "all" and a third with a catch_up_deadline, a store that
// first saw them at t0, and an instant a month later: each job missed
// more than a hundred thousand slots.
func longOutage(tb testing.TB) (*config.Config, *state.Store, time.Time) {
	dir := tb.TempDir()
	store := openStore(tb, dir)
	var jobs []*config.Job
	for i := range 1000 {
		job := cronJob(fmt.Sprintf("job-%d", i), "* * * * * *")
		if i%3 == 1 {
			job.CatchUp, job.MaxCatchUp = config.CatchUpAll, 3
		}
		if i%3 == 2 {
			job.CatchUpDeadline = time.Hour
		}
		jobs = append(jobs, job)
		if _, err := store.EnsureJob(job.Name, t0); err != nil {
			tb.Fatal(err)
		}
	}
	return &config.Config{Runner: testSettings(dir), Jobs: jobs}, store, t0.Add(30 * 24 * time.Hour)
}

// TestOfflineStatusAfterLongOutage checks that list without a daemon
// shows now for jobs that a start would catch up after a month down.
func TestOfflineStatusAfterLongOutage(t *testing.T) {
	cfg, store, now := longOutage(t)
	statuses, err := OfflineStatus(cfg, store, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range statuses {
		if !st.NextRun.Equal(now) {
			t.Errorf("%s: next run %v, want now for its catch-up", st.Name, st.NextRun)
		}
	}
}

// BenchmarkOfflineStatusLongOutage measures list without a daemon after
// a month down. Walking every missed slot to tell whether a start would
// catch a job up took about 16 ms per job.
func BenchmarkOfflineStatusLongOutage(b *testing.B) {
	cfg, store, now := longOutage(b)
	for b.Loop() {
		if _, err := OfflineStatus(cfg, store, now); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCatchesUpAgreesWithPlan checks the shortcut of list without a
// daemon against the catch-up plan a start makes.
func TestCatchesUpAgreesWithPlan(t *testing.T) {
	exprs := []string{"* * * * * *", "*/7 * * * *", "0 8 * * 1-5", "0 0 1 1 *"}
	outages := []time.Duration{0, time.Second, 59 * time.Second, time.Hour, 26 * time.Hour, 400 * 24 * time.Hour}
	deadlines := []time.Duration{0, time.Second, 10 * time.Minute, 48 * time.Hour}
	for _, expr := range exprs {
		for _, policy := range []string{config.CatchUpOnce, config.CatchUpAll, config.CatchUpSkip} {
			for _, deadline := range deadlines {
				job := cronJob("job", expr)
				job.CatchUp, job.MaxCatchUp, job.CatchUpDeadline = policy, 3, deadline
				sched, err := Schedule(job, state.JobState{FirstSeen: t0})
				if err != nil {
					t.Fatal(err)
				}
				for _, outage := range outages {
					now := t0.Add(outage)
					want := len(PlanCatchUp(job, sched, t0, now).Runs) > 0
					if got := catchesUp(job, sched, t0, now); got != want {
						t.Errorf("%q %s deadline %v after %v: catchesUp = %v, want %v",
							expr, policy, deadline, outage, got, want)
					}
				}
			}
		}
	}
}

// TestReplaceWeighsTheNewestWaitingSlot checks a request under overlap =
// "replace" that a newer slot took over while it waited for a worker, and
// whose own slot the running run already serves, as a catch-up run that
// waited for its place in catch_up_spread has. The newer slot must run
// and stop the older run, since the older slot is recorded as replaced
// by it.
func TestReplaceWeighsTheNewestWaitingSlot(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	job := shellJob("rep", fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done`, release))
	job.Overlap = config.OverlapReplace
	r, store := newTestRunner(t, job)
	if _, err := store.EnsureJob("rep", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	running := make(chan state.Run, 1)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "rep", Trigger: state.TriggerSchedule, Slot: t0.Add(2 * time.Minute)})
		running <- run
	}()
	waitRunning(t, r, "rep")

	waiting := Request{Job: "rep", Trigger: state.TriggerCatchUp, Slot: t0.Add(time.Minute)}
	if !r.offer(&waiting) {
		t.Fatal("the first request was not queued")
	}
	newer := Request{Job: "rep", Trigger: state.TriggerSchedule, Slot: t0.Add(3 * time.Minute)}
	if r.offer(&newer) {
		t.Fatal("the newer slot was queued instead of taking over the waiting request")
	}
	replacing := make(chan state.Run, 1)
	go func() {
		run, err := r.Run(context.Background(), waiting)
		if err != nil {
			t.Errorf("waiting request: %v", err)
		}
		replacing <- run
	}()
	select {
	case old := <-running:
		if old.Result != state.ResultInterrupted {
			t.Errorf("the running run = %s, want interrupted by the newer slot", old.Result)
		}
	case <-time.After(5 * time.Second):
		t.Error("the running run was not replaced")
	}
	os.WriteFile(release, nil, 0o600)
	if run := <-replacing; run.Result != state.ResultOK || !run.Slot.Equal(newer.Slot) {
		t.Errorf("waiting request = %s for %v, want ok for the newer slot %v", run.Result, run.Slot, newer.Slot)
	}
}

// TestShutdownStartsNoRunWaitingForAPlace stops the runner while a
// scheduled run waits at the gate for the place of a long run. The
// shutdown frees the place, and the waiting run must not start then:
// it was not running when the shutdown stopped the runs, so nothing
// would stop it, and the shutdown would wait for all of it.
func TestShutdownStartsNoRunWaitingForAPlace(t *testing.T) {
	long, waiter := shellJob("long", "true"), shellJob("waiter", "true")
	r, store := newTestRunner(t, long, waiter)
	if _, err := store.EnsureJob("waiter", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.gate.setLimit(1)
	started := make(chan string, 2)
	r.execute = func(ctx context.Context, job *config.Job, _ state.Run, _ func(Line)) execOutcome {
		started <- job.Name
		select {
		case <-ctx.Done():
			return execOutcome{result: state.ResultInterrupted}
		case <-time.After(5 * time.Second):
			return execOutcome{result: state.ResultOK}
		}
	}
	go r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: t0})
	<-started
	waiting := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		_, err := r.Run(context.Background(), Request{Job: "waiter", Trigger: state.TriggerSchedule, Slot: t0,
			Waiting: func() { close(waiting) }})
		ended <- err
	}()
	<-waiting

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r.Shutdown(ctx)
	select {
	case name := <-started:
		t.Errorf("%s started during the shutdown", name)
	default:
	}
	if err := <-ended; !errors.Is(err, ErrStopping) {
		t.Errorf("waiting run = %v, want ErrStopping", err)
	}
}

// A manual run of a job whose lock a run waiting for a place holds fails
// as busy, with the wait as the reason rather than a run going on.
func TestManualRunWhileHolderWaitsForAPlace(t *testing.T) {
	r, _, release := placeHeldByLongRun(t)
	scheduled := runWaitingForPlace(r, Request{Job: "job", Trigger: state.TriggerSchedule, Slot: t0})

	_, err := r.Run(context.Background(), Request{Job: "job", Trigger: state.TriggerManual})
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "waits for a free place under max_concurrent") {
		t.Errorf("manual run while the lock's holder waits for a place = %v, want busy with the wait as reason", err)
	}
	if strings.Contains(fmt.Sprint(err), "already running") {
		t.Errorf("manual run error %q says the job is running", err)
	}
	close(release)
	if run := <-scheduled; run.Result != state.ResultOK {
		t.Errorf("waiting run = %s, want ok", run.Result)
	}
}

// placeHeldByLongRun returns a runner of the jobs "long" and "job" with
// one max_concurrent place, which a run of "long" holds until release is
// closed. The store knows "job" from an hour before t0.
func placeHeldByLongRun(t *testing.T) (*Runner, *state.Store, chan struct{}) {
	t.Helper()
	r, store := newTestRunner(t, shellJob("long", "true"), shellJob("job", "true"))
	if _, err := store.EnsureJob("job", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.gate.setLimit(1)
	release := make(chan struct{})
	r.execute = func(_ context.Context, job *config.Job, _ state.Run, _ func(Line)) execOutcome {
		if job.Name == "long" {
			<-release
		}
		return execOutcome{result: state.ResultOK}
	}
	go r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: t0})
	waitRunning(t, r, "long")
	return r, store, release
}

// runWaitingForPlace starts req and returns once it holds its job's lock
// and waits for a place. The channel receives its run when it ends.
func runWaitingForPlace(r *Runner, req Request) <-chan state.Run {
	waiting := make(chan struct{})
	req.Waiting = func() { close(waiting) }
	ended := make(chan state.Run, 1)
	go func() {
		run, _ := r.Run(context.Background(), req)
		ended <- run
	}()
	<-waiting
	return ended
}
