package state

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// childClaimHold claims three runs of two jobs and finishes the first,
// with the commit timer held off so that only the claim log makes them
// durable. It prints each claimed run's ID, then "ready" and the number
// of bbolt commits since Open, and waits for its standard input to close.
func childClaimHold(path string) int {
	store, err := Open(path, Options{LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	store.writer.delay = time.Hour

	first, err := store.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(1), Start: testStart}, slotAt(2))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(first.ID)
	first.Result, first.Finish, first.Duration, first.Output = ResultOK, testStart.Add(time.Second), time.Second, "first"
	if err := store.Finish(first); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, run := range []Run{
		{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(2), Start: testStart.Add(time.Minute)},
		{Job: "beta", Trigger: TriggerManual, Start: testStart.Add(2 * time.Minute)},
	} {
		claimed, err := store.Claim(run, slotAt(3))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(claimed.ID)
	}
	fmt.Println("ready", store.writer.commits)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestClaimLogSurvivesKill kills a child after it claimed runs that no
// bbolt commit contains, and checks that a read-write Open replays them
// from the claim log.
func TestClaimLogSurvivesKill(t *testing.T) {
	path := tempStorePath(t)
	child := startChild(t, "claim-hold", path)
	var ids []string
	for {
		line := child.waitLine(t)
		if commits, ok := strings.CutPrefix(line, "ready "); ok {
			if commits != "0" {
				t.Fatalf("child made %s bbolt commits after Open, want 0", commits)
			}
			break
		}
		ids = append(ids, line)
	}
	killChild(t, child)
	if len(ids) != 3 {
		t.Fatalf("child claimed runs %v, want 3", ids)
	}
	killedLog, err := os.ReadFile(path + claimLogSuffix)
	if err != nil {
		t.Fatalf("read claim log: %v", err)
	}

	checkReadOnlyShowsClaims(t, path, ids, killedLog)

	store, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open after kill: %v", err)
	}
	checkReplayedClaims(t, store, ids)
	for _, slot := range []time.Time{slotAt(1), slotAt(2)} {
		_, err := store.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slot, Start: testStart}, time.Time{})
		if !errors.Is(err, ErrSlotClaimed) {
			t.Errorf("Claim of replayed slot %v: err = %v, want ErrSlotClaimed", slot, err)
		}
	}
	interrupted, err := store.RecoverInterrupted(testStart.Add(time.Hour), nil)
	if err != nil {
		t.Fatalf("RecoverInterrupted: %v", err)
	}
	var got []string
	for _, run := range interrupted {
		got = append(got, run.ID)
	}
	if want := ids[1:]; !slices.Equal(got, want) {
		t.Errorf("RecoverInterrupted returned runs %v, want %v", got, want)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// The log as the kill left it, replayed again, changes nothing.
	if err := os.WriteFile(path+claimLogSuffix, killedLog, 0o600); err != nil {
		t.Fatalf("restore claim log: %v", err)
	}
	reopened := openTestStore(t, path, Options{})
	for i, want := range []string{ResultOK, ResultInterrupted} {
		if run := mustRun(t, reopened, "alpha", ids[i]); run.Result != want {
			t.Errorf("run %s after the second replay: result %q, want %q", ids[i], run.Result, want)
		}
	}
	if job := mustJob(t, reopened, "alpha"); job.Running {
		t.Error("job alpha is running again after the second replay")
	}
	next, err := reopened.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(3), Start: testStart}, time.Time{})
	if err != nil {
		t.Fatalf("Claim of the next slot: %v", err)
	}
	if next.ID != "4" {
		t.Errorf("next run ID %s, want 4", next.ID)
	}
}

// checkReadOnlyShowsClaims opens the store read-only twice at once, as
// two CLI commands do, and checks that both show what childClaimHold
// wrote, although only the claim log contains it, and that neither wrote
// the store file or the claim log.
func checkReadOnlyShowsClaims(t *testing.T, path string, ids []string, killedLog []byte) {
	t.Helper()
	storeFile, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read store file: %v", err)
	}
	first, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	second, err := Open(path, Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("second read-only Open: %v", err)
	}
	for _, store := range []*Store{first, second} {
		checkReplayedClaims(t, store, ids)
		jobs, err := store.Jobs()
		if err != nil {
			t.Fatalf("read-only Jobs: %v", err)
		}
		if len(jobs) != 2 {
			t.Errorf("read-only Jobs returned %d jobs, want alpha and beta", len(jobs))
		}
		running, err := store.RunningRuns()
		if err != nil {
			t.Fatalf("read-only RunningRuns: %v", err)
		}
		if len(running) != 2 {
			t.Errorf("read-only RunningRuns returned %d runs, want the last 2 claimed", len(running))
		}
		if err := store.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if after, err := os.ReadFile(path); err != nil || !slices.Equal(after, storeFile) {
		t.Errorf("store file changed by a read-only Open (read error %v)", err)
	}
	if after, err := os.ReadFile(path + claimLogSuffix); err != nil || !slices.Equal(after, killedLog) {
		t.Errorf("claim log changed by a read-only Open (read error %v)", err)
	}
}

