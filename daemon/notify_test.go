package daemon

import (
	"testing"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
)

func TestSummaryCounts(t *testing.T) {
	one := control.Status{Jobs: make([]jobs.JobStatus, 1)}
	if got, want := Summary(one), "1 job (0 running, 0 failing), 0 listeners (0 connected, 0 failing)"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	failing := control.Status{Daemon: &control.DaemonInfo{StateError: "state store was deleted"}}
	if got, want := Summary(failing), "0 jobs (0 running, 0 failing), 0 listeners (0 connected, 0 failing); state folder failing"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func TestSummaryCountsStale(t *testing.T) {
	status := control.Status{
		Jobs: []jobs.JobStatus{{Stale: true}, {}},
		Listeners: []listeners.Health{
			{State: listeners.StateRunning, Stale: true},
			{State: listeners.StateRunning, Stale: true},
		},
	}
	want := "2 jobs (0 running, 0 failing), 2 listeners (2 connected, 0 failing); 1 job stale; 2 listeners stale"
	if got := Summary(status); got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}
