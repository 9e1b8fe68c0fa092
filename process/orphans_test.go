package process

import (
	"os"
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
	// The daemon starts new runs right after KillMarked, so the group
	// must be gone by the time it returns.
	if groupHasLiveMember(marked.Process.Pid) {
		t.Errorf("the marked process group still runs after KillMarked returned")
	}
	if unix.Kill(other.Process.Pid, 0) != nil {
		t.Errorf("a process with a longer run ID was killed too")
	}
}

// TestMarkerFoundDuringExec reads the environment of a process that
// replaces itself with execve over and over. A read inside execve returns
// an empty block, and a leftover caught there must still be recognised.
func TestMarkerFoundDuringExec(t *testing.T) {
	script := `exec sh -c "$0" "$0"`
	looping := exec.Command("sh", "-c", script, script)
	looping.Env = []string{"AGENT_RUNNER_RUN_ID=looping", "PATH=/usr/bin:/bin"}
	if err := looping.Start(); err != nil {
		t.Fatal(err)
	}
	defer looping.Wait()
	defer looping.Process.Kill()

	want := map[string]bool{"AGENT_RUNNER_RUN_ID=looping": true}
	reads, misses := 0, 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); reads++ {
		if !environHas(looping.Process.Pid, want) {
			misses++
		}
	}
	// A read retries for about 20 ms, so only a process preempted that
	// long inside execve can be missed; a loaded machine may see one.
	// Without the retries about one read in eleven missed.
	if misses*1000 > reads {
		t.Errorf("the marker was missed in %d of %d reads of a process that keeps calling execve", misses, reads)
	}
}

func TestEnvironSkipsKernelThreadsAndZombies(t *testing.T) {
	if canHaveEnviron(2) {
		t.Errorf("process 2, the kernel's thread starter, is taken for a user process")
	}
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	defer zombie.Wait()
	for !isZombie(zombie.Process.Pid) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if data := readEnviron(zombie.Process.Pid); len(data) != 0 {
		t.Errorf("a zombie's environment read as %q", data)
	}
	if canHaveEnviron(zombie.Process.Pid) {
		t.Errorf("a zombie is taken for a live user process")
	}
	if elapsed := time.Since(start); elapsed > 10*time.Millisecond {
		t.Errorf("reading a zombie's empty environment took %v; it should not be retried", elapsed)
	}
	if !canHaveEnviron(os.Getpid()) {
		t.Errorf("the test process is not taken for a user process")
	}
}
