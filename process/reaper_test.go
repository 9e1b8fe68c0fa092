package process

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReaperReapsOrphanOnExit starts a shell that leaves a background
// sleep behind. The sleep is re-parented to the test process, a child
// subreaper, and must be reaped once it exits, well before any periodic
// pass would run.
func TestReaperReapsOrphanOnExit(t *testing.T) {
	reaper, err := NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer reaper.Close()

	cmd := exec.Command("/bin/sh", "-c", "sleep 0.3 & echo $!")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := reaper.Start(cmd); err != nil {
		t.Fatalf("start shell: %v", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the orphan's pid: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	reaper.Untrack(cmd.Process.Pid)
	orphan, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("orphan pid %q: %v", line, err)
	}

	// kill 0 still succeeds on a zombie and fails only once it is reaped.
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := unix.Kill(orphan, 0)
		if errors.Is(err, unix.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d not reaped 3 s after the shell exited (zombie: %v)", orphan, isZombie(orphan))
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