// checkReplayedClaims checks the store against what childClaimHold wrote.
func checkReplayedClaims(t *testing.T, store *Store, ids []string) {
	t.Helper()
	alpha := mustJob(t, store, "alpha")
	if !alpha.LastSlot.Equal(slotAt(2)) || !alpha.NextRun.Equal(slotAt(3)) {
		t.Errorf("alpha LastSlot %v, NextRun %v, want %v and %v", alpha.LastSlot, alpha.NextRun, slotAt(2), slotAt(3))
	}
	if !alpha.Running || alpha.LastResult != ResultOK || !alpha.LastStart.Equal(testStart.Add(time.Minute)) {
		t.Errorf("alpha Running %v, LastResult %q, LastStart %v, want true, ok and %v",
			alpha.Running, alpha.LastResult, alpha.LastStart, testStart.Add(time.Minute))
	}
	if first := mustRun(t, store, "alpha", ids[0]); first.Result != ResultOK || first.Output != "first" {
		t.Errorf("first run result %q, output %q, want ok and first", first.Result, first.Output)
	}
	if second := mustRun(t, store, "alpha", ids[1]); second.Result != ResultRunning {
		t.Errorf("second run result %q, want running", second.Result)
	}
	beta := mustJob(t, store, "beta")
	if !beta.FirstSeen.Equal(testStart.Add(2*time.Minute)) || !beta.Running {
		t.Errorf("beta FirstSeen %v, Running %v, want %v and true", beta.FirstSeen, beta.Running, testStart.Add(2*time.Minute))
	}
	if third := mustRun(t, store, "beta", ids[2]); third.Result != ResultRunning {
		t.Errorf("beta run result %q, want running", third.Result)
	}
}

func mustRun(t *testing.T, store *Store, job, id string) Run {
	t.Helper()
	run, ok, err := store.Run(job, id)
	if err != nil || !ok {
		t.Fatalf("Run(%s, %s) = %v, %v, want the run", job, id, ok, err)
	}
	return run
}

// openHeldStore opens a store whose timer never commits during the test.
func openHeldStore(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	store := openTestStore(t, path, opts)
	store.writer.delay = time.Hour
	return store
}

// claimSlot claims a slot of job without a read or write that commits.
func claimSlot(t *testing.T, store *Store, job string, slot time.Time) Run {
	t.Helper()
	run, err := store.Claim(Run{Job: job, Trigger: TriggerSchedule, Slot: slot, Start: testStart}, slot.Add(time.Minute))
	if err != nil {
		t.Fatalf("Claim of %s slot %v: %v", job, slot, err)
	}
	return run
}

// copyStore copies the store file and its claim log into a new folder, as
// a crash would leave them, and returns the copy's store path.
func copyStore(t *testing.T, path string) string {
	t.Helper()
	dest := tempStorePath(t)
	for _, suffix := range []string{"", claimLogSuffix} {
		data, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatalf("copy store: %v", err)
		}
		if err := os.WriteFile(dest+suffix, data, 0o600); err != nil {
			t.Fatalf("copy store: %v", err)
		}
	}
	return dest
}

