package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
)

// binary is the agent-runner built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agent-runner-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "agent-runner")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build agent-runner:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// project is a config folder for one test.
type project struct {
	t      *testing.T
	dir    string
	config string
}

// newProject writes a config with the given job tables after a [runner]
// table that keeps every path inside a temporary folder.
func newProject(t *testing.T, jobsTOML string) *project {
	t.Helper()
	dir := t.TempDir()
	p := &project{t: t, dir: dir, config: filepath.Join(dir, "config.toml")}
	p.write(jobsTOML)
	return p
}

func (p *project) write(jobsTOML string) {
	p.t.Helper()
	body := "[runner]\nshutdown_timeout = \"5s\"\nkill_grace = \"1s\"\n\n" + jobsTOML
	if err := os.WriteFile(p.config, []byte(body), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func (p *project) path(name string) string { return filepath.Join(p.dir, name) }

// result is a finished agent-runner command.
type result struct {
	code   int
	stdout string
	stderr string
}

// run runs agent-runner with --config added after the subcommand.
func (p *project) run(args ...string) result {
	p.t.Helper()
	cmd := p.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		p.t.Fatalf("run agent-runner %v: %v", args, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (p *project) command(args ...string) *exec.Cmd {
	full := append([]string{args[0], "--config", p.config}, args[1:]...)
	cmd := exec.Command(binary, full...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "AGENT_RUNNER_CONFIG=")
	return cmd
}

// daemonProc is a running `agent-runner run`.
type daemonProc struct {
	p    *project
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

func (p *project) startDaemon() *daemonProc {
	p.t.Helper()
	d := p.startProcess()
	d.waitLog("scheduler started")
	return d
}

// waitForFile waits until the file name exists in the project's folder,
// as a job touches one to say that its run started.
func (p *project) waitForFile(what, name string) {
	p.t.Helper()
	waitFor(p.t, what, func() bool {
		_, err := os.Stat(p.path(name))
		return err == nil
	})
}

// startProcess starts `agent-runner run` with the options in args and
// returns without waiting.
func (p *project) startProcess(args ...string) *daemonProc {
	p.t.Helper()
	d := &daemonProc{p: p, cmd: p.command(append([]string{"run"}, args...)...), done: make(chan struct{})}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			d.mu.Lock()
			d.logs.WriteString(scanner.Text() + "\n")
			d.mu.Unlock()
		}
		d.cmd.Wait()
		close(d.done)
	}()
	p.t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if p.t.Failed() {
			p.t.Logf("daemon log:\n%s", d.log())
		}
	})
	return d
}

func (d *daemonProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// waitLog waits until the daemon's log contains text.
func (d *daemonProc) waitLog(text string) {
	d.p.t.Helper()
	waitFor(d.p.t, "daemon log line "+text, func() bool { return strings.Contains(d.log(), text) })
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemonProc) stop() {
	d.p.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.p.t.Fatal("daemon did not stop within 15s of SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		d.p.t.Errorf("daemon exit status = %d, want 0", code)
	}
}

// kill sends SIGKILL, as a crash or an OOM kill would.
func (d *daemonProc) kill() {
	d.cmd.Process.Kill()
	<-d.done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

func (p *project) list() map[string]jobs.JobStatus {
	p.t.Helper()
	res := p.run("list", "--json")
	if res.code != 0 {
		p.t.Fatalf("list exit %d: %s", res.code, res.stderr)
	}
	var status control.Status
	if err := json.Unmarshal([]byte(res.stdout), &status); err != nil {
		p.t.Fatalf("decode list output %q: %v", res.stdout, err)
	}
	byName := make(map[string]jobs.JobStatus)
	for _, s := range status.Jobs {
		byName[s.Name] = s
	}
	return byName
}

func TestCheckShippedConfig(t *testing.T) {
	cmd := exec.Command(binary, "check", "--config", "config.toml")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check on the shipped config failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "OK, 12 jobs, 1 disabled, 4 listeners, 3 disabled") {
		t.Errorf("check output = %q, want the one-line summary", out)
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	p := newProject(t, `[jobs.bad]
command = ["true"]
every = "5 minutes"

[jobs.worse]
command = ["true"]
schedule = "61 * * * *"
colour = "red"
`)
	res := p.run("check")
	if res.code != 1 {
		t.Fatalf("check exit = %d, want 1", res.code)
	}
	for _, want := range []string{
		"config.toml:7: jobs.bad.every:",
		"config.toml:11: jobs.worse.schedule:",
		"config.toml:12: jobs.worse.colour:",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("check output lacks %q:\n%s", want, res.stderr)
		}
	}
}

func TestCheckListsMachineAndFileProblems(t *testing.T) {
	p := newProject(t, `[defaults]
working_dir = "missing-folder"

[jobs.a]
command = ["true"]
every = "1h"

[jobs.b]
command = ["no-such-tool-xyz"]
every = "1 hour"
`)
	res := p.run("check")
	if res.code != 1 {
		t.Fatalf("check exit = %d, want 1", res.code)
	}
	if n := strings.Count(res.stderr, "defaults.working_dir"); n != 1 {
		t.Errorf("the shared working_dir problem is listed %d times, want once:\n%s", n, res.stderr)
	}
	for _, want := range []string{"jobs.b.every: invalid duration", `"no-such-tool-xyz" not found in PATH`} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("check output lacks %q:\n%s", want, res.stderr)
		}
	}
}

