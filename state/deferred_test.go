package state

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// limitFileSize sets RLIMIT_FSIZE to size, so that no file of the process
// grows past it, as on a full disk. The returned function restores the
// limit, and runs at cleanup too.
func limitFileSize(t *testing.T, size uint64) func() {
	t.Helper()
	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	small := limit
	small.Cur = size
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &small); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &limit); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// TestFinishKeptWhileStoreCannotGrow finishes runs whose outputs overflow
// the claim log while the store file cannot grow, as on a full disk. The
// finish that neither the log nor a commit takes still succeeds, a claim
// after it fails, and once the file may grow every run is stored as
// finished.
func TestFinishKeptWhileStoreCannotGrow(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	const runs = 4
	var claimed []Run
	for i := 1; i <= runs; i++ {
		claimed = append(claimed, claimSlot(t, store, "alpha", slotAt(i)))
	}

	restore := limitFileSize(t, claimLogSize)
	output := strings.Repeat("x", claimLogSize/4)
	for _, run := range claimed {
		run.Result, run.Finish, run.Duration, run.Output = ResultOK, testStart.Add(time.Second), time.Second, output
		if err := store.Finish(run); err != nil {
			t.Errorf("Finish of run %s while the store cannot grow: %v", run.ID, err)
		}
	}
	next := Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(runs + 1), Start: testStart}
	if _, err := store.Claim(next, time.Time{}); err == nil {
		t.Error("Claim after a deferred finish succeeded while the store cannot grow, want an error")
	}
	restore()

	for _, run := range claimed {
		got := mustRun(t, store, "alpha", run.ID)
		if got.Result != ResultOK {
			t.Errorf("run %s result %q after the store could grow again, want ok", run.ID, got.Result)
		}
		if len(got.Output) != len(output) {
			t.Errorf("run %s output of %d bytes, want %d", run.ID, len(got.Output), len(output))
		}
	}
	job := mustJob(t, store, "alpha")
	if job.Running {
		t.Error("job still marked running after every run finished")
	}
	if job.LastResult != ResultOK {
		t.Errorf("job last result %q, want ok", job.LastResult)
	}
	if _, err := store.Claim(next, time.Time{}); err != nil {
		t.Errorf("Claim once the store can grow again: %v", err)
	}
}

// TestWriteErrorUntilCommitSucceeds checks that WriteError reports a
// commit that failed, ignores a write's own error, and clears once the
// store can grow again, without another write by the caller.
func TestWriteErrorUntilCommitSucceeds(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	run := claimSlot(t, store, "alpha", slotAt(1))
	if err := store.WriteError(); err != nil {
		t.Fatalf("WriteError of a healthy store = %v, want nil", err)
	}
	if _, err := store.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(1), Start: testStart}, time.Time{}); err == nil {
		t.Fatal("Claim of a claimed slot succeeded")
	}
	if err := store.WriteError(); err != nil {
		t.Errorf("WriteError after a rejected claim = %v, want nil", err)
	}

	restore := limitFileSize(t, claimLogSize)
	run.Result, run.Finish, run.Output = ResultOK, testStart.Add(time.Second), strings.Repeat("x", 2*claimLogSize)
	if err := store.Finish(run); err != nil {
		t.Errorf("Finish while the store cannot grow: %v", err)
	}
	if err := store.WriteError(); err == nil {
		t.Error("WriteError after a failed commit = nil, want the commit's error")
	}
	restore()

	if err := store.WriteError(); err != nil {
		t.Errorf("WriteError once the store can grow again = %v, want nil", err)
	}
	if got := mustRun(t, store, "alpha", run.ID); got.Result != ResultOK {
		t.Errorf("run result %q, want ok", got.Result)
	}
}

// TestReadsSeeWritesWhileCommitsFail reads runs and jobs while the store
// file cannot grow. The reads see the claims and finishes that no commit
// took, rather than the store as it was at the last commit.
func TestReadsSeeWritesWhileCommitsFail(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("alpha", testStart); err != nil {
		t.Fatal(err)
	}
	restore := limitFileSize(t, claimLogSize)
	defer restore()

	const runs = 3
	for i := 1; i <= runs; i++ {
		run := claimSlot(t, store, "alpha", slotAt(i))
		run.Result, run.Finish, run.Output = ResultOK, testStart.Add(time.Duration(i)*time.Second), strings.Repeat("x", claimLogSize/3)
		if err := store.Finish(run); err != nil {
			t.Fatalf("Finish of run %s: %v", run.ID, err)
		}
	}
	if err := store.WriteError(); err == nil {
		t.Fatal("WriteError = nil, want a failed commit")
	}

	got, err := store.Runs("alpha", 0)
	if err != nil {
		t.Fatalf("Runs while commits fail: %v", err)
	}
	if len(got) != runs {
		t.Errorf("Runs while commits fail returned %d runs, want %d", len(got), runs)
	}
	for _, run := range got {
		if run.Result != ResultOK {
			t.Errorf("run %s result %q while commits fail, want ok", run.ID, run.Result)
		}
	}
	job := mustJob(t, store, "alpha")
	if !job.LastSlot.Equal(slotAt(runs)) {
		t.Errorf("job last slot %v while commits fail, want %v", job.LastSlot, slotAt(runs))
	}
	if job.LastResult != ResultOK {
		t.Errorf("job last result %q while commits fail, want ok", job.LastResult)
	}
}

