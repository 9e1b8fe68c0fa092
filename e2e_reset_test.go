package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/state"
)

// tickJob runs every second and appends a line to ticks.
const tickJob = `[jobs.tick]
command = ["sh", "-c", "echo tick >> ticks"]
every = "1s"
working_dir = "."
`

// seedPositionAhead stores the state that a clock a year ahead leaves:
// the job first seen then, and a slot of that time claimed.
func seedPositionAhead(t *testing.T, p *project, name string) time.Time {
	t.Helper()
	dir := p.path("state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(filepath.Join(dir, "state.db"), state.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ahead := time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	if _, err := store.EnsureJob(name, ahead); err != nil {
		t.Fatal(err)
	}
	if err := store.Skip(name, ahead, state.TriggerSchedule, "claimed while the clock was ahead", ahead, ahead.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	return ahead
}

func (p *project) jobStatus(name string) (control.Status, int) {
	p.t.Helper()
	res := p.run("status", "--json", name)
	var status control.Status
	if err := json.Unmarshal([]byte(res.stdout), &status); err != nil || len(status.Jobs) != 1 {
		p.t.Fatalf("decode status --json %s output %q: %v", name, res.stdout, err)
	}
	return status, res.code
}

func TestResetThroughDaemon(t *testing.T) {
	port := freePort(t)
	p := newProject(t, tickJob)
	body, _ := os.ReadFile(p.config)
	os.WriteFile(p.config, []byte(strings.Replace(string(body), "[runner]\n", fmt.Sprintf("[runner]\nhttp = \"127.0.0.1:%d\"\n", port), 1)), 0o600)
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	seedPositionAhead(t, p, "tick")
	d := p.startDaemon()
	d.waitLog("run agent-runner reset tick")

	if code, report := get(t, healthz); code != http.StatusServiceUnavailable || !strings.Contains(report, "agent-runner reset tick") {
		t.Errorf("healthz before the reset = %d %s, want 503 naming the reset command", code, report)
	}

	status, _ := p.jobStatus("tick")
	if job := status.Jobs[0]; job.PositionAhead < 300*24*time.Hour || !job.Stale {
		t.Errorf("status --json before the reset: position_ahead %s, stale %v; want about a year and stale", job.PositionAhead, job.Stale)
	}
	res := p.run("status", "tick")
	if !strings.Contains(res.stdout, "tick runs no slot until the clock passes its position") || !strings.Contains(res.stdout, "agent-runner reset tick") {
		t.Errorf("status before the reset does not explain the position:\n%s", res.stdout)
	}
	res = p.run("doctor")
	if res.code != 1 || !strings.Contains(res.stdout, "PROBLEM  job tick: stored position") || !strings.Contains(res.stdout, "run agent-runner reset tick") {
		t.Errorf("doctor before the reset exited %d:\n%s", res.code, res.stdout)
	}
	if _, err := os.Stat(p.path("ticks")); err == nil {
		t.Fatal("tick ran while its position was a year ahead")
	}

	res = p.run("reset", "tick")
	if res.code != 0 || !strings.Contains(res.stdout, "tick: position") || !strings.Contains(res.stdout, "moved to the clock") {
		t.Fatalf("reset tick exited %d:\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	p.waitForFile("tick's first run after the reset", "ticks")
	d.waitLog("job position reset to the clock")

	runs := p.runsJSON("tick")
	var resetRecord, scheduled bool
	for _, run := range runs {
		switch {
		case run.Trigger == state.TriggerReset && run.Result == state.ResultSkipped:
			resetRecord = true
		case run.Trigger == state.TriggerSchedule && run.Result != state.ResultSkipped:
			scheduled = true
		case run.Trigger == state.TriggerCatchUp:
			t.Errorf("a run after the reset is a catch-up: %+v", run)
		}
	}
	if !resetRecord || !scheduled {
		t.Errorf("runs after the reset lack the reset record (%v) or a scheduled run (%v): %+v", resetRecord, scheduled, runs)
	}
	if code, report := get(t, healthz); code != http.StatusOK {
		t.Errorf("healthz after the reset = %d %s, want 200", code, report)
	}
	status, _ = p.jobStatus("tick")
	if job := status.Jobs[0]; job.PositionAhead != 0 || job.Stale {
		t.Errorf("status --json after the reset: position_ahead %s, stale %v; want 0 and not stale", job.PositionAhead, job.Stale)
	}

	// Right before a slot its early claim can put the position up to 1 s
	// ahead, which force does not move, so the hint may be left out.
	res = p.run("reset", "tick")
	if res.code != 0 || !strings.Contains(res.stdout, "nothing to do") || !(strings.Contains(res.stdout, "--force") || strings.Contains(res.stdout, "started early")) {
		t.Errorf("second reset tick exited %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = p.run("reset", "nosuch")
	if res.code != 1 || !strings.Contains(res.stderr, `unknown job "nosuch"`) {
		t.Errorf("reset nosuch exited %d: %s", res.code, res.stderr)
	}
	d.stop()
}

func TestResetAheadWithoutDaemon(t *testing.T) {
	p := newProject(t, tickJob+`
[jobs.fine]
command = ["true"]
every = "1h"

[jobs.paused]
command = ["true"]
every = "1h"
enabled = false
`)
	seedPositionAhead(t, p, "tick")
	seedPositionAhead(t, p, "paused")

	res := p.run("doctor")
	if res.code != 1 || !strings.Contains(res.stdout, "PROBLEM  job tick: stored position") {
		t.Errorf("doctor without a daemon exited %d:\n%s", res.code, res.stdout)
	}
	res = p.run("reset", "--ahead")
	// A disabled job is left alone, as status and doctor leave it out.
	if res.code != 0 || !strings.Contains(res.stdout, "tick: position") || strings.Contains(res.stdout, "fine") || strings.Contains(res.stdout, "paused") {
		t.Fatalf("reset --ahead exited %d:\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "the daemon is not running") {
		t.Errorf("reset --ahead without a daemon does not say so: %s", res.stderr)
	}
	res = p.run("reset", "--ahead")
	if res.code != 0 || !strings.Contains(res.stdout, "nothing to do") {
		t.Errorf("second reset --ahead exited %d: %s", res.code, res.stdout)
	}

	d := p.startDaemon()
	p.waitForFile("tick's first run after the start", "ticks")
	for _, run := range p.runsJSON("tick") {
		if run.Trigger == state.TriggerCatchUp {
			t.Errorf("the start after an offline reset caught up a slot: %+v", run)
		}
	}
	if strings.Contains(d.log(), "ahead of the clock") {
		t.Errorf("the daemon still warns of a position ahead after the reset:\n%s", d.log())
	}
	d.stop()
}

func TestResetUsageErrors(t *testing.T) {
	p := newProject(t, tickJob)
	for _, args := range [][]string{{"reset"}, {"reset", "tick", "extra"}, {"reset", "--ahead", "tick"}, {"reset", "--ahead", "--force"}} {
		if res := p.run(args...); res.code != 2 {
			t.Errorf("%v exited %d, want 2: %s", args, res.code, res.stderr)
		}
	}
}

func (p *project) runsJSON(name string) []state.Run {
	p.t.Helper()
	res := p.run("runs", "--json", name)
	var runs []state.Run
	if err := json.Unmarshal([]byte(res.stdout), &runs); err != nil {
		p.t.Fatalf("decode runs --json %s output %q: %v", name, res.stdout, err)
	}
	return runs
}

func TestResetCompletes(t *testing.T) {
	p := newProject(t, tickJob)
	if got := complete("bash", []string{"reset", "--config", p.config, "ti"}); len(got) != 1 || got[0] != "tick" {
		t.Errorf("completion of a job name after reset = %q, want tick", got)
	}
	got := strings.Join(complete("bash", []string{"reset", "--"}), " ")
	for _, flag := range []string{"--ahead", "--force"} {
		if !strings.Contains(got, flag) {
			t.Errorf("completion of reset's flags %q lacks %s", got, flag)
		}
	}
}

// A job added to the file but not yet reloaded is unknown to the daemon,
// and the error must name the command that applies the file.
func TestResetJobNotYetReloaded(t *testing.T) {
	p := newProject(t, tickJob)
	d := p.startDaemon()
	defer d.stop()
	p.write(tickJob + `
[jobs.added]
command = ["true"]
every = "1h"
`)

	res := p.run("reset", "added")
	if res.code != 1 {
		t.Errorf("reset of a job the daemon lacks exited %d, want 1", res.code)
	}
	if !strings.Contains(res.stderr, "apply it with agent-runner reload") {
		t.Errorf("reset of a job the daemon lacks does not name reload:\n%s", res.stderr)
	}
}
