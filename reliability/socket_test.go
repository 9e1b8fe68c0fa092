package reliability

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/reliability/harness"
)

// TestRunJobRightAfterStateDirDeleted runs run-job at once after `rm -rf
// state`, before the daemon's next state check recreates the control
// socket. The job's lock file went with the folder, so an in-process run
// would overlap the daemon's runs of the job.
//
// Held: run-job waits for the recreated socket and runs the job through
// the daemon.
func TestRunJobRightAfterStateDirDeleted(t *testing.T) {
	p := newProject(t, "", `[jobs.long]
command = ["sh", "-c", "echo start $AGENT_RUNNER_TRIGGER >> runs; sleep 1; echo end $AGENT_RUNNER_TRIGGER >> runs"]
schedule = "0 0 1 1 *"
`)
	d := startDaemon(t, p)
	if res := p.Run(30*time.Second, "run-job", "long"); res.Code != 0 {
		t.Fatalf("run-job before the deletion: exit %d: %s", res.Code, res.Stderr)
	}
	ranBefore := strings.Count(d.Log(), "trigger=manual")
	if err := os.RemoveAll(p.Path("state")); err != nil {
		t.Fatal(err)
	}
	res := p.Run(30*time.Second, "run-job", "long")
	t.Logf("run-job after the deletion: exit %d in %s", res.Code, res.Duration.Round(time.Millisecond))
	if res.Code != 0 {
		t.Errorf("run-job after the deletion: exit %d: %s", res.Code, res.Stderr)
	}
	if strings.Count(d.Log(), "trigger=manual") == ranBefore {
		t.Errorf("run-job after the deletion did not run through the daemon:\n%s", harness.Tail(d.Log(), 20))
	}
}

// TestSocketGroupDefaultSocket sets socket_group with the socket in its
// default place, the state folder, and runs the CLI as a member of the
// group (uid 65534, primary group 65534 "nogroup").
//
// Held: the daemon gives the state folder mode 0750 and the group, the
// member is served, the store stays 0600, and doctor says the group can
// reach the socket. With the socket in a 0700 folder of its own, doctor
// reports that the group cannot.
func TestSocketGroupDefaultSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the CLI as uid 65534, which needs root")
	}
	p := newProject(t, `socket_group = "nogroup"`, "[jobs.hello]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	startDaemon(t, p)
	info, err := os.Stat(p.Path("state"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o750 {
		t.Errorf("state folder mode = %04o, want 0750", got)
	}
	if gid := info.Sys().(*syscall.Stat_t).Gid; gid != 65534 {
		t.Errorf("state folder group = %d, want 65534", gid)
	}
	if store, err := os.Stat(p.Path("state/state.db")); err != nil || store.Mode().Perm() != 0o600 {
		t.Errorf("state.db = %v, %v, want mode 0600", store, err)
	}
	member := &harness.Project{Binary: p.Binary, Dir: p.Dir, Config: p.Config, Credential: nobody}
	status, res, err := member.Status(30 * time.Second)
	if err != nil || status.Daemon == nil {
		t.Errorf("list as a socket_group member: %v (%s)", err, res.Stderr)
	}
	doctor := p.Run(30*time.Second, "doctor")
	if !strings.Contains(doctor.Stdout, "members of socket_group nogroup can reach the control socket") {
		t.Errorf("doctor does not confirm the group's access:\n%s", doctor.Stdout)
	}

	hidden := newProject(t, "socket = \"sock/control.sock\"\nsocket_group = \"nogroup\"", "")
	if err := os.Mkdir(hidden.Path("sock"), 0o700); err != nil {
		t.Fatal(err)
	}
	doctor = hidden.Run(30*time.Second, "doctor")
	if !strings.Contains(doctor.Stdout, "cannot reach the control socket") || doctor.Code == 0 {
		t.Errorf("doctor with the socket in a 0700 folder = exit %d:\n%s", doctor.Code, doctor.Stdout)
	}
}
