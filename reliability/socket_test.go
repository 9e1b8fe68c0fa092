package reliability

import (
	"os"
	"strings"
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
