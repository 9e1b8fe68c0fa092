package cluster

import (
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/state"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// forEachStore runs test against the bbolt store and the etcd store.
func forEachStore(t *testing.T, history int, test func(t *testing.T, s Store)) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) { test(t, open(t, history)) })
	}
}

func scheduled(job string, slot time.Time) state.Run {
	return state.Run{Job: job, Trigger: state.TriggerSchedule, Slot: slot, Start: slot.Add(time.Second)}
}

func mustClaim(t *testing.T, s Store, run state.Run) state.Run {
	t.Helper()
	stored, err := s.Claim(run, run.Slot.Add(time.Minute))
	if err != nil {
		t.Fatalf("claim %s slot %s: %v", run.Job, run.Slot, err)
	}
	return stored
}

func finished(run state.Run, result string) state.Run {
	run.Result = result
	run.Finish = run.Start.Add(2 * time.Second)
	run.Duration = 2 * time.Second
	if result != state.ResultOK {
		run.ExitCode = 1
	}
	return run
}

func TestContractClaimOnce(t *testing.T) {
	forEachStore(t, 50, func(t *testing.T, s Store) {
		first := mustClaim(t, s, scheduled("a", t0))
		if first.Result != state.ResultRunning || first.ID == "" {
			t.Errorf("claim: got result %q and ID %q, want running with an ID", first.Result, first.ID)
		}
		job, ok, err := s.Job("a")
		if err != nil || !ok {
			t.Fatalf("job after claim: ok %v, err %v", ok, err)
		}
		if !job.LastSlot.Equal(t0) || !job.Running || !job.FirstSeen.Equal(t0.Add(time.Second)) {
			t.Errorf("job after claim: got %+v", job)
		}
		for _, slot := range []time.Time{t0, t0.Add(-time.Minute)} {
			if _, err := s.Claim(scheduled("a", slot), t0); !errors.Is(err, state.ErrSlotClaimed) {
				t.Errorf("claim of slot %s again: got %v, want ErrSlotClaimed", slot, err)
			}
		}
		second := mustClaim(t, s, scheduled("a", t0.Add(time.Minute)))
		manual := mustClaim(t, s, state.Run{Job: "a", Trigger: state.TriggerManual, Start: t0})
		if !(state.CompareRunIDs(first.ID, second.ID) < 0 && state.CompareRunIDs(second.ID, manual.ID) < 0) {
			t.Errorf("run IDs %s, %s, %s are not increasing", first.ID, second.ID, manual.ID)
		}
		other := mustClaim(t, s, scheduled("b", t0))
		if state.CompareRunIDs(manual.ID, other.ID) >= 0 {
			t.Errorf("run ID of another job %s is not after %s, so IDs are not store-wide", other.ID, manual.ID)
		}
		if _, err := s.Claim(state.Run{Job: "a"}, t0); err == nil {
			t.Error("claim without a start time: got no error")
		}
	})
}

func TestContractSkip(t *testing.T) {
	forEachStore(t, 50, func(t *testing.T, s Store) {
		if err := s.Skip("a", t0, state.TriggerCatchUp, "missed", t0, t0); !errors.Is(err, state.ErrJobNotFound) {
			t.Errorf("skip of an unknown job: got %v, want ErrJobNotFound", err)
		}
		if _, err := s.EnsureJob("a", t0.Add(-time.Hour)); err != nil {
			t.Fatalf("ensure job: %v", err)
		}
		if err := s.Skip("a", t0, state.TriggerCatchUp, "missed", t0, t0.Add(time.Minute)); err != nil {
			t.Fatalf("skip: %v", err)
		}
		if err := s.Skip("a", t0, state.TriggerCatchUp, "missed", t0, t0); !errors.Is(err, state.ErrSlotClaimed) {
			t.Errorf("skip of the same slot: got %v, want ErrSlotClaimed", err)
		}
		if _, err := s.Claim(scheduled("a", t0), t0); !errors.Is(err, state.ErrSlotClaimed) {
			t.Errorf("claim of a skipped slot: got %v, want ErrSlotClaimed", err)
		}
		runs, err := s.Runs("a", 0)
		if err != nil || len(runs) != 1 {
			t.Fatalf("runs after skip: got %d runs, err %v", len(runs), err)
		}
		if runs[0].Result != state.ResultSkipped || runs[0].Error != "missed" || runs[0].Trigger != state.TriggerCatchUp {
			t.Errorf("skip record: got %+v", runs[0])
		}
		job, _, _ := s.Job("a")
		if !job.LastSlot.Equal(t0) || !job.NextRun.Equal(t0.Add(time.Minute)) || job.Running {
			t.Errorf("job after skip: got %+v", job)
		}
	})
}