func TestClaimLogTornTail(t *testing.T) {
	path := tempStorePath(t)
	store := openHeldStore(t, path, Options{})
	for i := 1; i <= 3; i++ {
		claimSlot(t, store, "alpha", slotAt(i))
	}

	cases := []struct {
		name string
		// damage changes the log, whose records end at ends.
		damage func(log []byte, ends []int64) []byte
	}{
		{"cut", func(log []byte, ends []int64) []byte { return log[:ends[1]+recordHeaderSize+5] }},
		{"bad checksum", func(log []byte, ends []int64) []byte {
			log[ends[2]-2] ^= 0xff
			return log
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			copied := copyStore(t, path)
			log, err := os.ReadFile(copied + claimLogSuffix)
			if err != nil {
				t.Fatal(err)
			}
			parsed := parseClaimLog(log)
			if len(parsed.ends) != 3 || parsed.problem != nil {
				t.Fatalf("claim log has %d records and problem %v, want 3 and none", len(parsed.ends), parsed.problem)
			}
			if err := os.WriteFile(copied+claimLogSuffix, tc.damage(log, parsed.ends), 0o600); err != nil {
				t.Fatal(err)
			}

			checkReadOnlyTornTail(t, copied)
			recorder, logger := newLogRecorder()
			reopened := openTestStore(t, copied, Options{Logger: logger})
			warning, ok := recorder.find(slog.LevelWarn)
			if !ok {
				t.Fatal("no WARN about the torn record")
			}
			if warning["offset"] != fmt.Sprint(parsed.ends[1]) || warning["replayed_records"] != "2" {
				t.Errorf("WARN %v, want offset %d and 2 replayed records", warning, parsed.ends[1])
			}
			if job := mustJob(t, reopened, "alpha"); !job.LastSlot.Equal(slotAt(2)) {
				t.Errorf("LastSlot %v, want %v", job.LastSlot, slotAt(2))
			}
			// The torn claim was never acknowledged, so its slot is free.
			if run := claimSlot(t, reopened, "alpha", slotAt(3)); run.ID != "3" {
				t.Errorf("claim of the torn slot got ID %s, want 3", run.ID)
			}
		})
	}
}

// checkReadOnlyTornTail checks that a read-only Open shows the two
// records before the torn third one, as replay does.
func checkReadOnlyTornTail(t *testing.T, path string) {
	t.Helper()
	store, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	defer store.Close()
	if job := mustJob(t, store, "alpha"); !job.LastSlot.Equal(slotAt(2)) {
		t.Errorf("read-only LastSlot %v, want %v", job.LastSlot, slotAt(2))
	}
	runs, err := store.Runs("alpha", 0)
	if err != nil {
		t.Fatalf("read-only Runs: %v", err)
	}
	if len(runs) != 2 {
		t.Errorf("read-only Runs returned %d runs, want the 2 before the torn record", len(runs))
	}
}

// checkReadOnlyLeavesLogOut checks that a read-only Open of a store whose
// claim log is not a regular file with one link opens, reads nothing from
// the log and leaves it where it is.
func checkReadOnlyLeavesLogOut(t *testing.T, path string) {
	t.Helper()
	store, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	defer store.Close()
	if _, ok, err := store.Job("alpha"); err != nil || ok {
		t.Errorf("read-only Job(alpha) = %v, %v, want no job", ok, err)
	}
	if aside, err := filepath.Glob(path + claimLogSuffix + ".corrupt-*"); err != nil || len(aside) != 0 {
		t.Errorf("read-only Open moved the claim log to %v (%v), want it left in place", aside, err)
	}
}

// TestClaimLogSkipsOlderGeneration replays a log whose first record is
// followed by records of an earlier generation, as a reset leaves them
// when its end marker is lost. Their run IDs are above the runs sequence,
// so only the generation keeps them out.
func TestClaimLogSkipsOlderGeneration(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	var log []byte
	for i, generation := range []uint64{8, 7, 7} {
		run := Run{ID: fmt.Sprint(i + 1), Job: fmt.Sprintf("job-%d", i), Trigger: TriggerSchedule,
			Slot: slotAt(1), Start: testStart, Result: ResultRunning}
		log, err = appendRecord(log, generation, logEntry{Op: entryClaim, Run: run})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path+claimLogSuffix, log, 0o600); err != nil {
		t.Fatal(err)
	}

	recorder, logger := newLogRecorder()
	reopened := openTestStore(t, path, Options{Logger: logger})
	if warning, ok := recorder.find(slog.LevelWarn); ok {
		t.Errorf("unexpected WARN %v", warning)
	}
	jobs, err := reopened.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Name != "job-0" {
		t.Errorf("jobs after replay %v, want only job-0", jobs)
	}
	if run := claimSlot(t, reopened, "job-1", slotAt(1)); run.ID != "2" {
		t.Errorf("next run ID %s, want 2", run.ID)
	}
}

