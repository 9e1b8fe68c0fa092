package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/state"
)

// killerJobs runs first every second, and after its success the chained
// job killer, which sends SIGKILL to the daemon, its parent. The kill
// comes milliseconds after killer's claim and first's finish reached the
// claim log, long before the commit that follows a claim by a second.
// Killer's own yearly slot never comes during the test.
const killerJobs = `[jobs.first]
command = ["sh", "-c", "echo first"]
schedule = "* * * * * *"
on_success = ["killer"]

[jobs.killer]
command = ["sh", "-c", "kill -KILL $PPID"]
schedule = "0 0 1 1 *"
`

// Without a daemon, list, status and runs show the runs that only the claim log
// contains after the daemon was killed, as the next start replays them.
func TestOfflineReadsShowClaimLog(t *testing.T) {
	p := newProject(t, killerJobs)
	d := p.startProcess()
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the chained job did not kill the daemon within 15s")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != -1 {
		t.Fatalf("daemon exit status %d, want killed by SIGKILL", code)
	}
	header := make([]byte, 16)
	logFile, err := os.Open(p.path("state/state.db-claimlog"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = logFile.Read(header)
	logFile.Close()
	if err != nil || string(header) == string(make([]byte, 16)) {
		t.Fatalf("claim log is empty after the kill (read error %v), so a commit took the runs and the test checks nothing", err)
	}

	status := p.list()
	if first := status["first"]; first.LastResult != state.ResultOK || first.LastSlot.IsZero() {
		t.Errorf("offline list shows first with last result %q and last slot %v, want ok and a slot", first.LastResult, first.LastSlot)
	}
	// Offline, list shows a job as running only while its run lock is
	// held, so the claim shows as the last start.
	if killer := status["killer"]; killer.LastStart.IsZero() {
		t.Error("offline list shows no last start of killer, want its claim's")
	}
	res := p.run("status", "--json", "first")
	var only control.Status
	if err := json.Unmarshal([]byte(res.stdout), &only); err != nil || len(only.Jobs) != 1 {
		t.Fatalf("offline status --json first: %v, exit %d: %s%s", err, res.code, res.stdout, res.stderr)
	}
	if got := only.Jobs[0].LastResult; got != state.ResultOK {
		t.Errorf("offline status shows first with last result %q, want ok", got)
	}
	for job, want := range map[string]string{"first": state.ResultOK, "killer": state.ResultRunning} {
		runs := offlineRunsJSON(t, p, job)
		if len(runs) != 1 {
			t.Errorf("offline runs %s returned %d runs, want 1", job, len(runs))
			continue
		}
		if runs[0].Result != want {
			t.Errorf("offline runs %s shows result %q, want %q", job, runs[0].Result, want)
		}
	}
}

// offlineRunsJSON returns the output of runs --json for job.
func offlineRunsJSON(t *testing.T, p *project, job string) []state.Run {
	t.Helper()
	res := p.run("runs", "--json", job)
	if res.code != 0 {
		t.Fatalf("runs --json %s exit %d: %s", job, res.code, res.stderr)
	}
	var runs []state.Run
	if err := json.Unmarshal([]byte(res.stdout), &runs); err != nil {
		t.Fatalf("decode runs output %q: %v", res.stdout, err)
	}
	return runs
}