func TestContractFinish(t *testing.T) {
	forEachStore(t, 50, func(t *testing.T, s Store) {
		a := mustClaim(t, s, scheduled("a", t0))
		if err := s.Finish(finished(a, state.ResultFailed)); err != nil {
			t.Fatalf("finish: %v", err)
		}
		if err := s.Finish(finished(a, state.ResultOK)); !errors.Is(err, state.ErrRunFinished) {
			t.Errorf("finish twice: got %v, want ErrRunFinished", err)
		}
		missing := finished(a, state.ResultOK)
		missing.ID = "999999"
		if err := s.Finish(missing); !errors.Is(err, state.ErrRunNotFound) {
			t.Errorf("finish of an unknown run: got %v, want ErrRunNotFound", err)
		}
		if err := s.Finish(a); err == nil {
			t.Error("finish with result running: got no error")
		}
		b := mustClaim(t, s, scheduled("a", t0.Add(time.Minute)))
		if err := s.Finish(finished(b, state.ResultTimeout)); err != nil {
			t.Fatalf("finish: %v", err)
		}
		job, _, _ := s.Job("a")
		if job.ConsecutiveFailures != 2 || job.LastResult != state.ResultTimeout || job.Running || job.LastExitCode != 1 {
			t.Errorf("job after two failures: got %+v", job)
		}
		c := mustClaim(t, s, scheduled("a", t0.Add(2*time.Minute)))
		if err := s.Finish(finished(c, state.ResultOK)); err != nil {
			t.Fatalf("finish: %v", err)
		}
		job, _, _ = s.Job("a")
		if job.ConsecutiveFailures != 0 || !job.LastSuccess.Equal(c.Start.Add(2*time.Second)) {
			t.Errorf("job after a success: got %+v", job)
		}
		got, ok, err := s.Run("a", c.ID)
		if err != nil || !ok || got.Result != state.ResultOK || got.Duration != 2*time.Second {
			t.Errorf("run %s: got %+v, ok %v, err %v", c.ID, got, ok, err)
		}
		if _, ok, err := s.Run("a", "424242"); ok || err != nil {
			t.Errorf("unknown run: got ok %v, err %v", ok, err)
		}
		if _, _, err := s.Run("a", "x"); err == nil {
			t.Error("run ID x: got no error")
		}
	})
}

func TestContractRecordSkipped(t *testing.T) {
	forEachStore(t, 50, func(t *testing.T, s Store) {
		run := state.Run{Job: "a", Trigger: state.TriggerSchedule, Slot: t0, Start: t0, Finish: t0, Error: "still running"}
		if _, err := s.RecordSkipped(run); !errors.Is(err, state.ErrJobNotFound) {
			t.Errorf("record for an unknown job: got %v, want ErrJobNotFound", err)
		}
		if _, err := s.EnsureJob("a", t0); err != nil {
			t.Fatalf("ensure job: %v", err)
		}
		stored, err := s.RecordSkipped(run)
		if err != nil || stored.Result != state.ResultSkipped || stored.ID == "" {
			t.Fatalf("record skipped: got %+v, err %v", stored, err)
		}
		job, _, _ := s.Job("a")
		if !job.LastSlot.IsZero() {
			t.Errorf("record skipped moved the last slot to %s", job.LastSlot)
		}
	})
}

func TestContractPruneKeepsRunning(t *testing.T) {
	forEachStore(t, 3, func(t *testing.T, s Store) {
		oldest := mustClaim(t, s, scheduled("a", t0))
		var ids []string
		for i := 1; i <= 5; i++ {
			run := mustClaim(t, s, scheduled("a", t0.Add(time.Duration(i)*time.Minute)))
			if err := s.Finish(finished(run, state.ResultOK)); err != nil {
				t.Fatalf("finish: %v", err)
			}
			ids = append(ids, run.ID)
		}
		runs, err := s.Runs("a", 0)
		if err != nil {
			t.Fatalf("runs: %v", err)
		}
		var got []string
		for _, r := range runs {
			got = append(got, r.ID)
		}
		want := []string{ids[4], ids[3], oldest.ID}
		if !slices.Equal(got, want) {
			t.Errorf("runs kept: got %v, want %v (the running one and the newest)", got, want)
		}
		if limited, _ := s.Runs("a", 1); len(limited) != 1 || limited[0].ID != ids[4] {
			t.Errorf("runs with limit 1: got %+v", limited)
		}
		if err := s.Finish(finished(oldest, state.ResultOK)); err != nil {
			t.Fatalf("finish the oldest: %v", err)
		}
		if runs, _ := s.Runs("a", 0); len(runs) != 3 {
			t.Errorf("runs after the oldest finished: got %d, want 3", len(runs))
		}
	})
}