func TestCheckFailsOnMissingCommand(t *testing.T) {
	p := newProject(t, "[jobs.ghost]\ncommand = [\"no-such-tool-xyz\"]\nevery = \"1h\"\n")
	res := p.run("check")
	if res.code != 1 || !strings.Contains(res.stderr, `"no-such-tool-xyz" not found in PATH`) {
		t.Errorf("check = %d %q, want failure naming the PATH", res.code, res.stderr)
	}
}

func TestRunJobWithoutDaemon(t *testing.T) {
	p := newProject(t, `[jobs.hello]
command = ["sh", "-c", "echo hello from $AGENT_RUNNER_TRIGGER; echo warning >&2"]
every = "1h"

[jobs.exit7]
command = ["sh", "-c", "exit 7"]
every = "1h"

[jobs.slow]
command = ["sleep", "30"]
every = "1h"
timeout = "300ms"

[jobs.killed]
command = ["sh", "-c", "kill -TERM $$"]
every = "1h"
`)
	res := p.run("run-job", "hello")
	if res.code != 0 {
		t.Fatalf("run-job hello exit = %d: %s", res.code, res.stderr)
	}
	if res.stdout != "hello from manual\n" {
		t.Errorf("stdout = %q, want the job's own line", res.stdout)
	}
	if !strings.Contains(res.stderr, "warning") {
		t.Errorf("stderr = %q, want the job's stderr", res.stderr)
	}

	codes := map[string]int{"exit7": 7, "slow": 124, "killed": 128 + 15, "nope": 125}
	for job, want := range codes {
		if got := p.run("run-job", job).code; got != want {
			t.Errorf("run-job %s exit = %d, want %d", job, got, want)
		}
	}

	status := p.list()
	if s := status["hello"]; s.LastResult != "ok" || s.LastStart.IsZero() {
		t.Errorf("list after manual run: %+v, want last result ok", s)
	}
	if s := status["slow"]; s.LastResult != "timeout" {
		t.Errorf("list: slow last result = %q, want timeout", s.LastResult)
	}
}

func TestDaemonRunsScheduleAndServesRunJob(t *testing.T) {
	p := newProject(t, `[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> ticks"]
every = "1s"

[jobs.manual]
command = ["sh", "-c", "echo via-daemon; exit 4"]
schedule = "0 0 1 1 *"
`)
	d := p.startDaemon()
	waitFor(t, "three ticks", func() bool { return len(lines(t, p.path("ticks"))) >= 3 })

	res := p.run("run-job", "manual")
	if res.code != 4 {
		t.Errorf("run-job via daemon exit = %d, want 4 (%s)", res.code, res.stderr)
	}
	if res.stdout != "via-daemon\n" {
		t.Errorf("run-job via daemon stdout = %q", res.stdout)
	}
	status := p.list()
	if s := status["manual"]; s.LastResult != "failed" || s.LastExitCode != 4 {
		t.Errorf("manual status = %+v, want failed with exit 4", s)
	}
	if s := status["tick"]; s.State != "scheduled" && s.State != "running" {
		t.Errorf("tick state = %q", s.State)
	}
	if !strings.Contains(d.log(), "job=manual") {
		t.Errorf("daemon log does not mention the manual run")
	}
	d.stop()

	seen := map[string]bool{}
	for _, slot := range lines(t, p.path("ticks")) {
		if seen[slot] {
			t.Errorf("slot %s ran twice", slot)
		}
		seen[slot] = true
	}
}

