package state

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var testStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// claimFinished creates the job if needed, claims slot (zero for a manual
// run) and finishes the run with result.
func claimFinished(t *testing.T, store *Store, job string, slot time.Time, result string) Run {
	t.Helper()
	run := claim(t, store, job, slot)
	run.Result = result
	run.Finish = run.Start.Add(2 * time.Second)
	run.Duration = 2 * time.Second
	run.ExitCode = 0
	if result != ResultOK {
		run.ExitCode = 1
		run.Error = "exit status 1"
	}
	if err := store.Finish(run); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return run
}

// claim creates the job if needed and claims slot.
func claim(t *testing.T, store *Store, job string, slot time.Time) Run {
	t.Helper()
	if _, err := store.EnsureJob(job, testStart); err != nil {
		t.Fatalf("EnsureJob: %v", err)
	}
	trigger := TriggerSchedule
	if slot.IsZero() {
		trigger = TriggerManual
	}
	run, err := store.Claim(Run{Job: job, Trigger: trigger, Slot: slot, Start: testStart.Add(time.Hour)}, slot.Add(time.Minute))
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return run
}

func mustJob(t *testing.T, store *Store, name string) JobState {
	t.Helper()
	job, ok, err := store.Job(name)
	if err != nil || !ok {
		t.Fatalf("Job(%s) = %v, %v, want the job", name, ok, err)
	}
	return job
}

func TestClaimRecordsRunAndHealth(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("backup", testStart); err != nil {
		t.Fatal(err)
	}
	start := testStart.Add(time.Hour)
	next := slotAt(2)
	run, err := store.Claim(Run{Job: "backup", Trigger: TriggerSchedule, Slot: slotAt(1), Start: start}, next)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}

	if run.ID != "1" {
		t.Errorf("ID %q, want 1", run.ID)
	}
	if run.Result != ResultRunning {
		t.Errorf("Result %q, want %q", run.Result, ResultRunning)
	}
	stored, ok, err := store.Run("backup", run.ID)
	if err != nil || !ok {
		t.Fatalf("Run = %v, %v, want the run", ok, err)
	}
	if stored.Result != ResultRunning {
		t.Errorf("stored Result %q, want %q", stored.Result, ResultRunning)
	}
	if !stored.Slot.Equal(slotAt(1)) {
		t.Errorf("stored Slot %v, want %v", stored.Slot, slotAt(1))
	}
	if !stored.Start.Equal(start) {
		t.Errorf("stored Start %v, want %v", stored.Start, start)
	}

	job := mustJob(t, store, "backup")
	if !job.Running {
		t.Error("Running is false after Claim")
	}
	if !job.LastSlot.Equal(slotAt(1)) {
		t.Errorf("LastSlot %v, want %v", job.LastSlot, slotAt(1))
	}
	if !job.LastStart.Equal(start) {
		t.Errorf("LastStart %v, want %v", job.LastStart, start)
	}
	if !job.NextRun.Equal(next) {
		t.Errorf("NextRun %v, want %v", job.NextRun, next)
	}
}

func TestClaimIDsIncreaseAcrossJobs(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	var ids []string
	for i := range 12 {
		job := fmt.Sprintf("job-%d", i%3)
		ids = append(ids, claimFinished(t, store, job, slotAt(i+1), ResultOK).ID)
	}
	for i, id := range ids {
		if want := fmt.Sprint(i + 1); id != want {
			t.Errorf("run %d has ID %s, want %s", i, id, want)
		}
	}
}

