package main

import (
	"strings"
	"testing"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
)

// TestDoctorReportsDaemonStateError checks that a state folder the
// daemon cannot write, such as on a full disk, is a doctor problem and
// not only a word in the daemon's summary line.
func TestDoctorReportsDaemonStateError(t *testing.T) {
	var out strings.Builder
	d := &doctor{out: &out}
	cfg := &config.Config{Runner: config.Runner{Socket: "/run/agent-runner/control.sock"}}
	status := control.Status{Daemon: &control.DaemonInfo{
		StateError: "state store /var/lib/agent-runner/state.db does not accept writes: no space left on device",
	}}

	d.checkDaemon(cfg, status, nil)
	if d.problems != 1 {
		t.Errorf("doctor counted %d problems, want 1:\n%s", d.problems, out.String())
	}
	if !strings.Contains(out.String(), "PROBLEM  the daemon's state folder is failing: state store") {
		t.Errorf("doctor output does not name the state folder problem:\n%s", out.String())
	}
}