func TestRunJobBusyAndWait(t *testing.T) {
	p := newProject(t, `[jobs.long]
command = ["sh", "-c", "while [ ! -e release ]; do sleep 0.05; done; echo done"]
schedule = "0 0 1 1 *"
`)
	p.startDaemon()
	first := p.command("run-job", "long")
	var firstOut bytes.Buffer
	first.Stdout = &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "long to run", func() bool { return p.list()["long"].State == "running" })

	res := p.run("run-job", "long")
	if res.code != 125 || !strings.Contains(res.stderr, "already running") {
		t.Errorf("overlapping run-job = %d %q, want 125 and a message", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "run-job --wait long") {
		t.Errorf("overlapping run-job through the daemon = %q, want the --wait hint", res.stderr)
	}

	interrupted := p.command("run-job", "--wait", "long")
	var interruptedErr bytes.Buffer
	interrupted.Stderr = &interruptedErr
	if err := interrupted.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	interrupted.Process.Signal(syscall.SIGINT)
	var exitErr *exec.ExitError
	if err := interrupted.Wait(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 130 {
		t.Errorf("run-job --wait after Ctrl-C: %v, want exit 130", err)
	}
	if want := "or the wait for the running one, which goes on"; !strings.Contains(interruptedErr.String(), want) {
		t.Errorf("run-job --wait after Ctrl-C printed %q, want it to contain %q", interruptedErr.String(), want)
	}

	waiter := p.command("run-job", "--wait", "long")
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p.path("release"), nil, 0o600)
	if err := first.Wait(); err != nil {
		t.Errorf("first run-job: %v", err)
	}
	if err := waiter.Wait(); err != nil {
		t.Errorf("run-job --wait: %v", err)
	}
}

func TestCatchUpOnceAfterRestart(t *testing.T) {
	p := newProject(t, `[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_TRIGGER $AGENT_RUNNER_SLOT >> runs"]
every = "1s"
`)
	d := p.startDaemon()
	waitFor(t, "a first run", func() bool { return len(lines(t, p.path("runs"))) >= 2 })
	d.stop()
	before := len(readLines(t, p.path("runs")))

	time.Sleep(3 * time.Second) // three slots pass while stopped
	p.startDaemon()
	waitFor(t, "the catch-up run", func() bool { return len(readLines(t, p.path("runs"))) > before })
	catchUp := readLines(t, p.path("runs"))[before]
	if !strings.HasPrefix(catchUp, "catch-up ") {
		t.Errorf("first run after restart = %q, want a catch-up run", catchUp)
	}
	time.Sleep(1500 * time.Millisecond)
	count := 0
	for _, line := range readLines(t, p.path("runs"))[before:] {
		if strings.HasPrefix(line, "catch-up ") {
			count++
		}
	}
	if count != 1 {
		t.Errorf("catch-up runs = %d, want exactly 1", count)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' })
}

func TestShutdownInterruptsRunningJob(t *testing.T) {
	p := newProject(t, `[jobs.sleeper]
command = ["sh", "-c", "echo $$ > pid; exec sleep 300"]
schedule = "0 0 1 1 *"
`)
	d := p.startDaemon()
	go p.run("run-job", "sleeper")
	waitFor(t, "sleeper to start", func() bool { return len(lines(t, p.path("pid"))) == 1 })
	d.stop()

	pid := lines(t, p.path("pid"))[0]
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Errorf("job process %s outlived the daemon", pid)
	}
	if s := p.list()["sleeper"]; s.LastResult != "interrupted" {
		t.Errorf("sleeper last result = %q, want interrupted", s.LastResult)
	}
}

