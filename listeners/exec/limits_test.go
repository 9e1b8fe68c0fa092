package exec

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// An exec listener's child gets the listener's umask, file limit and,
// when the test runs as root, its user with that user's HOME.
func TestExecChildLimits(t *testing.T) {
	dir, err := os.MkdirTemp("", "exec-limits")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out")
	script := "{ id -u; umask; ulimit -n; echo \"$HOME\"; } > " + out
	cfg := &config.Listener{
		Name: "svc", Kind: config.KindExec, WorkingDir: "/",
		Exec: &config.Exec{
			Command: []string{"sh", "-c", script},
			Limits:  config.Limits{Umask: 0o077, UmaskSet: true, NoFile: 55},
		},
	}
	wantUID, wantHome := strconv.Itoa(os.Geteuid()), os.Getenv("HOME")
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skipf("no user nobody: %v", err)
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		cfg.Exec.Identity = config.Identity{Set: true, User: "nobody", Home: nobody.HomeDir, UID: uint32(uid), GID: uint32(gid), Groups: []uint32{uint32(gid)}}
		wantUID, wantHome = nobody.Uid, nobody.HomeDir
	}

	l, err := New(cfg, testReaper, "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	err = wait(t, runAsync(l, context.Background(), &fakeHost{}))
	if err == nil || !strings.Contains(err.Error(), "status 0") {
		t.Fatalf("Run returned %v, want the child's exit with status 0", err)
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the child wrote no output: %v", err)
	}
	want := strings.Join([]string{wantUID, "0077", "55", wantHome}, "\n") + "\n"
	if string(data) != want {
		t.Errorf("child printed %q, want %q", data, want)
	}
}