// TestClaimLogReplayAfterLostReset puts back a claim log from before a
// commit, as if its reset never reached the disk, and checks that replay
// changes nothing, not even runs that pruning removed.
func TestClaimLogReplayAfterLostReset(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{HistoryLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	store.writer.delay = time.Hour
	for i := 1; i <= 2; i++ {
		run := claimSlot(t, store, "alpha", slotAt(i))
		run.Result, run.Finish = ResultOK, testStart.Add(time.Second)
		if err := store.Finish(run); err != nil {
			t.Fatal(err)
		}
	}
	running := claimSlot(t, store, "alpha", slotAt(3))
	saved, err := os.ReadFile(path + claimLogSuffix)
	if err != nil {
		t.Fatal(err)
	}
	before, err := store.Runs("alpha", 0)
	if err != nil {
		t.Fatal(err)
	}
	job := mustJob(t, store, "alpha")
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		if err := os.WriteFile(path+claimLogSuffix, saved, 0o600); err != nil {
			t.Fatal(err)
		}
		reopened, err := Open(path, Options{HistoryLimit: 1})
		if err != nil {
			t.Fatal(err)
		}
		after, err := reopened.Runs("alpha", 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(after, before) {
			t.Errorf("runs after replay %v, want %v", after, before)
		}
		if got := mustJob(t, reopened, "alpha"); got != job {
			t.Errorf("job after replay %+v, want %+v", got, job)
		}
		if err := reopened.Close(); err != nil {
			t.Fatal(err)
		}
	}
	reopened := openTestStore(t, path, Options{HistoryLimit: 1})
	if next := claimSlot(t, reopened, "alpha", slotAt(4)); CompareRunIDs(next.ID, running.ID) <= 0 {
		t.Errorf("next run ID %s, want after %s", next.ID, running.ID)
	}
}

// TestFailedWriteKeepsPendingClaims fails a write after it changed the
// open transaction, which rolls back the pending claims with it, and
// checks that they come back from the claim log.
func TestFailedWriteKeepsPendingClaims(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	first := claimSlot(t, store, "alpha", slotAt(1))

	errFailed := errors.New("write failed on purpose")
	err := store.update(func(tx *bolt.Tx) error {
		if err := putJob(tx, JobState{Name: "ghost", FirstSeen: testStart}); err != nil {
			return err
		}
		return errFailed
	})
	if !errors.Is(err, errFailed) {
		t.Fatalf("update: err = %v, want the write's error", err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = store.Claim(Run{Job: fmt.Sprintf("job-%02d", i), Trigger: TriggerSchedule, Slot: slotAt(1), Start: testStart}, time.Time{})
		})
	}
	wg.Go(func() {
		if err := store.update(func(*bolt.Tx) error { return errFailed }); !errors.Is(err, errFailed) {
			t.Errorf("update among claims: err = %v, want the write's error", err)
		}
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("claim of job-%02d: %v", i, err)
		}
	}

	if _, err := store.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(1), Start: testStart}, time.Time{}); !errors.Is(err, ErrSlotClaimed) {
		t.Errorf("claim of the pending slot again: err = %v, want ErrSlotClaimed", err)
	}
	if run := mustRun(t, store, "alpha", first.ID); run.Result != ResultRunning {
		t.Errorf("pending run result %q, want running", run.Result)
	}
	if _, ok, err := store.Job("ghost"); err != nil || ok {
		t.Errorf("Job(ghost) = %v, %v, want the failed write undone", ok, err)
	}
	if next := claimSlot(t, store, "alpha", slotAt(2)); next.ID != fmt.Sprint(len(errs)+2) {
		t.Errorf("next run ID %s, want %d", next.ID, len(errs)+2)
	}
}

// TestClaimsSyncOncePerRun counts the claim log's fdatasync calls and the
// bbolt commits of runs in a row, each claimed and finished.
func TestClaimsSyncOncePerRun(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("alpha", testStart); err != nil {
		t.Fatal(err)
	}
	syncs, commits := store.writer.claims.syncs, store.writer.commits
	const runs = 20
	for i := 1; i <= runs; i++ {
		run := claimSlot(t, store, "alpha", slotAt(i))
		run.Result, run.Finish = ResultOK, testStart.Add(time.Second)
		if err := store.Finish(run); err != nil {
			t.Fatal(err)
		}
	}
	if got := store.writer.claims.syncs - syncs; got != runs {
		t.Errorf("claim log synced %d times for %d runs, want %d", got, runs, runs)
	}
	if got := store.writer.commits - commits; got != 0 {
		t.Errorf("bbolt committed %d times during the runs, want 0", got)
	}
	if job := mustJob(t, store, "alpha"); job.Running || !job.LastSlot.Equal(slotAt(runs)) {
		t.Errorf("job Running %v, LastSlot %v, want false and %v", job.Running, job.LastSlot, slotAt(runs))
	}
	if got := store.writer.commits - commits; got != 1 {
		t.Errorf("bbolt committed %d times after a read, want 1", got)
	}
}