func TestClaimRejectsClaimedSlot(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	claimFinished(t, store, "backup", slotAt(5), ResultOK)
	before := mustJob(t, store, "backup")

	for _, slot := range []time.Time{slotAt(5), slotAt(4)} {
		_, err := store.Claim(Run{Job: "backup", Trigger: TriggerCatchUp, Slot: slot, Start: testStart}, slotAt(9))
		if !errors.Is(err, ErrSlotClaimed) {
			t.Errorf("Claim(%v): got %v, want ErrSlotClaimed", slot, err)
		}
	}

	after := mustJob(t, store, "backup")
	if after != before {
		t.Errorf("job changed by rejected claims: got %+v, want %+v", after, before)
	}
	runs, err := store.Runs("backup", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 {
		t.Errorf("got %d runs, want 1", len(runs))
	}
}

func TestClaimManualKeepsLastSlot(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	claimFinished(t, store, "backup", slotAt(5), ResultOK)
	claimFinished(t, store, "backup", time.Time{}, ResultOK)
	claimFinished(t, store, "backup", time.Time{}, ResultOK)

	job := mustJob(t, store, "backup")
	if !job.LastSlot.Equal(slotAt(5)) {
		t.Errorf("LastSlot %v, want %v", job.LastSlot, slotAt(5))
	}
	run := claimFinished(t, store, "backup", slotAt(6), ResultOK)
	if !run.Slot.Equal(slotAt(6)) {
		t.Errorf("Slot %v, want %v", run.Slot, slotAt(6))
	}
}

func TestClaimCreatesUnseenJob(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	if _, err := store.Claim(Run{Job: "fresh", Start: testStart}, time.Time{}); err != nil {
		t.Fatalf("Claim of an unseen job: %v", err)
	}
	job := mustJob(t, store, "fresh")
	if !job.FirstSeen.Equal(testStart) {
		t.Errorf("FirstSeen %v, want the run's start %v", job.FirstSeen, testStart)
	}
	if !job.Running {
		t.Errorf("Running false after Claim")
	}
}

func TestClaimRejectsInvalidRun(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("backup", testStart); err != nil {
		t.Fatal(err)
	}
	for _, run := range []Run{{Start: testStart}, {Job: "backup"}} {
		if _, err := store.Claim(run, time.Time{}); err == nil {
			t.Errorf("Claim(%+v) succeeded", run)
		}
	}
}

func TestClaimConcurrentSameSlot(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("backup", testStart); err != nil {
		t.Fatal(err)
	}

	const workers = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		won     int
		claimed int
	)
	for range workers {
		wg.Go(func() {
			_, err := store.Claim(Run{Job: "backup", Slot: slotAt(1), Start: testStart}, time.Time{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrSlotClaimed):
				claimed++
			default:
				t.Errorf("Claim: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d claims succeeded, want 1", won)
	}
	if claimed != workers-1 {
		t.Errorf("%d claims got ErrSlotClaimed, want %d", claimed, workers-1)
	}
}

func TestSkipAdvancesLastSlot(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	claimFinished(t, store, "backup", slotAt(1), ResultFailed)
	before := mustJob(t, store, "backup")

	now := testStart.Add(48 * time.Hour)
	err := store.Skip("backup", slotAt(3), TriggerCatchUp, "missed while stopped", now, slotAt(4))
	if err != nil {
		t.Fatalf("Skip: %v", err)
	}

	after := mustJob(t, store, "backup")
	if !after.LastSlot.Equal(slotAt(3)) {
		t.Errorf("LastSlot %v, want %v", after.LastSlot, slotAt(3))
	}
	if !after.NextRun.Equal(slotAt(4)) {
		t.Errorf("NextRun %v, want %v", after.NextRun, slotAt(4))
	}
	after.LastSlot, after.NextRun = before.LastSlot, before.NextRun
	if after != before {
		t.Errorf("Skip changed health: got %+v, want %+v", after, before)
	}

	runs, err := store.Runs("backup", 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("Runs = %d runs, %v, want 1", len(runs), err)
	}
	got := runs[0]
	want := Run{ID: "2", Job: "backup", Trigger: TriggerCatchUp, Slot: slotAt(3), Start: now, Finish: now,
		Result: ResultSkipped, Error: "missed while stopped"}
	if got != want {
		t.Errorf("skipped run %+v, want %+v", got, want)
	}
}

func TestSkipRejectsClaimedSlot(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	claimFinished(t, store, "backup", slotAt(3), ResultOK)

	for _, slot := range []time.Time{slotAt(3), slotAt(2)} {
		err := store.Skip("backup", slot, TriggerCatchUp, "missed", testStart, slotAt(9))
		if !errors.Is(err, ErrSlotClaimed) {
			t.Errorf("Skip(%v): got %v, want ErrSlotClaimed", slot, err)
		}
	}
	if err := store.Skip("backup", time.Time{}, TriggerCatchUp, "missed", testStart, slotAt(9)); err == nil {
		t.Error("Skip of a zero slot succeeded")
	}
	if got := mustJob(t, store, "backup").NextRun; !got.Equal(slotAt(4)) {
		t.Errorf("NextRun %v after rejected skips, want %v", got, slotAt(4))
	}
}

func TestFinishUpdatesHealth(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	steps := []struct {
		result   string
		failures int
	}{
		{ResultFailed, 1},
		{ResultTimeout, 2},
		{ResultPanic, 3},
		{ResultSkipped, 3},
		{ResultInterrupted, 3},
		{ResultOK, 0},
		{ResultFailed, 1},
	}
	var lastSuccess time.Time
	for i, step := range steps {
		run := claim(t, store, "backup", slotAt(i+1))
		run.Result = step.result
		run.Finish = run.Start.Add(time.Duration(i+1) * time.Second)
		run.Duration = time.Duration(i+1) * time.Second
		run.ExitCode = i
		run.Error = "error " + step.result
		if err := store.Finish(run); err != nil {
			t.Fatalf("step %d: Finish: %v", i, err)
		}
		if step.result == ResultOK {
			lastSuccess = run.Finish
		}

		job := mustJob(t, store, "backup")
		if job.Running {
			t.Errorf("step %d: Running is true after Finish", i)
		}
		if job.ConsecutiveFailures != step.failures {
			t.Errorf("step %d (%s): ConsecutiveFailures %d, want %d", i, step.result, job.ConsecutiveFailures, step.failures)
		}
		if job.LastResult != step.result {
			t.Errorf("step %d: LastResult %q, want %q", i, job.LastResult, step.result)
		}
		if !job.LastFinish.Equal(run.Finish) {
			t.Errorf("step %d: LastFinish %v, want %v", i, job.LastFinish, run.Finish)
		}
		if job.LastExitCode != i {
			t.Errorf("step %d: LastExitCode %d, want %d", i, job.LastExitCode, i)
		}
		if job.LastDuration != run.Duration {
			t.Errorf("step %d: LastDuration %v, want %v", i, job.LastDuration, run.Duration)
		}
		if job.LastError != run.Error {
			t.Errorf("step %d: LastError %q, want %q", i, job.LastError, run.Error)
		}
		if !job.LastSuccess.Equal(lastSuccess) {
			t.Errorf("step %d: LastSuccess %v, want %v", i, job.LastSuccess, lastSuccess)
		}
	}
}

func TestFinishStoresFinalRecord(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	run := claim(t, store, "backup", slotAt(1))
	run.Result = ResultOK
	run.Finish = run.Start.Add(time.Minute)
	run.Duration = time.Minute
	run.Output = strings.Repeat("output line\n", 20000)
	if err := store.Finish(run); err != nil {
		t.Fatalf("Finish: %v", err)
	}

	got, ok, err := store.Run("backup", run.ID)
	if err != nil || !ok {
		t.Fatalf("Run = %v, %v, want the run", ok, err)
	}
	if got != run {
		t.Errorf("stored run differs: got result %q output %d bytes, want %q and %d bytes",
			got.Result, len(got.Output), run.Result, len(run.Output))
	}
}

func TestFinishRejectsInvalidRun(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	done := claimFinished(t, store, "backup", slotAt(1), ResultOK)
	running := claim(t, store, "backup", slotAt(2))
	finished := func(run Run) Run {
		run.Result = ResultOK
		run.Finish = run.Start.Add(time.Second)
		return run
	}

	tests := []struct {
		name string
		run  Run
		want error
	}{
		{"finished twice", done, ErrRunFinished},
		{"unknown ID", func() Run { r := finished(running); r.ID = "99"; return r }(), ErrRunNotFound},
		{"unknown job", func() Run { r := finished(running); r.Job = "absent"; return r }(), ErrJobNotFound},
		{"result running", running, nil},
		{"zero finish", func() Run { r := finished(running); r.Finish = time.Time{}; return r }(), nil},
		{"invalid ID", func() Run { r := finished(running); r.ID = "abc"; return r }(), nil},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			err := store.Finish(test.run)
			if err == nil {
				t.Fatal("Finish succeeded")
			}
			if test.want != nil && !errors.Is(err, test.want) {
				t.Errorf("got %v, want an error wrapping %v", err, test.want)
			}
		})
	}
	if !mustJob(t, store, "backup").Running {
		t.Error("rejected Finish calls cleared Running")
	}
}

func TestRecordSkippedKeepsHealth(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	claim(t, store, "backup", slotAt(1))
	before := mustJob(t, store, "backup")

	skipped, err := store.RecordSkipped(Run{Job: "backup", Trigger: TriggerSchedule, Slot: slotAt(2),
		Start: testStart, Finish: testStart, Error: "previous run was still running"})
	if err != nil {
		t.Fatalf("RecordSkipped: %v", err)
	}
	if skipped.ID != "2" {
		t.Errorf("ID %q, want 2", skipped.ID)
	}
	if skipped.Result != ResultSkipped {
		t.Errorf("Result %q, want %q", skipped.Result, ResultSkipped)
	}
	if after := mustJob(t, store, "backup"); after != before {
		t.Errorf("RecordSkipped changed the job: got %+v, want %+v", after, before)
	}
	stored, ok, err := store.Run("backup", skipped.ID)
	if err != nil || !ok {
		t.Fatalf("Run = %v, %v, want the run", ok, err)
	}
	if stored != skipped {
		t.Errorf("stored %+v, want %+v", stored, skipped)
	}
	if _, err := store.RecordSkipped(Run{Job: "absent", Start: testStart}); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("RecordSkipped for an unknown job: got %v, want ErrJobNotFound", err)
	}
}

