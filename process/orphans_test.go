package process

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestKillMarkedStopsLeftovers(t *testing.T) {
	marked := exec.Command("sh", "-c", "sleep 300 & wait")
	marked.Env = []string{"AGENT_RUNNER_RUN_ID=orphan-42", "PATH=/usr/bin:/bin"}
	marked.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	other := exec.Command("sleep", "300")
	other.Env = []string{"AGENT_RUNNER_RUN_ID=orphan-4200"}
	for _, cmd := range []*exec.Cmd{marked, other} {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go cmd.Wait()
	}
	defer other.Process.Kill()
	time.Sleep(100 * time.Millisecond)

	n := KillMarked([]string{"AGENT_RUNNER_RUN_ID=orphan-42"}, time.Second)
	if n < 1 {
		t.Errorf("KillMarked found %d processes, want the marked shell and its child", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for unix.Kill(-marked.Process.Pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if groupHasLiveMember(marked.Process.Pid) {
		t.Errorf("the marked process group survived")
	}
	if unix.Kill(other.Process.Pid, 0) != nil {
		t.Errorf("a process with a longer run ID was killed too")
	}
}
