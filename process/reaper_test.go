package process

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReaperReapsOrphanOnExit runs a shell that leaves a background
// sleep behind, outside its process group and without the run's marker,
// so that the run's cleanup leaves it alone. The sleep is re-parented to
// the test process, a child subreaper, and must be reaped once it exits,
// well before the periodic check would run.
func TestReaperReapsOrphanOnExit(t *testing.T) {
	reaper := newTestReaper(t)
	var got collect
	// The run waits until env has run sleep, whose environment no longer
	// holds the run's marker, so that the cleanup leaves it alone.
	spec := shell(t, `env -i setsid sleep 0.5 </dev/null >/dev/null 2>&1 & echo $!; sleep 0.1`)
	if _, err := reaper.Run(context.Background(), spec, got.emit); err != nil {
		t.Fatal(err)
	}
	out := got.texts("stdout")
	if len(out) != 1 {
		t.Fatalf("stdout lines = %q, want the orphan's pid", out)
	}
	orphan, err := strconv.Atoi(out[0])
	if err != nil {
		t.Fatalf("orphan pid %q: %v", out[0], err)
	}
	if !running(orphan) {
		t.Fatalf("orphan %d ended with the run, so the test shows nothing", orphan)
	}
	waitReaped(t, orphan, 3*time.Second)
}

// TestReaperFindsOrphansOfARunningChild checks the periodic check: an
// exec listener's child that runs on can leave orphans, which no run's
// end looks for.
func TestReaperFindsOrphansOfARunningChild(t *testing.T) {
	reaper := newTestReaperChecking(t, 200*time.Millisecond)
	orphan := make(chan int, 1)
	spec := shell(t, `sh -c 'sleep 0.3 </dev/null >/dev/null 2>&1 & echo $!'; sleep 3`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		reaper.Run(context.Background(), spec, func(line Line) {
			if pid, err := strconv.Atoi(line.Text); err == nil {
				orphan <- pid
			}
		})
	}()
	defer func() { <-done }()
	waitReaped(t, <-orphan, 2*time.Second)
}

// TestReaperKeepsWatchingAfterAnOrphan runs a child that, like an exec
// listener starting daemons, leaves a short-lived orphan every 50 ms.
// Once the check has seen one, the reaper must reap the next ones as they
// exit instead of letting zombies pile up until the following check.
func TestReaperKeepsWatchingAfterAnOrphan(t *testing.T) {
	reaper := newTestReaperChecking(t, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		spec := shell(t, `while :; do sh -c 'sleep 0.01 </dev/null >/dev/null 2>&1 &'; sleep 0.05; done`)
		spec.Grace = time.Second
		reaper.Run(ctx, spec, func(Line) {})
	}()
	defer func() {
		cancel()
		<-done
	}()

	time.Sleep(1500 * time.Millisecond)
	peak := 0
	for range 20 {
		zombies := 0
		for _, pid := range mainThreadChildren() {
			if isZombie(pid) {
				zombies++
			}
		}
		peak = max(peak, zombies)
		time.Sleep(50 * time.Millisecond)
	}
	if peak > 3 {
		t.Errorf("up to %d zombie orphans at once after the first check, want them reaped as they exit", peak)
	}
}

// waitReaped fails the test unless pid is gone, not just a zombie,
// within timeout. kill 0 succeeds on a zombie and fails once it is reaped.
func waitReaped(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Kill(pid, 0)
		if errors.Is(err, unix.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d not reaped %v after it was due to exit (zombie: %v)", pid, timeout, isZombie(pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunningChildrenLeavesOutExitedOnes(t *testing.T) {
	cmd := exec.Command("sleep", "0.3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	if !slices.Contains(runningChildren(), pid) || !HasChildren() {
		t.Errorf("running children %v while child %d runs, want it among them", runningChildren(), pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !isZombie(pid) {
		if time.Now().After(deadline) {
			t.Fatal("the child did not exit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if slices.Contains(runningChildren(), pid) {
		t.Errorf("running children %v include child %d, which exited and is not reaped", runningChildren(), pid)
	}
}
