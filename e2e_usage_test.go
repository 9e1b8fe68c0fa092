package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestConfigBeforeTheCommand(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	for _, args := range [][]string{
		{"--config", p.config, "check"},
		{"--config=" + p.config, "check"},
		{"-config", p.config, "next", "fine"},
	} {
		res := runBinary(t, args...)
		if res.code != 0 {
			t.Errorf("agent-runner %v = %d: %s", args, res.code, res.stderr)
		}
	}
}

func TestMissingConfigNamesThePath(t *testing.T) {
	for _, cmd := range []string{"list", "status", "reload", "check"} {
		res := runBinary(t, cmd)
		if res.code != exitFailure || !strings.Contains(res.stderr, "no config file at ") || !strings.Contains(res.stderr, "--config") {
			t.Errorf("%s without a config = %d: %s", cmd, res.code, res.stderr)
		}
		if strings.Contains(res.stderr, "has problems") || strings.Contains(res.stderr, "control.sock") {
			t.Errorf("%s without a config blames something else: %s", cmd, res.stderr)
		}
	}
}

func TestNoDaemonHintHowToStart(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	for _, args := range [][]string{{"reload"}, {"send", "chat", "hello"}} {
		res := p.run(args...)
		if res.code != exitFailure {
			t.Errorf("%v without a daemon = %d, want %d", args, res.code, exitFailure)
		}
		if !strings.Contains(res.stderr, "start the daemon with agent-runner run") {
			t.Errorf("%v without a daemon does not say how to start it: %s", args, res.stderr)
		}
	}
}

func TestSecondRunRefusesAtOnce(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	d := p.startDaemon()
	defer d.stop()
	res := p.run("run")
	if res.code != exitFailure || !strings.Contains(res.stderr, "a daemon already runs this config") {
		t.Errorf("second run = %d: %s", res.code, res.stderr)
	}
}