func TestKilledDaemonRecordsInterruptedRun(t *testing.T) {
	p := newProject(t, `[jobs.sleeper]
command = ["sh", "-c", "echo $$ >> pids; echo $AGENT_RUNNER_SLOT >> slots; exec sleep 300"]
every = "2s"
`)
	t.Cleanup(func() { killPids(t, p.path("pids")) })
	d := p.startDaemon()
	waitFor(t, "the first slot", func() bool { return len(lines(t, p.path("slots"))) == 1 })
	d.kill()
	first := lines(t, p.path("slots"))[0]
	orphan := lines(t, p.path("pids"))[0]
	if !running(orphan) {
		t.Fatalf("the job's process %s died with the daemon; this test needs it to outlive it", orphan)
	}

	d = p.startDaemon()
	d.waitLog("run was interrupted by a previous stop")
	d.waitLog("stopped processes left by a previous daemon or CLI")
	if running(orphan) {
		t.Errorf("the interrupted run's process %s still runs after the restart", orphan)
	}
	waitFor(t, "a later slot", func() bool { return len(lines(t, p.path("slots"))) >= 2 })
	for _, slot := range lines(t, p.path("slots"))[1:] {
		if slot == first {
			t.Errorf("slot %s ran again after the crash", slot)
		}
	}
	d.kill()
}