// TestClaimLogFullCommits finishes runs with outputs that fill the claim
// log, which makes the store commit and reset it instead of failing.
func TestClaimLogFullCommits(t *testing.T) {
	path := tempStorePath(t)
	store := openHeldStore(t, path, Options{})
	output := strings.Repeat("x", claimLogSize/4)
	const runs = 8
	for i := 1; i <= runs; i++ {
		run := claimSlot(t, store, "alpha", slotAt(i))
		run.Result, run.Finish, run.Output = ResultOK, testStart.Add(time.Second), output
		if err := store.Finish(run); err != nil {
			t.Fatalf("Finish of run %d: %v", i, err)
		}
	}
	if store.writer.commits == 0 {
		t.Error("no bbolt commit although the finishes did not fit in the claim log")
	}
	copied := copyStore(t, path)
	reopened := openTestStore(t, copied, Options{})
	got, err := reopened.Runs("alpha", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != runs {
		t.Fatalf("got %d runs after reopening a copy, want %d", len(got), runs)
	}
	for _, run := range got {
		if run.Result != ResultOK || run.Output != output {
			t.Errorf("run %s: result %q, output of %d bytes, want ok and %d bytes", run.ID, run.Result, len(run.Output), len(output))
		}
	}
}

// TestTimerCommitsPendingClaims waits, without a read of its own, until a
// bbolt reader sees a claim that only the claim log had.
func TestTimerCommitsPendingClaims(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	store.writer.delay = 10 * time.Millisecond
	run := claimSlot(t, store, "alpha", slotAt(1))
	seq, err := ParseRunID(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var found bool
		err := store.db.View(func(tx *bolt.Tx) error {
			var readErr error
			_, found, readErr = getRun(jobRuns(tx, "alpha"), seq)
			return readErr
		})
		if err != nil {
			t.Fatal(err)
		}
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the timer never committed the claim")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeClaimLog writes a claim log of one claim of job "alpha" at path.
func writeClaimLog(t *testing.T, path string) {
	t.Helper()
	run := Run{ID: "1", Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(1), Start: testStart, Result: ResultRunning}
	log, err := appendRecord(nil, 1, logEntry{Op: entryClaim, Run: run})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+claimLogSuffix, log, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptStoreMovesClaimLogAside(t *testing.T) {
	path := tempStorePath(t)
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	writeClaimLog(t, path)

	recorder, logger := newLogRecorder()
	store := openTestStore(t, path, Options{Logger: logger})
	moved := store.Recovered()
	if moved == "" {
		t.Fatal("Open did not move the corrupt store aside")
	}
	if _, err := os.Stat(moved + claimLogSuffix); err != nil {
		t.Errorf("claim log not moved along with the store: %v", err)
	}
	if record, ok := recorder.find(slog.LevelError); !ok || record["claim_log_moved_to"] != moved+claimLogSuffix {
		t.Errorf("ERROR record %v, want claim_log_moved_to %s", record, moved+claimLogSuffix)
	}
	if _, ok, err := store.Job("alpha"); err != nil || ok {
		t.Errorf("Job(alpha) = %v, %v, want none in the fresh store", ok, err)
	}
}

func TestMissingStoreDiscardsClaimLog(t *testing.T) {
	for _, name := range []string{"missing", "empty"} {
		t.Run(name, func(t *testing.T) {
			path := tempStorePath(t)
			if name == "empty" {
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			writeClaimLog(t, path)

			recorder, logger := newLogRecorder()
			store := openTestStore(t, path, Options{Logger: logger})
			if _, ok, err := store.Job("alpha"); err != nil || ok {
				t.Errorf("Job(alpha) = %v, %v, want none in the fresh store", ok, err)
			}
			if !recorder.has(slog.LevelWarn, "removed the claim log") {
				t.Error("no WARN about the removed claim log")
			}
			info, err := os.Stat(path + claimLogSuffix)
			if err != nil || info.Mode().Perm() != 0o600 || info.Size() != claimLogSize {
				t.Errorf("new claim log %v, %v, want mode 0600 and %d bytes", info, err, claimLogSize)
			}
		})
	}
}

func TestClaimLogNotRegularFileMovedAside(t *testing.T) {
	cases := map[string]func(t *testing.T, logPath, outside string){
		"symlink": func(t *testing.T, logPath, outside string) {
			if err := os.Symlink(outside, logPath); err != nil {
				t.Fatal(err)
			}
		},
		"hard link": func(t *testing.T, logPath, outside string) {
			if err := os.Link(outside, logPath); err != nil {
				t.Skipf("no hard link across the test's folders: %v", err)
			}
		},
		"fifo": func(t *testing.T, logPath, _ string) {
			if err := unix.Mkfifo(logPath, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"directory": func(t *testing.T, logPath, _ string) {
			if err := os.Mkdir(logPath, 0o700); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, create := range cases {
		t.Run(name, func(t *testing.T) {
			path := tempStorePath(t)
			openTestStore(t, path, Options{}).Close()
			logPath := path + claimLogSuffix
			if err := os.Remove(logPath); err != nil {
				t.Fatal(err)
			}
			outside := filepath.Join(t.TempDir(), "outside")
			const content = "a file outside the state folder\n"
			if err := os.WriteFile(outside, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			create(t, logPath, outside)
			checkReadOnlyLeavesLogOut(t, path)

			recorder, logger := newLogRecorder()
			opened := make(chan error, 1)
			go func() {
				store, err := Open(path, Options{Logger: logger})
				if err == nil {
					_, err = store.Claim(Run{Job: "alpha", Trigger: TriggerManual, Start: time.Now()}, time.Time{})
					err = errors.Join(err, store.Close())
				}
				opened <- err
			}()
			select {
			case err := <-opened:
				if err != nil {
					t.Fatalf("open and claim: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Open blocked on the claim log")
			}
			if !recorder.has(slog.LevelError, "claim log was not a regular file") {
				t.Error("no ERROR about the claim log moved aside")
			}
			aside, err := filepath.Glob(logPath + ".corrupt-*")
			if err != nil || len(aside) != 1 {
				t.Errorf("moved-aside logs %v, %v, want one", aside, err)
			}
			info, err := os.Lstat(logPath)
			if err != nil || !info.Mode().IsRegular() || info.Size() != claimLogSize {
				t.Errorf("new claim log %v, %v, want a regular file of %d bytes", info, err, claimLogSize)
			}
			if data, err := os.ReadFile(outside); err != nil || string(data) != content {
				t.Errorf("file outside the state folder now %d bytes, %v, want it unchanged", len(data), err)
			}
		})
	}
}

func TestClaimLogFolderBesideMissingStoreMovedAside(t *testing.T) {
	path := tempStorePath(t)
	logPath := path + claimLogSuffix
	if err := os.MkdirAll(filepath.Join(logPath, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("open a missing store beside a folder claim log: %v", err)
	}
	defer store.Close()
	aside, err := filepath.Glob(logPath + ".corrupt-*")
	if err != nil || len(aside) != 1 {
		t.Fatalf("moved-aside logs %v, %v, want one", aside, err)
	}
	if _, err := os.Stat(filepath.Join(aside[0], "inside")); err != nil {
		t.Errorf("the folder's contents did not move with it: %v", err)
	}
}

// A store above maxOverlayBytes is not copied into memory: reads show
// the last commit, with a warning.
func TestReadOnlySkipsOverlayOfLargeStore(t *testing.T) {
	path := tempStorePath(t)
	store := openHeldStore(t, path, Options{})
	claimSlot(t, store, "alpha", slotAt(1))
	copied := copyStore(t, path)

	old := maxOverlayBytes
	maxOverlayBytes = 1
	t.Cleanup(func() { maxOverlayBytes = old })
	recorder, logger := newLogRecorder()
	reader, err := Open(copied, Options{ReadOnly: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if _, ok := recorder.find(slog.LevelWarn); !ok {
		t.Error("no WARN about the store too large to copy")
	}
	if _, found, err := reader.Job("alpha"); err != nil || found {
		t.Errorf("Job(alpha) found %v, err %v; want the last commit, which lacks it", found, err)
	}
}