func TestRunsNewestFirst(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	for i := range 5 {
		claimFinished(t, store, "backup", slotAt(i+1), ResultOK)
	}
	claimFinished(t, store, "other", slotAt(1), ResultOK)

	tests := []struct {
		limit int
		want  []string
	}{
		{0, []string{"5", "4", "3", "2", "1"}},
		{-1, []string{"5", "4", "3", "2", "1"}},
		{2, []string{"5", "4"}},
		{10, []string{"5", "4", "3", "2", "1"}},
	}
	for _, test := range tests {
		runs, err := store.Runs("backup", test.limit)
		if err != nil {
			t.Fatalf("Runs: %v", err)
		}
		var ids []string
		for _, run := range runs {
			ids = append(ids, run.ID)
		}
		if strings.Join(ids, ",") != strings.Join(test.want, ",") {
			t.Errorf("Runs(limit %d) IDs %v, want %v", test.limit, ids, test.want)
		}
	}
	if runs, err := store.Runs("absent", 0); err != nil || len(runs) != 0 {
		t.Errorf("Runs(absent) = %v, %v, want none", runs, err)
	}
}

func TestRunLookup(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	run := claimFinished(t, store, "backup", slotAt(1), ResultOK)

	if _, ok, err := store.Run("backup", run.ID); err != nil || !ok {
		t.Errorf("Run(%s) = %v, %v, want the run", run.ID, ok, err)
	}
	if _, ok, err := store.Run("other", run.ID); err != nil || ok {
		t.Errorf("Run of another job = %v, %v, want false", ok, err)
	}
	if _, ok, err := store.Run("backup", "42"); err != nil || ok {
		t.Errorf("Run(42) = %v, %v, want false", ok, err)
	}
	for _, id := range []string{"", "abc", "0", "-1"} {
		if _, _, err := store.Run("backup", id); err == nil {
			t.Errorf("Run(%q) returned no error", id)
		}
	}
}