// TestWriteErrorKeptWhileClaimsFit checks that a failed commit is still
// reported after later claims went into the preallocated claim log, as
// they do on a full disk until the log is full.
func TestWriteErrorKeptWhileClaimsFit(t *testing.T) {
	path := tempStorePath(t)
	store := openHeldStore(t, path, Options{})
	// A store file larger than the claim log, so that a limit at the log's
	// size stops the store's new pages and not the log's writes.
	run := claimSlot(t, store, "alpha", slotAt(0))
	run.Result, run.Finish, run.Output = ResultOK, testStart.Add(time.Second), strings.Repeat("x", 2*claimLogSize)
	if err := store.Finish(run); err != nil {
		t.Fatal(err)
	}
	store.flush()
	if info, err := os.Stat(path); err != nil || info.Size() <= claimLogSize {
		t.Fatalf("store file after a large finish: %v, %v; want more than %d bytes", info, err, claimLogSize)
	}
	// Pages past the limit, where bbolt adds new ones, cannot be written.
	restore := limitFileSize(t, claimLogSize)
	defer restore()

	// Enough claims that their commit needs pages past the file's end.
	for i := 1; i <= 300; i++ {
		claimSlot(t, store, "alpha", slotAt(i))
	}
	store.flush()
	if err := store.WriteError(); err == nil {
		t.Fatal("WriteError after a commit that could not grow the file = nil, want its error")
	}
	claimSlot(t, store, "alpha", slotAt(301))
	if err := store.WriteError(); err == nil {
		t.Error("WriteError after a claim that went into the claim log = nil, want the failed commit's error")
	}
}

// waitQueued waits until n writes wait for the write leader.
func waitQueued(t *testing.T, store *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		store.writer.mu.Lock()
		queued := len(store.writer.queue)
		store.writer.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 5s, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// runInFailedBatch runs op, which makes one write of the store, in one
// batch with a write that fails, so that the store retries the batch one
// write at a time. It holds the write leader until both writes are
// queued, and returns once both have returned.
func runInFailedBatch(t *testing.T, store *Store, op func()) {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = store.update(func(*bolt.Tx) error {
			close(entered)
			<-release
			return nil
		})
	})
	<-entered

	wg.Go(op)
	waitQueued(t, store, 1)
	failure := errors.New("write failed")
	wg.Go(func() {
		if err := store.update(func(*bolt.Tx) error { return failure }); !errors.Is(err, failure) {
			t.Errorf("failing write returned %v, want %v", err, failure)
		}
	})
	waitQueued(t, store, 2)
	close(release)
	wg.Wait()
}

// TestPendingReadRunsOnceInFailedBatch reads the open transaction in the
// same batch as a write that fails on its own, such as a skipped run of
// a job that is gone. The batch is retried one write at a time, and the
// read still runs once, so a read that collects records, as Jobs and
// Runs do, does not return them twice.
func TestPendingReadRunsOnceInFailedBatch(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("alpha", testStart); err != nil {
		t.Fatal(err)
	}

	var names []string
	runInFailedBatch(t, store, func() {
		err := store.viewPending(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketJobs).ForEach(func(key, _ []byte) error {
				names = append(names, string(key))
				return nil
			})
		})
		if err != nil {
			t.Errorf("viewPending: %v", err)
		}
	})

	if len(names) != 1 {
		t.Errorf("read in a retried batch collected jobs %v, want [alpha]", names)
	}
}

// TestWriteErrorClearsOnceClaimLogWrites makes claim log writes fail, as
// after an I/O error, and then work again. WriteError reports the
// failure, and stops reporting it once the store can write again, before
// the next claim.
func TestWriteErrorClearsOnceClaimLogWrites(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	claimSlot(t, store, "alpha", slotAt(1))
	claims := store.writer.claims
	writable := claims.file
	readOnly, err := os.Open(claims.path)
	if err != nil {
		t.Fatal(err)
	}
	defer readOnly.Close()

	claims.file = readOnly
	if _, err := store.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(2), Start: testStart}, time.Time{}); err == nil {
		t.Fatal("Claim succeeded while the claim log cannot be written")
	}
	if err := store.WriteError(); err == nil {
		t.Error("WriteError while the claim log cannot be written = nil, want its error")
	}
	claims.file = writable

	if err := store.WriteError(); err != nil {
		t.Errorf("WriteError once the claim log can be written = %v, want nil", err)
	}
}

// TestRecoverInterruptedRetriedBatch queues RecoverInterrupted in a
// batch with a write that fails, which makes the batch run each write
// again alone. Each interrupted run is returned once.
func TestRecoverInterruptedRetriedBatch(t *testing.T) {
	store := openHeldStore(t, tempStorePath(t), Options{})
	claimSlot(t, store, "alpha", slotAt(1))
	store.flush()

	var recovered []Run
	runInFailedBatch(t, store, func() {
		var err error
		if recovered, err = store.RecoverInterrupted(testStart.Add(time.Hour), nil); err != nil {
			t.Errorf("RecoverInterrupted: %v", err)
		}
	})

	if len(recovered) != 1 {
		t.Errorf("RecoverInterrupted in a retried batch returned %d runs, want 1", len(recovered))
	}
}
