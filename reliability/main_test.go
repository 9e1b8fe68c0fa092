// Package reliability drives the real agent-runner binary through faults
// and access checks. The faults are a read-only or deleted state folder,
// jobs that resist stopping, output and event floods, and peers that
// stall or send garbage. The access checks cover the control socket's
// permissions and every place a secret could leak to. The crash and soak
// programs live in cmd/crash and cmd/soak.
package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/reliability/harness"
)

// binary is the agent-runner built once for the package.
var binary string

// root is a 0755 folder for the tests' projects, so that a process
// running as the unprivileged uid 65534 can reach them.
var root string

// nobody is uid and gid 65534, the user and group that Debian names
// "nobody" and "nogroup".
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "arrel")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root = dir
	binary = filepath.Join(dir, "agent-runner")
	if err := harness.Build(binary); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runnerTable is the [runner] table of every test config: state and
// socket inside the project, short stop timeouts. newProject adds
// kill_grace = "1s" unless the test sets its own.
const runnerTable = `[runner]
state_dir = "state"
shutdown_timeout = "5s"
`

// newProject writes a config of runnerTable (with extraRunner keys added
// to it) and body into a fresh folder under root.
func newProject(t *testing.T, extraRunner, body string) *harness.Project {
	t.Helper()
	// A short name keeps the socket path under the 108 bytes of
	// sockaddr_un.
	dir, err := os.MkdirTemp(root, "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(extraRunner, "kill_grace") {
		extraRunner += "\nkill_grace = \"1s\""
	}
	p, err := harness.NewProject(binary, dir, runnerTable+extraRunner+"\n"+body)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// launchDaemon starts the daemon and kills it at the end of the test. On
// failure the test's output gets the daemon log.
func launchDaemon(t *testing.T, p *harness.Project) *harness.Daemon {
	t.Helper()
	d, err := p.StartDaemon()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !d.Exited() {
			d.Kill()
		}
		if t.Failed() {
			t.Logf("daemon log tail:\n%s", harness.Tail(d.Log(), 40))
		}
	})
	return d
}

// startDaemon starts the daemon, waits for its scheduler, and kills it at
// the end of the test. On failure the test's output gets the daemon log.
func startDaemon(t *testing.T, p *harness.Project) *harness.Daemon {
	t.Helper()
	d := launchDaemon(t, p)
	if err := d.WaitLog("scheduler started", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

// waitFor fails the test when cond does not hold within timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !harness.WaitFor(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// chownTree gives a folder and everything in it to uid and gid.
func chownTree(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// slots returns the first field of every line of path, and fails the test
// when one repeats.
func uniqueSlots(t *testing.T, path string) []string {
	t.Helper()
	seen := map[string]bool{}
	var slots []string
	for _, line := range harness.Lines(path) {
		slot := strings.Fields(line)[0]
		if seen[slot] {
			t.Errorf("slot %s ran twice (%s)", slot, path)
		}
		seen[slot] = true
		slots = append(slots, slot)
	}
	return slots
}

// vmHWM returns the daemon's peak resident set in KiB.
func vmHWM(t *testing.T, d *harness.Daemon) int {
	t.Helper()
	s, err := harness.SampleProc(d.Pid())
	if err != nil {
		t.Fatalf("read /proc of the daemon: %v", err)
	}
	return s.HWMKiB
}
