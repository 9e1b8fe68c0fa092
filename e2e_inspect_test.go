package main

import (
	"os"
	"strings"
	"testing"
)

func TestInspectionCommands(t *testing.T) {
	p := newProject(t, `[jobs.report]
command = ["sh", "-c", "echo line one; echo line two; exit $(cat code 2>/dev/null || echo 0)"]
schedule = "30 2 * * *"
timezone = "America/New_York"
`)
	p.run("run-job", "report")
	writeFile(t, p.path("code"), "3")
	p.run("run-job", "report")

	res := p.run("runs", "report")
	if res.code != 0 || strings.Count(res.stdout, "manual") != 2 || !strings.Contains(res.stdout, "failed") {
		t.Errorf("runs = %d %q, want two manual runs, one failed", res.code, res.stdout)
	}
	res = p.run("logs", "report")
	if res.code != 0 || res.stdout != "line one\nline two\n" || !strings.Contains(res.stderr, "failed") {
		t.Errorf("logs = %d %q %q, want the newest run's output", res.code, res.stdout, res.stderr)
	}
	if res := p.run("logs", "report", "999"); res.code != 1 || !strings.Contains(res.stderr, "no run 999") {
		t.Errorf("logs of a missing run = %d %q", res.code, res.stderr)
	}
	res = p.run("status", "report")
	if res.code != exitFailure || !strings.Contains(res.stdout, "1 failing") || !strings.Contains(res.stdout, "failed (exit 3)") {
		t.Errorf("status report = %d %q", res.code, res.stdout)
	}
	// New York's next spring-forward change removes 02:30 for one day.
	res = p.run("next", "report", "-n", "120")
	if res.code != 0 || !strings.Contains(res.stdout, "moved by DST") {
		t.Errorf("next -n 120 = %d, want a slot moved by DST:\n%s", res.code, res.stdout)
	}
	res = p.run("next", "report", "-n", "1", "--down-since", "2020-01-01T00:00:00Z")
	if res.code != 0 || !strings.Contains(res.stdout, `catch_up = "once" runs 1 at start`) {
		t.Errorf("next --down-since = %d %q", res.code, res.stdout)
	}
}

func TestStatusFailsWithoutDaemon(t *testing.T) {
	p := newProject(t, "[jobs.report]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	for _, args := range [][]string{{"status"}, {"status", "report"}, {"status", "--json"}} {
		res := p.run(args...)
		if res.code != exitFailure {
			t.Errorf("%v without a daemon: exit %d, want %d", args, res.code, exitFailure)
		}
		if !strings.Contains(res.stdout, "report") {
			t.Errorf("%v without a daemon: stdout %q, want the job read from the store", args, res.stdout)
		}
		if !strings.Contains(res.stderr, "the daemon is not running") {
			t.Errorf("%v without a daemon: stderr %q, want the reason", args, res.stderr)
		}
	}
	if res := p.run("list"); res.code != exitOK {
		t.Errorf("list without a daemon: exit %d, want %d; stderr %q", res.code, exitOK, res.stderr)
	}

	d := p.startDaemon()
	defer d.stop()
	if res := p.run("status"); res.code != exitOK {
		t.Errorf("status with a daemon: exit %d, want %d; stderr %q", res.code, exitOK, res.stderr)
	}
}

func TestInspectionRejectsBadCounts(t *testing.T) {
	p := newProject(t, "[jobs.report]\ncommand = [\"true\"]\nschedule = \"30 2 * * *\"\n")
	for _, args := range [][]string{
		{"runs", "-n", "0", "report"},
		{"runs", "-n", "-3", "report"},
		{"next", "-n", "0", "report"},
		{"next", "-n", "-1", "report"},
	} {
		res := p.run(args...)
		if res.code != 2 || !strings.Contains(res.stderr, "invalid -n") {
			t.Errorf("%v = %d %q, want 2 and the invalid count", args, res.code, res.stderr)
		}
	}
	res := p.run("next", "report", "--down-since", "2999-01-01T00:00:00Z")
	if res.code != 2 || !strings.Contains(res.stderr, "in the future") {
		t.Errorf("next --down-since in the future = %d %q, want 2 and the reason", res.code, res.stderr)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
