package reliability

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/reliability/harness"
	"github.com/agent-runner/agent-runner/state"
)

// bigOutputJob appends each slot to ticks and prints a 60 KB line, so
// that its finishes fill the 1 MiB claim log within about 20 runs.
const bigOutputJob = `[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> ticks; head -c 60000 /dev/zero | tr '\\0' x; echo"]
every = "1s"
`

// mountStateTmpfs mounts a tmpfs of size bytes at the project's state
// folder and unmounts it at cleanup.
func mountStateTmpfs(t *testing.T, p *harness.Project, size int) string {
	t.Helper()
	dir := p.Path("state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillFileSystem writes zeros to path until the file system is full.
func fillFileSystem(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

// TestStateDirFull fills the state folder's file system under a running
// daemon whose job prints 60 KB a run, then frees it.
//
// Held: /healthz turns 503 with a state_dir problem within a few seconds
// of the first failed commit, not at the next 30 s write probe. Runs stop
// once the claim log is full, and list shows the last one that ran. Once space is freed, the daemon recovers
// without a restart. After a stop every run that ran is stored as ok,
// except the newest when the stop interrupted it, none is left running,
// and no slot ran twice.
func TestStateDirFull(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about a minute")
	}
	if os.Getuid() != 0 {
		t.Skip("mounts a tmpfs, which needs root")
	}
	port := freePort(t)
	p := newProject(t, fmt.Sprintf("http = \"127.0.0.1:%d\"", port), bigOutputJob)
	stateDir := mountStateTmpfs(t, p, 8<<20)

	d := startDaemon(t, p)
	// The first check of the state folder writes its probe 5 s after the
	// start, and the next one 30 s later.
	waitFor(t, "the first state check", 10*time.Second, func() bool { return ticks(p) >= 7 })
	if code, body := getHealth(t, port); code != http.StatusOK {
		t.Fatalf("/healthz before the disk filled: %d %s", code, body)
	}

	filler := stateDir + "/filler"
	fillFileSystem(t, filler)
	filled := time.Now()
	waitFor(t, "/healthz to report the full state folder", 15*time.Second, func() bool {
		code, body := getHealth(t, port)
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"state_dir"`)
	})
	t.Logf("/healthz turned 503 %s after the disk filled", time.Since(filled).Round(100*time.Millisecond))

	// The claim log fills with finishes, then claims fail and runs stop.
	var stopped int
	waitFor(t, "runs to stop", 40*time.Second, func() bool {
		before := ticks(p)
		time.Sleep(3 * time.Second)
		stopped = ticks(p)
		return stopped == before
	})
	if d.Exited() {
		t.Fatalf("the daemon exited (status %d) on a full disk", d.ExitCode())
	}
	// list reads the claims and finishes that no commit took.
	lines := harness.Lines(p.Path("ticks"))
	lastSlot := strings.Fields(lines[len(lines)-1])[0]
	status, res, err := p.Status(30 * time.Second)
	if err != nil {
		t.Fatalf("list --json on a full disk: %v: %s", err, res.Stderr)
	}
	for _, job := range status.Jobs {
		if got := job.LastSlot.UTC().Format(time.RFC3339); job.Name == "tick" && got != lastSlot {
			t.Errorf("list --json on a full disk shows last slot %s, want %s, the last that ran", got, lastSlot)
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ticks after space was freed", 15*time.Second, func() bool { return ticks(p) >= stopped+2 })
	waitFor(t, "/healthz after space was freed", 15*time.Second, func() bool {
		code, _ := getHealth(t, port)
		return code == http.StatusOK
	})
	if err := d.Stop(15 * time.Second); err != nil {
		t.Errorf("stop after space was freed: %v", err)
	}

	slots := uniqueSlots(t, p.Path("ticks"))
	res = p.Run(30*time.Second, "runs", "--json", "-n", "1000", "tick")
	var runs []state.Run
	if err := json.Unmarshal([]byte(res.Stdout), &runs); err != nil {
		t.Fatalf("runs --json: %v: %s", err, res.Stderr)
	}
	if len(runs) < min(len(slots), 50) {
		t.Errorf("%d runs stored for %d slots that ran", len(runs), len(slots))
	}
	checkRunsOK(t, runs)
}

// stopReason is the error of a run that the daemon's stop interrupted.
const stopReason = "agent-runner shut down during the run"

// checkRunsOK fails the test unless every run's result is ok. The newest
// run may be interrupted instead, because SIGTERM can arrive during a run,
// and the daemon then stops that run and records it as interrupted. Runs of
// one job never overlap, so the stop can cut no other run. The test waits
// for two runs after space was freed, so every run of the full disk is
// older than the newest and is still checked.
func checkRunsOK(t *testing.T, runs []state.Run) {
	t.Helper()
	newest, newestID := -1, uint64(0)
	for i, run := range runs {
		id, err := strconv.ParseUint(run.ID, 10, 64)
		if err != nil {
			t.Fatalf("run ID %q is not a decimal number: %v", run.ID, err)
		}
		// IDs come from one sequence, so the largest was claimed last.
		if newest < 0 || id > newestID {
			newest, newestID = i, id
		}
	}
	for i, run := range runs {
		if i == newest && run.Result == state.ResultInterrupted && run.Error == stopReason {
			t.Logf("the stop interrupted run %s of slot %s", run.ID, run.Slot.Format(time.RFC3339))
			continue
		}
		if run.Result != state.ResultOK {
			t.Errorf("run %s of slot %s has result %q (error %q), want ok", run.ID, run.Slot.Format(time.RFC3339), run.Result, run.Error)
		}
	}
}

// TestStartOnFullDiskStopsLeftovers kills the daemon from inside a job,
// right after the job's claim reached the claim log, fills the state
// folder's file system and starts the daemon again.
//
// Held: the start, which cannot replay the claim log into the store,
// still stops the killed daemon's job, and fails with an error that
// names the full file system and the fix. After space is freed, a start
// marks the run interrupted.
func TestStartOnFullDiskStopsLeftovers(t *testing.T) {
	p, stateDir, pid := killedDaemonLeftover(t)
	filler := stateDir + "/filler"
	fillFileSystem(t, filler)
	second := startAndWaitExit(t, p, "the start on a full disk to fail")
	if second.ExitCode() == 0 {
		t.Errorf("start on a full disk exited 0, want a failure")
	}
	if !strings.Contains(second.Log(), "is full") || !strings.Contains(second.Log(), "free space") {
		t.Errorf("start on a full disk did not say that the file system is full and what to do:\n%s", second.Log())
	}
	if harness.Alive(pid, "") {
		t.Errorf("the killed daemon's job %d still runs after a start on a full disk", pid)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	third := startDaemon(t, p)
	if err := third.WaitLog("run was interrupted by a previous stop", 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A run-job without a daemon on a full disk cannot record its run, and
// still stops what the killed daemon left running, as a start does.
func TestRunJobOnFullDiskStopsLeftovers(t *testing.T) {
	p, stateDir, pid := killedDaemonLeftover(t)
	fillFileSystem(t, stateDir+"/filler")
	res := p.Run(30*time.Second, "run-job", "leftover")
	if res.Code != 125 {
		t.Errorf("run-job on a full disk exited %d, want 125:\n%s", res.Code, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "is full, so run-job cannot record the run: free space there") {
		t.Errorf("run-job on a full disk did not say that the file system is full and what to do:\n%s", res.Stderr)
	}
	if harness.Alive(pid, "") {
		t.Errorf("the killed daemon's job %d still runs after a run-job on a full disk", pid)
	}
}

// The claim log of the killed daemon makes the offline reset's open
// write to the store, which the full disk fails.
func TestResetOnFullDiskNamesFix(t *testing.T) {
	p, stateDir, _ := killedDaemonLeftover(t)
	fillFileSystem(t, stateDir+"/filler")
	res := p.Run(30*time.Second, "reset", "--force", "leftover")
	if res.Code != 1 {
		t.Errorf("reset on a full disk exited %d, want 1:\n%s", res.Code, res.Stderr)
	}
	if !strings.Contains(res.Stderr, "is full, so reset cannot change the store: free space there") {
		t.Errorf("reset on a full disk did not say that the file system is full and what to do:\n%s", res.Stderr)
	}
}

// killedDaemonLeftover starts a daemon on an 8 MiB tmpfs state folder
// whose job kills the daemon right after its claim and goes on running.
// It returns the project, the state folder and the job's PID, once the
// claim is only in the claim log. It skips without root.
func killedDaemonLeftover(t *testing.T) (*harness.Project, string, int) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("mounts a tmpfs, which needs root")
	}
	p := newProject(t, "", `[jobs.leftover]
command = ["sh", "-c", "echo $$ >> leftover.pids; kill -KILL $PPID; exec sleep 300"]
schedule = "* * * * * *"
`)
	t.Cleanup(func() {
		for _, line := range harness.Lines(p.Path("leftover.pids")) {
			if pid, err := strconv.Atoi(line); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	stateDir := mountStateTmpfs(t, p, 8<<20)

	first := startAndWaitExit(t, p, "the job to kill the daemon")
	if first.ExitCode() != -1 {
		t.Fatalf("daemon exit status %d, want killed by SIGKILL", first.ExitCode())
	}
	pid, err := strconv.Atoi(harness.Lines(p.Path("leftover.pids"))[0])
	if err != nil {
		t.Fatal(err)
	}
	if claimLogEmpty(t, stateDir) {
		t.Fatal("claim log is empty after the kill, so a commit took the claim and the test checks nothing")
	}
	return p, stateDir, pid
}

// startAndWaitExit starts the daemon and waits up to 30 s for it to exit.
func startAndWaitExit(t *testing.T, p *harness.Project, event string) *harness.Daemon {
	t.Helper()
	d := launchDaemon(t, p)
	select {
	case <-d.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out after 30s waiting for %s", event)
	}
	return d
}

// claimLogEmpty reports whether the claim log's first record header is
// the end marker, all zeros.
func claimLogEmpty(t *testing.T, stateDir string) bool {
	t.Helper()
	file, err := os.Open(stateDir + "/state.db-claimlog")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	header := make([]byte, 16)
	if _, err := io.ReadFull(file, header); err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(header, make([]byte, 16))
}

// A start on a state folder whose file system was remounted read-only,
// as ext4 does after an error, stops what the killed daemon left
// running, and its error names the fix.
func TestStartOnReadOnlyFileSystemStopsLeftovers(t *testing.T) {
	p, stateDir, pid := killedDaemonLeftover(t)
	if err := syscall.Mount("", stateDir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("remount the state folder read-only: %v", err)
	}
	t.Cleanup(func() { syscall.Mount("", stateDir, "", syscall.MS_REMOUNT, "") })

	second := startAndWaitExit(t, p, "the start on a read-only file system to fail")
	if second.ExitCode() == 0 {
		t.Errorf("start on a read-only file system exited 0, want a failure")
	}
	if !strings.Contains(second.Log(), "is read-only") {
		t.Errorf("start on a read-only file system did not say so and what to do:\n%s", second.Log())
	}
	if harness.Alive(pid, "") {
		t.Errorf("the killed daemon's job %d still runs after a start on a read-only file system", pid)
	}
}