// A claim log deleted under a running daemon is recreated before the
// next claim, so a claim made just before a crash is replayed and its
// slot does not run again. The job finishes 1 s into
// each 3 s slot, so the timer's commit comes before the next claim and
// only the claim log contains that claim at the kill.
func TestDeletedClaimLogKeepsClaims(t *testing.T) {
	p := newProject(t, `[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> slots; sleep 1"]
schedule = "*/3 * * * * *"
`)
	d := p.startDaemon()
	waitFor(t, "the first slot", func() bool { return len(lines(t, p.path("slots"))) == 1 })
	if err := os.Remove(p.path("state/state.db-claimlog")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the slot after the deletion", func() bool { return len(lines(t, p.path("slots"))) == 2 })
	d.kill()
	if n := strings.Count(d.log(), "claim log was deleted or replaced; recreated it"); n != 1 {
		t.Errorf("logged the recreation %d times, want 1", n)
	}

	p.startDaemon()
	waitFor(t, "a slot after the restart", func() bool { return len(lines(t, p.path("slots"))) >= 3 })
	seen := make(map[string]bool)
	for _, slot := range lines(t, p.path("slots")) {
		if seen[slot] {
			t.Errorf("slot %s ran twice", slot)
		}
		seen[slot] = true
	}
}

// running reports whether pid exists and is not a zombie waiting for its
// parent to reap it.
func running(pid string) bool {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// killPids kills every process whose pid a test job wrote to path.
func killPids(t *testing.T, path string) {
	for _, field := range lines(t, path) {
		if pid, err := strconv.Atoi(field); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestRunJobInterruptStopsProcessGroup(t *testing.T) {
	p := newProject(t, `[jobs.sleeper]
command = ["sh", "-c", "sleep 300 & echo $! > pid; wait"]
schedule = "0 0 1 1 *"
`)
	cmd := p.command("run-job", "sleeper")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grandchild", func() bool { return len(lines(t, p.path("pid"))) == 1 })
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 130 {
		t.Errorf("run-job after Ctrl-C: %v, want exit 130", err)
	}
	pid := lines(t, p.path("pid"))[0]
	waitFor(t, "the grandchild to die", func() bool {
		_, err := os.Stat("/proc/" + pid)
		return err != nil
	})
}

// A deleted control socket is recreated by the daemon's state check, and
// a CLI that finds it missing waits for it instead of running the job
// in-process beside the daemon.
func TestDeletedSocketIsRecreated(t *testing.T) {
	p := newProject(t, "[jobs.hello]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	d := p.startDaemon()
	if err := os.Remove(p.path("state/control.sock")); err != nil {
		t.Fatal(err)
	}
	res := p.run("run-job", "hello")
	if res.code != 0 {
		t.Errorf("run-job after the socket was deleted = %d %q, want a run through the daemon", res.code, res.stderr)
	}
	if !strings.Contains(d.log(), "trigger=manual") {
		t.Errorf("the daemon did not run the job; log:\n%s", d.log())
	}
	res = p.run("list", "--json")
	if res.code != 0 || !strings.Contains(res.stdout, `"daemon"`) {
		t.Errorf("list --json after the socket came back = %d %q, want the daemon's status", res.code, res.stderr)
	}
	if n := strings.Count(d.log(), "control socket was deleted or replaced"); n != 1 {
		t.Errorf("logged the recreation %d times, want 1", n)
	}
	d.stop()
}

func TestStaleSocketAfterCrash(t *testing.T) {
	p := newProject(t, "[jobs.hello]\ncommand = [\"echo\", \"hi\"]\nschedule = \"0 0 1 1 *\"\n")
	d := p.startDaemon()
	d.kill()
	if res := p.run("run-job", "hello"); res.code != 0 || res.stdout != "hi\n" {
		t.Errorf("run-job after a crash = %d %q %q, want an in-process run", res.code, res.stdout, res.stderr)
	}
	d = p.startDaemon()
	if res := p.run("run-job", "hello"); res.code != 0 {
		t.Errorf("run-job through the restarted daemon = %d %q", res.code, res.stderr)
	}
	d.stop()
}

func TestListDuringInProcessRun(t *testing.T) {
	p := newProject(t, `[jobs.long]
command = ["sh", "-c", "touch started; while [ ! -e release ]; do sleep 0.05; done"]
schedule = "0 0 1 1 *"
`)
	cmd := p.command("run-job", "long")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer os.WriteFile(p.path("release"), nil, 0o600)
	p.waitForFile("the run to start", "started")
	if s := p.list()["long"]; s.State != "running" {
		t.Errorf("state during an in-process run = %q, want running", s.State)
	}
	res := p.run("run-job", "long")
	if res.code != 125 || !strings.Contains(res.stderr, "already running") {
		t.Errorf("second run-job = %d %q, want 125 and a message", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "run-job --wait long") {
		t.Errorf("second run-job without a daemon = %q, want the --wait hint", res.stderr)
	}
}

func TestIdleClientDoesNotBlockShutdown(t *testing.T) {
	p := newProject(t, "[jobs.hello]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	d := p.startDaemon()
	var idle []net.Conn
	for range 5 {
		conn, err := net.Dial("unix", p.path("state/control.sock"))
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, conn)
	}
	defer func() {
		for _, conn := range idle {
			conn.Close()
		}
	}()
	start := time.Now()
	d.stop()
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("stop took %v with idle clients connected", elapsed)
	}
}

// With the daemon's 256 control connections in use, a command reports
// that the daemon is busy instead of a broken pipe.
func TestCommandsReportBusyDaemon(t *testing.T) {
	p := newProject(t, "[jobs.hello]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	d := p.startDaemon()
	defer d.stop()
	var idle []net.Conn
	defer func() {
		for _, conn := range idle {
			conn.Close()
		}
	}()
	for range 300 {
		conn, err := net.Dial("unix", p.path("state/control.sock"))
		if err != nil {
			t.Fatal(err)
		}
		// Half a request line keeps the daemon waiting for the rest. The
		// write may fail on the connections past the cap, which the
		// daemon closes at once.
		_, _ = io.WriteString(conn, `{"op":`)
		idle = append(idle, conn)
	}
	want := "the daemon is busy: 256 control connections are open"
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"list"}, exitFailure},
		{[]string{"status"}, exitFailure},
		{[]string{"reload"}, exitFailure},
		{[]string{"run-job", "hello"}, exitCannotRun},
	} {
		res := p.run(c.args...)
		if res.code != c.code {
			t.Errorf("%v with a busy daemon: exit %d, want %d", c.args, res.code, c.code)
		}
		if !strings.Contains(res.stderr, want) {
			t.Errorf("%v with a busy daemon: stderr %q, want %q", c.args, res.stderr, want)
		}
	}
}

func TestRunJobNamesADisabledJob(t *testing.T) {
	p := newProject(t, `[jobs.paused]
command = ["sh", "-c", "echo ran"]
schedule = "0 0 1 1 *"
enabled = false
`)
	res := p.run("run-job", "paused")
	if res.code != 0 || !strings.Contains(res.stdout, "ran") {
		t.Errorf("run-job of a disabled job = %d %q, want it to run", res.code, res.stdout)
	}
	if !strings.Contains(res.stderr, "job paused is disabled") {
		t.Errorf("run-job of a disabled job printed %q, want a notice that it is disabled", res.stderr)
	}
}

func TestRunJobReportsAFailureOnce(t *testing.T) {
	p := newProject(t, "[jobs.broken]\ncommand = [\"sh\", \"-c\", \"exit 3\"]\nschedule = \"0 0 1 1 *\"\n")
	res := p.run("run-job", "broken")
	if res.code != 3 || !strings.Contains(res.stderr, "of broken: failed") {
		t.Errorf("run-job of a failing job = %d %q, want 3 and the summary line", res.code, res.stderr)
	}
	if strings.Contains(res.stderr, `msg="run failed"`) {
		t.Errorf("run-job logged the failure beside its summary line: %q", res.stderr)
	}
}

// TestRunJobPointsAtReloadAfterAFix fixes a script that the daemon found
// unrunnable when it loaded the config. The daemon keeps that problem
// until a reload, so run-job must point at the reload rather than repeat
// the error about a script that is fixed.
func TestRunJobPointsAtReloadAfterAFix(t *testing.T) {
	p := newProject(t, "[jobs.fixed]\ncommand = [\"./fixed.sh\"]\nschedule = \"0 0 1 1 *\"\n")
	script := p.path("fixed.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := p.startDaemon()
	defer d.stop()
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	const note = "apply them with agent-runner reload"
	res := p.run("run-job", "fixed")
	if res.code != exitCannotRun || !strings.Contains(res.stderr, "is not executable") || !strings.Contains(res.stderr, note) {
		t.Errorf("run-job after the fix = %d %q, want %d, the daemon's problem and %q", res.code, res.stderr, exitCannotRun, note)
	}
	if res := p.run("reload"); res.code != 0 {
		t.Fatalf("reload = %d %q", res.code, res.stderr)
	}
	res = p.run("run-job", "fixed")
	if res.code != 0 || strings.Contains(res.stderr, note) {
		t.Errorf("run-job after the reload = %d %q, want 0 without the note", res.code, res.stderr)
	}
}

func TestRunJobWaitsForASlowReader(t *testing.T) {
	p := newProject(t, `[jobs.chatty]
command = ["sh", "-c", "i=0; while [ $i -lt 5000 ]; do echo line $i of the output that a pager shows one page at a time; i=$((i+1)); done; echo finished"]
schedule = "0 0 1 1 *"
`)
	d := p.startDaemon()
	cmd := p.command("run-job", "chatty")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The daemon's write timeout for other replies is 10 s, and the
	// pause must outlast it with room for a slow start.
	time.Sleep(13 * time.Second)
	out, err := io.ReadAll(stdout)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("run-job with a slow reader: %v, %s", err, stderr.String())
	}
	if n := strings.Count(string(out), "\n"); n != 5001 || !strings.HasSuffix(string(out), "finished\n") {
		t.Errorf("run-job with a slow reader printed %d lines, want all 5,001", n)
	}
	d.stop()
}

func TestRunJobHandsItsRecordToANewDaemon(t *testing.T) {
	p := newProject(t, `[jobs.slow]
command = ["sh", "-c", "touch started; while [ ! -e release ]; do sleep 0.05; done; echo done"]
schedule = "0 0 1 1 *"
`)
	cmd := p.command("run-job", "slow")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitForFile("the in-process run to start", "started")
	d := p.startDaemon()
	writeFile(t, p.path("release"), "")
	if err := cmd.Wait(); err != nil {
		t.Errorf("run-job whose daemon started mid-run: %v, %s", err, stderr.String())
	}
	res := p.run("runs", "slow")
	if res.code != 0 || !strings.Contains(res.stdout, " ok ") {
		t.Errorf("runs after the hand-off = %d %q, want the run recorded ok", res.code, res.stdout)
	}
	d.stop()
}

func TestRunJobCtrlCShowsTheStopAndResult(t *testing.T) {
	p := newProject(t, `[jobs.chatty]
command = ["sh", "-c", "trap 'echo caught SIGTERM; exit 3' TERM; touch started; while true; do echo working; sleep 0.01; done"]
schedule = "0 0 1 1 *"
`)
	d := p.startDaemon()
	cmd := p.command("run-job", "chatty")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.waitForFile("the run to start", "started")
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 130 {
		t.Errorf("run-job through the daemon after Ctrl-C: %v, want exit 130; stderr %q", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "caught SIGTERM") {
		t.Errorf("run-job after Ctrl-C did not show what the job printed while it stopped: %q", lastLines(stdout.String(), 3))
	}
	d.stop()
}

func lastLines(text string, n int) []string {
	all := strings.Split(strings.TrimRight(text, "\n"), "\n")
	return all[max(0, len(all)-n):]
}

func TestRunJobWaitsForAFreePlace(t *testing.T) {
	// newProject's [runner] table takes the first line.
	p := newProject(t, `max_concurrent = 1

[jobs.long]
command = ["sh", "-c", "touch started; while [ ! -e release ]; do sleep 0.05; done"]
schedule = "0 0 1 1 *"

[jobs.quick]
command = ["echo", "quick"]
schedule = "0 0 1 1 *"
`)
	d := p.startDaemon()
	long := p.command("run-job", "long")
	if err := long.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		writeFile(t, p.path("release"), "")
		long.Wait()
	}()
	p.waitForFile("the long run to start", "started")
	quick := p.command("run-job", "quick")
	var stdout bytes.Buffer
	var stderr lockedBuffer
	quick.Stdout, quick.Stderr = &stdout, &stderr
	if err := quick.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the waiting notice", func() bool {
		return strings.Contains(stderr.String(), "waiting for a free run place")
	})
	writeFile(t, p.path("release"), "")
	if err := quick.Wait(); err != nil || !strings.Contains(stdout.String(), "quick") {
		t.Errorf("run-job while max_concurrent is full: %v, %q %q", err, stdout.String(), stderr.String())
	}
	d.stop()
}

func TestRunByHandStopsKilledDaemonsRun(t *testing.T) {
	p := newProject(t, `[jobs.long]
command = ["sh", "-c", "echo $$ >> pids; [ $(wc -l < pids) -gt 1 ] || exec sleep 300"]
schedule = "0 0 1 1 *"
`)
	t.Cleanup(func() { killPids(t, p.path("pids")) })
	d := p.startDaemon()
	client := p.command("run-job", "long")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first run", func() bool { return len(lines(t, p.path("pids"))) == 1 })
	first := lines(t, p.path("pids"))[0]
	d.kill()
	_ = client.Wait()
	if !running(first) {
		t.Fatalf("the first run's process %s died with the daemon; this test needs it to outlive it", first)
	}

	res := p.run("run-job", "long")
	if res.code != 0 {
		t.Fatalf("run-job after the kill = %d %q", res.code, res.stderr)
	}
	if running(first) {
		t.Errorf("the killed daemon's run %s still runs after a run by hand", first)
	}
	if !strings.Contains(res.stderr, "interrupted") {
		t.Errorf("run-job stderr %q, want the interrupted run reported", res.stderr)
	}
	runs := p.run("runs", "long")
	if !strings.Contains(runs.stdout, "interrupted") {
		t.Errorf("runs after the kill:\n%s\nwant the first run interrupted", runs.stdout)
	}
}

func TestRunJobWaitSaysWhatItWaitsFor(t *testing.T) {
	p := newProject(t, `[jobs.slow]
command = ["sh", "-c", "touch started; sleep 1"]
schedule = "0 0 1 1 *"
`)
	for _, withDaemon := range []bool{false, true} {
		var d *daemonProc
		if withDaemon {
			d = p.startDaemon()
		}
		os.Remove(p.path("started"))
		first := p.command("run-job", "slow")
		if err := first.Start(); err != nil {
			t.Fatal(err)
		}
		p.waitForFile("the first run", "started")
		res := p.run("run-job", "--wait", "slow")
		_ = first.Wait()
		if res.code != 0 {
			t.Errorf("daemon %t: run-job --wait = %d %q", withDaemon, res.code, res.stderr)
		}
		if !strings.Contains(res.stderr, "waiting for the running run of slow to end") {
			t.Errorf("daemon %t: run-job --wait stderr %q, want a notice of what it waits for", withDaemon, res.stderr)
		}
		if d != nil {
			d.stop()
		}
	}
}

func TestShutdownTimeoutKillIsLogged(t *testing.T) {
	p := newProject(t, "")
	config := `[runner]
shutdown_timeout = "1s"

[jobs.stubborn]
command = ["sh", "-c", "trap '' TERM; touch started; sleep 30"]
schedule = "0 0 1 1 *"
`
	if err := os.WriteFile(p.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d := p.startDaemon()
	client := p.command("run-job", "stubborn")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer client.Wait()
	p.waitForFile("the run", "started")
	d.stop()
	if !strings.Contains(d.log(), "shutdown_timeout passed, so the running jobs get SIGKILL") {
		t.Errorf("the daemon log does not say that shutdown_timeout ran out:\n%s", d.log())
	}
}

func TestStartReportsHeldStoreLock(t *testing.T) {
	p := newProject(t, "[jobs.tick]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	if err := os.MkdirAll(p.path("state"), 0o700); err != nil {
		t.Fatal(err)
	}
	holder, err := os.OpenFile(p.path("state/state.db"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := syscall.Flock(int(holder.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	res := runWithin(t, p.command("run"), 30*time.Second)
	if res.code != exitFailure {
		t.Fatalf("run with the store locked = %d, want %d; stderr %q", res.code, exitFailure, res.stderr)
	}
	if !strings.Contains(res.stderr, "which kept it for more than 10s") {
		t.Errorf("run with the store locked: stderr %q, want the whole time it waited", res.stderr)
	}
}

func TestRunByHandFreesStoreWhileStopping(t *testing.T) {
	p := newProject(t, "")
	config := `[runner]
kill_grace = "6s"

[jobs.stubborn]
command = ["sh", "-c", "trap '' TERM; echo $$ >> pids; sleep 300"]
schedule = "0 0 1 1 *"

[jobs.quick]
command = ["true"]
schedule = "0 0 1 1 *"
`
	if err := os.WriteFile(p.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killPids(t, p.path("pids")) })
	d := p.startDaemon()
	client := p.command("run-job", "stubborn")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stubborn run", func() bool { return len(lines(t, p.path("pids"))) == 1 })
	d.kill()
	_ = client.Wait()

	// This run-job stops the leftover, which ignores SIGTERM and so
	// takes kill_grace to die.
	stopper := p.command("run-job", "quick")
	if err := stopper.Start(); err != nil {
		t.Fatal(err)
	}
	defer stopper.Wait()
	time.Sleep(time.Second)
	res := p.run("runs", "stubborn")
	if res.code != 0 {
		t.Errorf("runs while a run-job stops a leftover = %d %q, want the store free", res.code, res.stderr)
	}
}

func TestSecondInterruptKillsRunByHand(t *testing.T) {
	p := newProject(t, `[jobs.stubborn]
command = ["sh", "-c", "trap '' TERM INT; echo $$ >> pids; sleep 30"]
schedule = "0 0 1 1 *"
`)
	t.Cleanup(func() { killPids(t, p.path("pids")) })
	cmd := p.command("run-job", "stubborn")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the run", func() bool { return len(lines(t, p.path("pids"))) == 1 })
	child := lines(t, p.path("pids"))[0]
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("run-job still runs 5 s after the second interrupt; stderr %q", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupt {
		t.Errorf("exit status %d, want %d; stderr %q", code, exitInterrupt, stderr.String())
	}
	if running(child) {
		t.Errorf("the job's process %s outlived the second interrupt", child)
	}
	runs := p.run("runs", "stubborn")
	if !strings.Contains(runs.stdout, "stopped by the user") {
		t.Errorf("runs after the interrupts:\n%s\nwant the run stopped by the user", runs.stdout)
	}
}

// TestDaemonNoticesAFixedScript checks that a job whose script was not
// executable when the daemon loaded the config runs again once the
// script is fixed, without a reload.
func TestDaemonNoticesAFixedScript(t *testing.T) {
	p := newProject(t, "[jobs.fixed]\ncommand = [\"./fixed.sh\"]\nevery = \"1s\"\n")
	script := p.path("fixed.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := p.startDaemon()
	defer d.stop()
	waitFor(t, "a run that fails on the load problem", func() bool {
		return strings.Contains(p.list()["fixed"].LastError, "agent-runner reload applies a fix at once")
	})
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	p.waitForFile("a run after the fix", "ran")
	if status := p.list()["fixed"]; status.Problem != "" {
		t.Errorf("status problem after the fix = %q, want none", status.Problem)
	}
}