func TestHistoryPrunedOldestFirst(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{HistoryLimit: 3})
	for i := range 6 {
		claimFinished(t, store, "backup", slotAt(i+1), ResultOK)
	}
	if err := store.Skip("backup", slotAt(7), TriggerCatchUp, "missed", testStart, slotAt(8)); err != nil {
		t.Fatal(err)
	}

	runs, err := store.Runs("backup", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, run := range runs {
		ids = append(ids, run.ID)
	}
	if want := "7,6,5"; strings.Join(ids, ",") != want {
		t.Errorf("kept IDs %v, want %s", ids, want)
	}
}

func TestHistoryKeepsRunningRecord(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{HistoryLimit: 2})
	running := claim(t, store, "backup", slotAt(1))
	for range 4 {
		_, err := store.RecordSkipped(Run{Job: "backup", Trigger: TriggerManual, Start: testStart, Finish: testStart})
		if err != nil {
			t.Fatal(err)
		}
	}

	if _, ok, err := store.Run("backup", running.ID); err != nil || !ok {
		t.Fatalf("running record pruned: Run = %v, %v", ok, err)
	}
	running.Result, running.Finish = ResultOK, running.Start.Add(time.Second)
	if err := store.Finish(running); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	runs, err := store.Runs("backup", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Errorf("kept %d runs after Finish, want 2", len(runs))
	}
}

