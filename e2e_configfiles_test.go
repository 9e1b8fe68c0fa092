package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runOrKill is run for a command that may block: it kills agent-runner
// after a minute and fails the test, so a hang shows as a failure. The
// bound only detects a hang, since the commands return within a second.
func (p *project) runOrKill(args ...string) result {
	p.t.Helper()
	return p.runCmdOrKill(p.command(args...), args)
}

// complete runs the hidden completion command for the first argument of
// command.
func (p *project) complete(command string) result {
	p.t.Helper()
	args := []string{"__complete", "bash", "--", command, "--config", p.config, ""}
	cmd := exec.Command(binary, args...)
	cmd.Dir = p.dir
	return p.runCmdOrKill(cmd, args)
}

func (p *project) runCmdOrKill(cmd *exec.Cmd, args []string) result {
	p.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start agent-runner %v: %v", args, err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	if !timer.Stop() {
		p.t.Fatalf("agent-runner %v blocked for a minute and was killed", args)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		p.t.Fatalf("run agent-runner %v: %v", args, err)
	}
	code := 0
	if exitErr != nil {
		code = exitErr.ExitCode()
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestIncludeFIFODoesNotBlock(t *testing.T) {
	p := includeProject(t, "")
	p.writeIncluded("10-a.toml", "[jobs.a]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	d := p.startDaemon()
	if res := p.complete("run-job"); !strings.Contains(res.stdout, "base") {
		t.Fatalf("completion = %d %q %q, want the job names", res.code, res.stdout, res.stderr)
	}

	fifo := p.path("conf.d/20-fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	want := "read included file: " + fifo + " is not a regular file but a named pipe (FIFO)"
	res := p.runOrKill("check")
	if res.code != 1 || !strings.Contains(res.stderr, want) {
		t.Errorf("check with a FIFO in conf.d = %d %q, want 1 and %q", res.code, res.stderr, want)
	}
	res = p.complete("run-job")
	if res.code != 0 || strings.Contains(res.stdout, "base") {
		t.Errorf("completion with a FIFO in conf.d = %d %q, want 0 and no job names", res.code, res.stdout)
	}

	res = p.runOrKill("reload")
	if res.code != 1 || !strings.Contains(res.stderr, want) {
		t.Errorf("reload with a FIFO in conf.d = %d %q, want 1 and %q", res.code, res.stderr, want)
	}
	status := p.status()
	if status.Daemon == nil || !strings.Contains(status.Daemon.ReloadError, want) {
		t.Fatalf("status after the rejected reload = %+v, want the problem", status.Daemon)
	}
	// SIGHUP goes through the daemon's own reload loop, which a blocked
	// read used to stop for good, and with it the daemon's stop.
	firstFailure := status.Daemon.ReloadFailedAt
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload on SIGHUP to be rejected", func() bool {
		return p.status().Daemon.ReloadFailedAt.After(firstFailure)
	})
	if _, ok := p.list()["a"]; !ok {
		t.Errorf("the running config lost job a after a rejected reload")
	}
	d.stop()
}

func TestReloadWarnsRestartOnlyKeys(t *testing.T) {
	p := newProject(t, "")
	writeRunner := func(port int, shutdown, killGrace string) {
		t.Helper()
		body := fmt.Sprintf("[runner]\nhttp = \"127.0.0.1:%d\"\nshutdown_timeout = %q\nkill_grace = %q\n\n"+
			"[jobs.a]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n", port, shutdown, killGrace)
		if err := os.WriteFile(p.config, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldPort, newPort := freePort(t), freePort(t)
	writeRunner(oldPort, "5s", "1s")
	d := p.startDaemon()

	writeRunner(newPort, "6s", "2s")
	res := p.run("reload")
	want := "takes effect after a restart: runner.http, runner.shutdown_timeout"
	if res.code != 0 || !strings.Contains(res.stdout, want) {
		t.Errorf("reload = %d %q %q, want 0 and %q", res.code, res.stdout, res.stderr, want)
	}
	if applied := "applied: runner.kill_grace;"; !strings.Contains(res.stdout, applied) {
		t.Errorf("reload output %q lacks %q", res.stdout, applied)
	}
	for _, key := range []string{"key=runner.http", "key=runner.shutdown_timeout"} {
		if !strings.Contains(d.log(), `msg="config change takes effect after a restart" `+key) {
			t.Errorf("daemon log lacks the restart warning for %s", key)
		}
	}
	if code, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", oldPort)); code != http.StatusOK {
		t.Errorf("the health server at the old address answered %d after the reload, want 200 until a restart", code)
	}
	d.stop()
}
