package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const crashJob = "crash"

// childClaimLoop claims and finishes consecutive slots as fast as it can,
// printing each slot's Unix nanoseconds once Claim has returned. It first
// checks that the last stored slot cannot be claimed again.
func childClaimLoop(path string) int {
	store, err := Open(path, Options{HistoryLimit: 1 << 20, LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	job, err := store.EnsureJob(crashJob, time.Now())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	slot := slotAt(0)
	if !job.LastSlot.IsZero() {
		_, err := store.Claim(Run{Job: crashJob, Trigger: TriggerSchedule, Slot: job.LastSlot, Start: time.Now()}, time.Time{})
		if !errors.Is(err, ErrSlotClaimed) {
			fmt.Printf("reclaimed %d: %v\n", job.LastSlot.UnixNano(), err)
			return 3
		}
		slot = job.LastSlot.Add(time.Minute)
	}

	for ; ; slot = slot.Add(time.Minute) {
		run, err := store.Claim(Run{Job: crashJob, Trigger: TriggerSchedule, Slot: slot, Start: time.Now()}, slot.Add(time.Minute))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(slot.UnixNano())

		run.Finish = time.Now()
		run.Duration = run.Finish.Sub(run.Start)
		run.Result = ResultOK
		run.Output = "done"
		if err := store.Finish(run); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
}

// TestClaimSurvivesKill kills a child process that claims slots at random
// moments and checks, after each kill, that the store opens cleanly, is not
// behind any slot the child printed as claimed, and never claimed a slot
// twice.
func TestClaimSurvivesKill(t *testing.T) {
	path := tempStorePath(t)
	store := openTestStore(t, path, Options{})
	if _, err := store.EnsureJob(crashJob, time.Now()); err != nil {
		t.Fatalf("EnsureJob: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	random := rand.New(rand.NewPCG(seed, seed))

	var last time.Time
	printed := 0
	for round := range rounds {
		delay := 20*time.Millisecond + time.Duration(random.Int64N(int64(400*time.Millisecond)))
		lines := runAndKill(t, path, delay)
		printed += len(lines)
		last = checkAfterKill(t, path, round, lines, last)
	}
	if printed == 0 {
		t.Fatal("no child claimed a slot before it was killed, so the test checked nothing")
	}
	checkSlotsUnique(t, path)
}

// runAndKill runs the claim loop in a child, sends it SIGKILL after delay
// and returns the slots it printed.
func runAndKill(t *testing.T, path string, delay time.Duration) []string {
	t.Helper()
	child := startChild(t, "claim-loop", path)
	time.Sleep(delay)
	return killChild(t, child)
}

// killChild sends the child SIGKILL, waits for it and returns the output
// it had not read yet.
func killChild(t *testing.T, child *testChild) []string {
	t.Helper()
	if err := child.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	lines := child.drain()
	_ = child.stdin.Close()

	err := child.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, output %q, want killed by SIGKILL", err, lines)
	}
	return lines
}

// checkAfterKill reopens the store after a kill and returns its LastSlot.
func checkAfterKill(t *testing.T, path string, round int, lines []string, previous time.Time) time.Time {
	t.Helper()
	store, err := Open(path, Options{HistoryLimit: 1 << 20})
	if err != nil {
		t.Fatalf("round %d: Open after kill: %v", round, err)
	}
	defer store.Close()
	if store.Recovered() != "" {
		t.Fatalf("round %d: Open after kill moved the store to %s", round, store.Recovered())
	}

	job, ok, err := store.Job(crashJob)
	if err != nil || !ok {
		t.Fatalf("round %d: Job = %v, %v, want the job", round, ok, err)
	}
	if job.LastSlot.Before(previous) {
		t.Errorf("round %d: LastSlot %v went back from %v", round, job.LastSlot, previous)
	}
	if len(lines) > 0 {
		nanos, err := strconv.ParseInt(lines[len(lines)-1], 10, 64)
		if err != nil {
			t.Fatalf("round %d: child output %q: %v", round, lines[len(lines)-1], err)
		}
		printed := time.Unix(0, nanos).UTC()
		// The child may have committed one more claim before printing it.
		if job.LastSlot.Before(printed) || job.LastSlot.After(printed.Add(time.Minute)) {
			t.Errorf("round %d: LastSlot %v, want %v or the slot after it", round, job.LastSlot, printed)
		}
	}

	interrupted, err := store.RecoverInterrupted(time.Now(), nil)
	if err != nil {
		t.Fatalf("round %d: RecoverInterrupted: %v", round, err)
	}
	if len(interrupted) > 1 {
		t.Errorf("round %d: RecoverInterrupted returned %d runs, want at most 1", round, len(interrupted))
	}
	return job.LastSlot
}

// checkSlotsUnique checks that no slot has two run records and that the
// slots run without gaps up to LastSlot.
func checkSlotsUnique(t *testing.T, path string) {
	t.Helper()
	store := openTestStore(t, path, Options{HistoryLimit: 1 << 20})
	runs, err := store.Runs(crashJob, 0)
	if err != nil {
		t.Fatalf("Runs: %v", err)
	}
	job, _, err := store.Job(crashJob)
	if err != nil {
		t.Fatalf("Job: %v", err)
	}

	seen := make(map[time.Time]string)
	for _, run := range runs {
		if other, ok := seen[run.Slot]; ok {
			t.Errorf("slot %v claimed by runs %s and %s", run.Slot, other, run.ID)
		}
		seen[run.Slot] = run.ID
	}
	want := int(job.LastSlot.Sub(slotAt(0))/time.Minute) + 1
	if len(seen) != want {
		t.Errorf("got %d claimed slots up to LastSlot %v, want %d", len(seen), job.LastSlot, want)
	}
	t.Logf("%d slots claimed across kills", len(seen))
}
