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
// it waits for a max_concurrent place: the record says so, and the
// waiting run still runs.
func TestSkipWhileHolderWaitsForAPlace(t *testing.T) {
	long, job := shellJob("long", "true"), shellJob("job", "true")
	r, store := newTestRunner(t, long, job)
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
	waiting := make(chan struct{})
	manual := make(chan state.Run, 1)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "job", Trigger: state.TriggerManual,
			Waiting: func() { close(waiting) }})
		manual <- run
	}()
	<-waiting

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
