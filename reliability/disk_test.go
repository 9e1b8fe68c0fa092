package reliability

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
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
// none is left running, and no slot ran twice.
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
	for _, run := range runs {
		if run.Result != state.ResultOK {
			t.Errorf("run %s of slot %s has result %q, want ok", run.ID, run.Slot.Format(time.RFC3339), run.Result)
		}
	}
}