func TestHistoryDefaultLimit(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("backup", testStart); err != nil {
		t.Fatal(err)
	}
	for i := range defaultHistoryLimit + 5 {
		_, err := store.RecordSkipped(Run{Job: "backup", Trigger: TriggerManual, Start: testStart.Add(time.Duration(i))})
		if err != nil {
			t.Fatal(err)
		}
	}
	runs, err := store.Runs("backup", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != defaultHistoryLimit {
		t.Errorf("kept %d runs, want %d", len(runs), defaultHistoryLimit)
	}
}

func TestRecoverInterrupted(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	claimFinished(t, store, "backup", slotAt(1), ResultFailed)
	first := claim(t, store, "backup", slotAt(2))
	second := claim(t, store, "report", time.Time{})
	claimFinished(t, store, "idle", slotAt(1), ResultOK)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openTestStore(t, path, Options{})
	now := testStart.Add(3 * time.Hour)
	recovered, err := store.RecoverInterrupted(now, nil)
	if err != nil {
		t.Fatalf("RecoverInterrupted: %v", err)
	}
	if len(recovered) != 2 {
		t.Fatalf("recovered %d runs, want 2: %+v", len(recovered), recovered)
	}
	if recovered[0].ID != first.ID {
		t.Errorf("first recovered ID %s, want %s", recovered[0].ID, first.ID)
	}
	if recovered[1].ID != second.ID {
		t.Errorf("second recovered ID %s, want %s", recovered[1].ID, second.ID)
	}
	for _, run := range recovered {
		if run.Result != ResultInterrupted {
			t.Errorf("run %s Result %q, want %q", run.ID, run.Result, ResultInterrupted)
		}
		if !run.Finish.Equal(now) {
			t.Errorf("run %s Finish %v, want %v", run.ID, run.Finish, now)
		}
		if want := "agent-runner stopped before the run finished"; run.Error != want {
			t.Errorf("run %s Error %q, want %q", run.ID, run.Error, want)
		}
		if run.Duration != 0 || run.ExitCode != -1 {
			t.Errorf("run %s Duration %v, ExitCode %d, want 0 and -1 for unknown", run.ID, run.Duration, run.ExitCode)
		}
		stored, _, err := store.Run(run.Job, run.ID)
		if err != nil || stored != run {
			t.Errorf("stored run %+v, %v, want %+v", stored, err, run)
		}
	}

	backup := mustJob(t, store, "backup")
	if backup.Running {
		t.Error("backup still Running after recovery")
	}
	if backup.LastResult != ResultInterrupted {
		t.Errorf("backup LastResult %q, want %q", backup.LastResult, ResultInterrupted)
	}
	if backup.ConsecutiveFailures != 1 {
		t.Errorf("backup ConsecutiveFailures %d, want 1 (unchanged)", backup.ConsecutiveFailures)
	}
	if mustJob(t, store, "report").Running {
		t.Error("report still Running after recovery")
	}
	if idle := mustJob(t, store, "idle"); idle.LastResult != ResultOK {
		t.Errorf("idle LastResult %q, want %q (untouched)", idle.LastResult, ResultOK)
	}

	again, err := store.RecoverInterrupted(now, nil)
	if err != nil || len(again) != 0 {
		t.Errorf("second RecoverInterrupted = %v, %v, want none", again, err)
	}
}

func TestTimesStoredInUTC(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	zone := time.FixedZone("UTC+5", 5*3600)
	if _, err := store.EnsureJob("backup", testStart.In(zone)); err != nil {
		t.Fatal(err)
	}
	run, err := store.Claim(Run{Job: "backup", Slot: slotAt(1).In(zone), Start: testStart.In(zone)}, slotAt(2).In(zone))
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := store.Run("backup", run.ID)
	if err != nil {
		t.Fatal(err)
	}
	job := mustJob(t, store, "backup")
	for name, value := range map[string]time.Time{
		"run Slot": stored.Slot, "run Start": stored.Start, "returned Slot": run.Slot,
		"FirstSeen": job.FirstSeen, "LastSlot": job.LastSlot, "LastStart": job.LastStart, "NextRun": job.NextRun,
	} {
		if value.Location() != time.UTC {
			t.Errorf("%s location %v, want UTC", name, value.Location())
		}
	}
	if !stored.Slot.Equal(slotAt(1)) {
		t.Errorf("run Slot %v, want %v", stored.Slot, slotAt(1))
	}
}

func TestRecoverInterruptedLeavesBusyJobs(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	for _, name := range []string{"crashed", "busy"} {
		if _, err := store.Claim(Run{Job: name, Start: testStart}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	recovered, err := store.RecoverInterrupted(testStart, func(job string) bool { return job == "busy" })
	if err != nil {
		t.Fatal(err)
	}
	if len(recovered) != 1 || recovered[0].Job != "crashed" {
		t.Errorf("recovered = %+v, want only the crashed job's run", recovered)
	}
	if job := mustJob(t, store, "busy"); !job.Running {
		t.Errorf("the busy job's run was marked interrupted")
	}
}

func TestRecoverInterruptedCleanStopCommitsNothing(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	claimFinished(t, store, "backup", slotAt(1), ResultOK)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	store = openTestStore(t, path, Options{})
	before := store.writer.commits
	recovered, err := store.RecoverInterrupted(testStart, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(recovered) != 0 {
		t.Errorf("recovered %d runs after a clean stop, want none", len(recovered))
	}
	if store.writer.commits != before {
		t.Errorf("RecoverInterrupted made %d commits with nothing to recover, want 0", store.writer.commits-before)
	}
}