func TestContractRecoverInterrupted(t *testing.T) {
	forEachStore(t, 50, func(t *testing.T, s Store) {
		a := mustClaim(t, s, scheduled("a", t0))
		b := mustClaim(t, s, scheduled("b", t0))
		c := mustClaim(t, s, scheduled("c", t0))
		if err := s.Finish(finished(c, state.ResultOK)); err != nil {
			t.Fatalf("finish: %v", err)
		}
		running, err := s.RunningRuns()
		if err != nil || len(running) != 2 {
			t.Fatalf("running runs: got %+v, err %v", running, err)
		}
		now := t0.Add(time.Hour)
		recovered, err := s.RecoverInterrupted(now, func(job string) bool { return job == "b" })
		if err != nil {
			t.Fatalf("recover: %v", err)
		}
		if len(recovered) != 1 || recovered[0].ID != a.ID || recovered[0].Result != state.ResultInterrupted {
			t.Fatalf("recovered: got %+v, want run %s interrupted", recovered, a.ID)
		}
		if !recovered[0].Finish.Equal(now) || recovered[0].Error == "" {
			t.Errorf("recovered run: got finish %s and error %q", recovered[0].Finish, recovered[0].Error)
		}
		job, _, _ := s.Job("a")
		if job.Running || job.LastResult != state.ResultInterrupted {
			t.Errorf("job a after recovery: got %+v", job)
		}
		running, _ = s.RunningRuns()
		if len(running) != 1 || running[0].ID != b.ID {
			t.Errorf("running after recovery: got %+v, want only the busy job's run", running)
		}
		if err := s.Finish(finished(a, state.ResultOK)); !errors.Is(err, state.ErrRunFinished) {
			t.Errorf("finish of an interrupted run: got %v, want ErrRunFinished", err)
		}
	})
}

func TestContractJobs(t *testing.T) {
	forEachStore(t, 50, func(t *testing.T, s Store) {
		for _, name := range []string{"b", "a"} {
			if _, err := s.EnsureJob(name, t0); err != nil {
				t.Fatalf("ensure %s: %v", name, err)
			}
		}
		again, err := s.EnsureJob("a", t0.Add(time.Hour))
		if err != nil || !again.FirstSeen.Equal(t0) {
			t.Errorf("ensure again: got first seen %s, err %v, want %s", again.FirstSeen, err, t0)
		}
		if _, err := s.EnsureJob("", t0); err == nil {
			t.Error("ensure a job without a name: got no error")
		}
		mustClaim(t, s, scheduled("a", t0))
		jobs, err := s.Jobs()
		if err != nil || len(jobs) != 2 || jobs[0].Name != "a" || jobs[1].Name != "b" {
			t.Fatalf("jobs: got %+v, err %v", jobs, err)
		}
		if err := s.ForgetJob("a"); err != nil {
			t.Fatalf("forget: %v", err)
		}
		if err := s.ForgetJob("never-seen"); err != nil {
			t.Errorf("forget an unknown job: %v", err)
		}
		if _, ok, _ := s.Job("a"); ok {
			t.Error("job a still exists after forget")
		}
		if runs, _ := s.Runs("a", 0); len(runs) != 0 {
			t.Errorf("runs of a forgotten job: got %d", len(runs))
		}
		if running, _ := s.RunningRuns(); len(running) != 0 {
			t.Errorf("running runs after forget: got %+v", running)
		}
	})
}

func TestContractListenerKV(t *testing.T) {
	forEachStore(t, 50, func(t *testing.T, s Store) {
		kv := s.Listener("sky")
		if _, ok, err := kv.Get("cursor"); ok || err != nil {
			t.Errorf("get before put: ok %v, err %v", ok, err)
		}
		if err := kv.Put("cursor", []byte("42")); err != nil {
			t.Fatalf("put: %v", err)
		}
		value, ok, err := kv.Get("cursor")
		if err != nil || !ok || string(value) != "42" {
			t.Errorf("get: got %q, ok %v, err %v", value, ok, err)
		}
		if _, ok, _ := s.Listener("other").Get("cursor"); ok {
			t.Error("another listener sees the key")
		}
	})
}

func TestContractManyClaimsUniqueIDs(t *testing.T) {
	forEachStore(t, 100, func(t *testing.T, s Store) {
		const workers, each = 4, 10
		ids := make(chan string, workers*each)
		errs := make(chan error, workers*each)
		done := make(chan struct{})
		for w := range workers {
			go func() {
				defer func() { done <- struct{}{} }()
				for i := range each {
					run := state.Run{Job: "job" + strconv.Itoa(w), Trigger: state.TriggerManual, Start: t0.Add(time.Duration(i))}
					stored, err := s.Claim(run, t0)
					if err != nil {
						errs <- err
						continue
					}
					ids <- stored.ID
				}
			}()
		}
		for range workers {
			<-done
		}
		close(ids)
		close(errs)
		for err := range errs {
			t.Errorf("concurrent claim: %v", err)
		}
		seen := map[string]bool{}
		for id := range ids {
			if seen[id] {
				t.Errorf("run ID %s given twice", id)
			}
			seen[id] = true
		}
	})
}

// BenchmarkClaimFinish measures one scheduled run's two store writes.
func BenchmarkClaimFinish(b *testing.B) {
	for name, open := range stores() {
		b.Run(name, func(b *testing.B) {
			s := open(b, 50)
			slot := t0
			for b.Loop() {
				slot = slot.Add(time.Second)
				run, err := s.Claim(scheduled("a", slot), slot.Add(time.Second))
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Finish(finished(run, state.ResultOK)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
