package state

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// TestGroupCommitIsolatesFailedClaim claims the slots of many jobs at once
// together with one slot that is already claimed. Only that one fails,
// whichever batch it lands in.
func TestGroupCommitIsolatesFailedClaim(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	const jobs = 40
	for i := range jobs {
		if _, err := store.EnsureJob(fmt.Sprintf("job-%02d", i), testStart); err != nil {
			t.Fatalf("EnsureJob: %v", err)
		}
	}
	claim(t, store, "job-00", slotAt(1))

	var wg sync.WaitGroup
	errs := make([]error, jobs)
	ids := make([]string, jobs)
	for i := range jobs {
		wg.Go(func() {
			run, err := store.Claim(Run{Job: fmt.Sprintf("job-%02d", i), Trigger: TriggerSchedule, Slot: slotAt(1), Start: testStart}, time.Time{})
			errs[i], ids[i] = err, run.ID
		})
	}
	wg.Wait()

	if !errors.Is(errs[0], ErrSlotClaimed) {
		t.Errorf("claim of the claimed slot: err = %v, want ErrSlotClaimed", errs[0])
	}
	seen := make(map[string]bool)
	for i := 1; i < jobs; i++ {
		if errs[i] != nil {
			t.Errorf("claim of job-%02d: %v", i, errs[i])
			continue
		}
		if seen[ids[i]] {
			t.Errorf("run ID %s assigned twice", ids[i])
		}
		seen[ids[i]] = true
		if got := mustJob(t, store, fmt.Sprintf("job-%02d", i)); !got.LastSlot.Equal(slotAt(1)) || !got.Running {
			t.Errorf("job-%02d: LastSlot %v, Running %v, want %v and true", i, got.LastSlot, got.Running, slotAt(1))
		}
	}
}

// TestFinishVisibleToNextRead checks that a finished run that waits for a
// commit is already seen by every read.
func TestFinishVisibleToNextRead(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	run := claimFinished(t, store, "backup", slotAt(1), ResultOK)

	stored, ok, err := store.Run("backup", run.ID)
	if err != nil || !ok {
		t.Fatalf("Run = %v, %v, want the run", ok, err)
	}
	if stored.Result != ResultOK {
		t.Errorf("stored result = %q, want ok", stored.Result)
	}
	if job := mustJob(t, store, "backup"); job.Running || job.LastResult != ResultOK {
		t.Errorf("job Running %v, LastResult %q, want false and ok", job.Running, job.LastResult)
	}
}

// TestFinishRidesWithNextClaim finishes a run and claims the job's next
// slot before any read: the claim's commit must apply the finish first.
func TestFinishRidesWithNextClaim(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	first := claimFinished(t, store, "backup", slotAt(1), ResultFailed)
	second, err := store.Claim(Run{Job: "backup", Trigger: TriggerSchedule, Slot: slotAt(2), Start: testStart.Add(2 * time.Hour)}, time.Time{})
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}

	job := mustJob(t, store, "backup")
	if !job.Running {
		t.Error("job is not running after the second claim")
	}
	if job.LastResult != ResultFailed || job.ConsecutiveFailures != 1 {
		t.Errorf("LastResult %q, ConsecutiveFailures %d, want failed and 1", job.LastResult, job.ConsecutiveFailures)
	}
	runs, err := store.Runs("backup", 0)
	if err != nil {
		t.Fatalf("Runs: %v", err)
	}
	results := map[string]string{}
	for _, run := range runs {
		results[run.ID] = run.Result
	}
	if results[first.ID] != ResultFailed || results[second.ID] != ResultRunning {
		t.Errorf("results = %v, want %s failed and %s running", results, first.ID, second.ID)
	}
}

// TestFinishWrittenAtClose reopens the store after a Finish that no read
// or write followed.
func TestFinishWrittenAtClose(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	run := claimFinished(t, store, "backup", slotAt(1), ResultOK)
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	reopened := openTestStore(t, path, Options{})
	stored, ok, err := reopened.Run("backup", run.ID)
	if err != nil || !ok {
		t.Fatalf("Run = %v, %v, want the run", ok, err)
	}
	if stored.Result != ResultOK {
		t.Errorf("result after reopening = %q, want ok", stored.Result)
	}
}

func TestFinishTwiceBeforeCommit(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	run := claimFinished(t, store, "backup", slotAt(1), ResultOK)
	if err := store.Finish(run); !errors.Is(err, ErrRunFinished) {
		t.Errorf("second Finish: err = %v, want ErrRunFinished", err)
	}
}

// TestFailedCommitKeepsFinish queues a finish together with a write whose
// commit fails, because RLIMIT_FSIZE stops the store file from growing.
// The finish fits in the claim log, so it must survive the failed commit
// instead of leaving its run running until a restart marks it interrupted.
func TestFailedCommitKeepsFinish(t *testing.T) {
	path := tempStorePath(t)
	store := openHeldStore(t, path, Options{})
	run := claimSlot(t, store, "alpha", slotAt(1))
	run.Result, run.Finish, run.Duration = ResultOK, testStart.Add(time.Second), time.Second

	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	small := limit
	small.Cur = 2 * claimLogSize
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &small); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &limit); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()

	// Hold the lead, so that both writes land in one batch.
	w := &store.writer
	w.mu.Lock()
	w.leading = true
	w.mu.Unlock()
	finished := make(chan error, 1)
	go func() { finished <- store.Finish(run) }()
	committed := make(chan error, 1)
	go func() {
		committed <- store.update(func(tx *bolt.Tx) error {
			bucket, err := tx.CreateBucketIfNotExists([]byte("filler"))
			if err != nil {
				return err
			}
			return bucket.Put([]byte("big"), make([]byte, 4*claimLogSize))
		})
	}()
	for queued := 0; queued < 2; {
		time.Sleep(time.Millisecond)
		w.mu.Lock()
		queued = len(w.queue)
		w.mu.Unlock()
	}
	store.commitQueued(nil)

	if err := <-committed; err == nil {
		t.Fatal("update that outgrows RLIMIT_FSIZE succeeded, want a failed commit")
	}
	if err := <-finished; err != nil {
		t.Errorf("Finish in the batch of a failed commit: %v", err)
	}
	restore()

	got, ok, err := store.Run("alpha", run.ID)
	if err != nil || !ok {
		t.Fatalf("Run(alpha, %s) = %v, %v", run.ID, ok, err)
	}
	if got.Result != ResultOK {
		t.Errorf("run result %q after the failed commit, want ok", got.Result)
	}
}