// A copy of the config beside it shares its state_dir, so the message
// names the file that the running daemon loaded.
func TestSecondRunNamesOtherConfig(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	d := p.startDaemon()
	defer d.stop()
	data, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	copyOfConfig := &project{t: t, dir: p.dir, config: p.path("copy.toml")}
	if err := os.WriteFile(copyOfConfig.config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	res := copyOfConfig.run("run")
	if res.code != exitFailure {
		t.Errorf("run of the copy = %d, want %d", res.code, exitFailure)
	}
	want := "a daemon of " + p.config + " already uses the same state_dir"
	if !strings.Contains(res.stderr, want) {
		t.Errorf("run of the copy lacks %q:\n%s", want, res.stderr)
	}
}

func TestNextRejectsDownSinceBeforePrinting(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("next", "--down-since", "20:00", "fine")
	if res.code != exitUsage || res.stdout != "" {
		t.Errorf("next --down-since 20:00 = %d, stdout %q", res.code, res.stdout)
	}
}

// A date and time without a zone is the usual mistake, and the hint must
// name the zone as the missing part.
func TestNextDownSinceWithoutZoneNamesZone(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("next", "--down-since", "2026-12-06T02:00:00", "fine")
	want := "add the time zone: Z for UTC or an offset, such as 2026-12-06T02:00:00Z"
	if res.code != exitUsage || !strings.Contains(res.stderr, want) {
		t.Errorf("next --down-since without a zone = %d %q, want %d and %q", res.code, res.stderr, exitUsage, want)
	}
}

func TestInstallUnitUser(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("install-unit", "--user", "nobody")
	if res.code != 0 || !strings.Contains(res.stdout, "\nUser=nobody\n") {
		t.Errorf("install-unit --user nobody = %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = p.run("install-unit", "--user", "no-such-user-xyz")
	if res.code != exitFailure || !strings.Contains(res.stderr, "useradd") {
		t.Errorf("install-unit --user no-such-user-xyz = %d: %s", res.code, res.stderr)
	}
}

func TestExtraArgumentsExitWithUsage(t *testing.T) {
	p := newProject(t, "[jobs.collect]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	// Each command line ends with the word the command must reject.
	withConfig := map[string][]string{
		"run":          {"run", "extra"},
		"check":        {"check", "extra"},
		"list":         {"list", "collect"},
		"status":       {"status", "collect", "extra"},
		"runs":         {"runs", "collect", "extra"},
		"logs":         {"logs", "collect", "1", "extra"},
		"next":         {"next", "collect", "extra"},
		"reload":       {"reload", "extra"},
		"reset":        {"reset", "collect", "extra"},
		"doctor":       {"doctor", "extra"},
		"install-unit": {"install-unit", "agent-runner"},
	}
	withoutConfig := map[string][]string{
		"completion": {"completion", "bash", "extra"},
		"version":    {"version", "extra"},
		"help":       {"help", "list", "extra"},
	}
	// send takes any number of words as its text, and run-job exits 125
	// on every failure to start the job, a wrong argument count included.
	unbounded := map[string]bool{"send": true, "run-job": true}
	for _, doc := range commands {
		if doc.hidden || unbounded[doc.name] {
			continue
		}
		args, ok := withConfig[doc.name]
		if !ok {
			args, ok = withoutConfig[doc.name]
		}
		if !ok {
			t.Errorf("%s: no command line with an extra argument in this test", doc.name)
			continue
		}
		var res result
		if _, needsConfig := withConfig[doc.name]; needsConfig {
			res = runWithin(t, p.command(args...), 10*time.Second)
		} else {
			res = runBinary(t, args...)
		}
		extra := args[len(args)-1]
		if res.code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %q", args, res.code, exitUsage, res.stderr)
		}
		if res.stdout != "" {
			t.Errorf("%v: stdout %q, want none", args, res.stdout)
		}
		if want := `unexpected argument "` + extra + `": ` + doc.name + " takes "; !strings.Contains(res.stderr, want) {
			t.Errorf("%v: stderr lacks %q:\n%s", args, want, res.stderr)
		}
		if want := "Usage: agent-runner " + doc.name; !strings.Contains(res.stderr, want) {
			t.Errorf("%v: stderr lacks %q:\n%s", args, want, res.stderr)
		}
	}

	res := p.run("run-job", "collect", "extra")
	if res.code != exitCannotRun || !strings.Contains(res.stderr, `unexpected argument "extra": run-job takes one job name`) {
		t.Errorf("run-job with an extra argument = %d %q, want %d naming the argument", res.code, res.stderr, exitCannotRun)
	}
}

// runWithin runs cmd and kills it after timeout, so that a command that
// ignores its arguments and starts serving fails a test instead of
// hanging it. A killed command has exit status -1.
func runWithin(t *testing.T, cmd *exec.Cmd, timeout time.Duration) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func TestLogFormatErrorsExitStatus(t *testing.T) {
	p := newProject(t, "[jobs.tick]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	if res := p.run("run", "--log-format", "xml"); res.code != exitUsage {
		t.Errorf("run --log-format xml = %d %q, want %d", res.code, res.stderr, exitUsage)
	}
	if _, err := os.Stat("/run/systemd/journal/socket"); err == nil {
		t.Skip("this machine has a journal, so --log-format journal works")
	}
	res := runWithin(t, p.command("run", "--log-format", "journal"), 10*time.Second)
	if res.code != exitFailure || !strings.Contains(res.stderr, "connect to journald") {
		t.Errorf("run --log-format journal without a journal = %d %q, want %d and the reason", res.code, res.stderr, exitFailure)
	}
	if !strings.Contains(res.stderr, "use --log-format text or auto") {
		t.Errorf("run --log-format journal without a journal = %q, want the other formats to use", res.stderr)
	}
}

func TestStatusUnknownNameListsNames(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("status", "nosuch")
	if res.code != exitFailure {
		t.Errorf("status nosuch = %d, want %d", res.code, exitFailure)
	}
	if want := `no job or listener is named "nosuch"; jobs: fine; listeners: none`; !strings.Contains(res.stderr, want) {
		t.Errorf("status nosuch lacks %q:\n%s", want, res.stderr)
	}
}

func TestRejectedReloadShowsEveryProblem(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	d := p.startDaemon()
	defer d.stop()
	p.write("[jobs.fine]\ncommand = [\"true\"]\nevery = \"soon\"\n\n[jobs.other]\ncommand = [\"true\"]\nevery = \"later\"\n")

	res := p.run("reload")
	if res.code != exitFailure {
		t.Fatalf("reload of an invalid file = %d, want %d: %s", res.code, exitFailure, res.stderr)
	}
	if !strings.Contains(res.stderr, "\n  "+p.config+":") || !strings.Contains(res.stderr, "jobs.other.every") {
		t.Errorf("reload does not indent the second problem under the first: %q", res.stderr)
	}

	res = p.run("status")
	if !strings.Contains(res.stdout, "jobs.fine.every") {
		t.Errorf("status does not show the first problem: %q", res.stdout)
	}
	if !strings.Contains(res.stdout, "and 1 more problem: agent-runner check lists them") {
		t.Errorf("status does not count the other problems: %q", res.stdout)
	}
}
