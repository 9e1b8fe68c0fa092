package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
)

func TestReloadAppliesDiff(t *testing.T) {
	p := newProject(t, `[jobs.kept]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> kept"]
every = "1s"

[jobs.changed]
command = ["sh", "-c", "echo old >> changed"]
every = "1s"

[jobs.removed]
command = ["sh", "-c", "echo x >> removed"]
every = "1s"

[listeners.steady]
kind = "exec"
command = ["sh", "-c", "echo $$ > steady.pid; exec sleep 300"]

[listeners.dropped]
kind = "exec"
command = ["sh", "-c", "echo $$ > dropped.pid; exec sleep 300"]
`)
	d := p.startDaemon()
	waitFor(t, "both listeners", func() bool {
		return p.listener("steady").State == listeners.StateRunning && p.listener("dropped").State == listeners.StateRunning
	})
	waitFor(t, "the first runs", func() bool { return len(lines(t, p.path("changed"))) >= 1 && len(lines(t, p.path("removed"))) >= 1 })
	steadyPid := lines(t, p.path("steady.pid"))[0]
	droppedPid := lines(t, p.path("dropped.pid"))[0]

	p.write(`[jobs.kept]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> kept"]
every = "1s"

[jobs.changed]
command = ["sh", "-c", "echo new >> changed"]
every = "1s"

[jobs.added]
command = ["sh", "-c", "echo y >> added"]
every = "1s"

[listeners.steady]
kind = "exec"
command = ["sh", "-c", "echo $$ > steady.pid; exec sleep 300"]

[listeners.fresh]
kind = "exec"
command = ["sh", "-c", "echo $$ > fresh.pid; exec sleep 300"]
`)
	res := p.run("reload")
	if res.code != 0 {
		t.Fatalf("reload exit %d: %s", res.code, res.stderr)
	}
	for _, want := range []string{"jobs: 1 added, 1 removed, 1 changed", "listeners: 1 added, 1 removed, 0 restarted, 0 updated in place"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("reload output %q lacks %q", res.stdout, want)
		}
	}

	waitFor(t, "the added job", func() bool { return len(lines(t, p.path("added"))) >= 1 })
	waitFor(t, "the changed job's new command", func() bool { return strings.Contains(strings.Join(lines(t, p.path("changed")), " "), "new") })
	waitFor(t, "the added listener", func() bool { return p.listener("fresh").State == listeners.StateRunning })
	removedRuns := len(lines(t, p.path("removed")))
	time.Sleep(2 * time.Second)
	if n := len(lines(t, p.path("removed"))); n > removedRuns+1 {
		t.Errorf("the removed job ran %d more times after the reload", n-removedRuns)
	}
	if pid := lines(t, p.path("steady.pid"))[0]; pid != steadyPid {
		t.Errorf("the unchanged listener restarted: pid %s, was %s", pid, steadyPid)
	}
	if alive(droppedPid) {
		t.Errorf("the removed listener's child %s still runs", droppedPid)
	}
	for _, h := range p.status().Listeners {
		if h.Name == "dropped" {
			t.Errorf("the removed listener is still listed: %+v", h)
		}
	}

	// An invalid edit is rejected and the running config stays.
	p.write("[jobs.kept]\ncommand = [\"true\"]\nevery = \"soon\"\n")
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog("reload rejected")
	status := p.status()
	if status.Daemon == nil || !strings.Contains(status.Daemon.ReloadError, "invalid duration") {
		t.Errorf("status after a rejected reload = %+v, want the reload error", status.Daemon)
	}
	before := len(lines(t, p.path("added")))
	waitFor(t, "jobs to keep running", func() bool { return len(lines(t, p.path("added"))) > before })
	if res := p.run("reload"); res.code != 1 || !strings.Contains(res.stderr, "jobs.kept.every") {
		t.Errorf("reload of an invalid file = %d %q, want 1 and the problem", res.code, res.stderr)
	}
	d.stop()
}

func alive(pid string) bool {
	n := 0
	for _, c := range pid {
		n = n*10 + int(c-'0')
	}
	return syscall.Kill(n, 0) == nil
}

func TestWatchReloadsOnEdit(t *testing.T) {
	p := newProject(t, "[jobs.first]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	writeConfig := func(jobs string) {
		t.Helper()
		if err := os.WriteFile(p.config, []byte("[runner]\nwatch = true\nshutdown_timeout = \"5s\"\n\n"+jobs), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("[jobs.first]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	d := p.startDaemon()
	writeConfig("[jobs.first]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n\n[jobs.second]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	waitFor(t, "the watched edit to load", func() bool { _, ok := p.list()["second"]; return ok })
	writeConfig("[jobs.first]\ncommand = [\"true\"]\nevery = \"soon\"\n")
	d.waitLog("reload rejected")
	if _, ok := p.list()["second"]; !ok {
		t.Errorf("a rejected edit replaced the running config")
	}
	d.stop()
	if n := strings.Count(d.log(), "reload rejected"); n != 1 {
		t.Errorf("the invalid file was reloaded %d times, want once until it changes", n)
	}
}

// watchEvery is the daemon's watch interval, in daemon/daemon.go.
const watchEvery = 2 * time.Second

func TestWatchFollowsTheLoadedConfig(t *testing.T) {
	p := newProject(t, "[jobs.first]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	writeConfig := func(watch bool, jobs ...string) {
		t.Helper()
		text := fmt.Sprintf("[runner]\nwatch = %t\nshutdown_timeout = \"5s\"\n\n", watch)
		for _, name := range jobs {
			text += fmt.Sprintf("[jobs.%s]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n\n", name)
		}
		if err := os.WriteFile(p.config, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := p.startDaemon()
	writeConfig(true, "first", "second")
	if res := p.run("reload"); res.code != 0 {
		t.Fatalf("reload = %d %q", res.code, res.stderr)
	}
	writeConfig(true, "first", "second", "third")
	waitFor(t, "an edit to load once a reload switched watch on", func() bool { _, ok := p.list()["third"]; return ok })

	writeConfig(false, "first", "fourth")
	waitFor(t, "the edit that switches watch off to load", func() bool { _, ok := p.list()["fourth"]; return ok })
	writeConfig(false, "first", "fifth")
	time.Sleep(3 * watchEvery)
	if _, ok := p.list()["fifth"]; ok {
		t.Errorf("an edit loaded after watch was switched off")
	}
	d.stop()
}

func TestWatchAfterAManualReload(t *testing.T) {
	p := newProject(t, "[jobs.first]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	first := "[runner]\nwatch = true\nshutdown_timeout = \"5s\"\n\n[jobs.first]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n"
	both := first + "\n[jobs.second]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n"
	writeFile(t, p.config, first)
	d := p.startDaemon()

	writeFile(t, p.config, both)
	waitFor(t, "the watched edit to load", func() bool { _, ok := p.list()["second"]; return ok })
	writeFile(t, p.config, first)
	if res := p.run("reload"); res.code != 0 {
		t.Fatalf("reload = %d %q", res.code, res.stderr)
	}
	writeFile(t, p.config, both)
	waitFor(t, "the same edit to load again after a manual reload", func() bool { _, ok := p.list()["second"]; return ok })

	writeFile(t, p.config, both+"bogus = 1\n")
	waitFor(t, "the invalid edit to be rejected", func() bool {
		status := p.status()
		return status.Daemon != nil && status.Daemon.ReloadError != ""
	})
	writeFile(t, p.config, both)
	waitFor(t, "the reload error to clear once the file matches the running config", func() bool {
		status := p.status()
		return status.Daemon != nil && status.Daemon.ReloadError == ""
	})
	d.stop()
}

func TestReloadNamesJobThatCannotRun(t *testing.T) {
	p := newProject(t, `[jobs.kept]
command = ["true"]
every = "1h"
`)
	d := p.startDaemon()
	p.write(`[jobs.kept]
command = ["true"]
every = "1h"

[jobs.needs-env]
command = ["true"]
every = "1h"
env = { TOKEN = { env = "AGENT_RUNNER_TEST_UNSET_VARIABLE" } }
`)
	res := p.run("reload")
	if res.code != 0 {
		t.Fatalf("reload exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "cannot run on this machine") {
		t.Errorf("reload output %q does not say that a job cannot run", res.stdout)
	}
	if !strings.Contains(res.stdout, "jobs.needs-env.env.TOKEN") {
		t.Errorf("reload output %q does not name the key of the problem", res.stdout)
	}
	d.stop()
}

// openHandles counts the descriptors of process pid open on path.
func openHandles(t *testing.T, pid int, path string) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

func TestReloadClosesReplacedRouters(t *testing.T) {
	listener := func(seconds int) string {
		return fmt.Sprintf(`[listeners.svc]
kind = "exec"
command = ["sleep", "%d"]
on_event = ["cat"]
hook_concurrency = 4
log_to = "events.jsonl"
`, seconds)
	}
	p := newProject(t, listener(1000))
	d := p.startDaemon()
	pid, events := d.cmd.Process.Pid, p.path("events.jsonl")
	waitFor(t, "svc to run", func() bool { return p.listener("svc").State == listeners.StateRunning })
	if n := openHandles(t, pid, events); n != 1 {
		t.Fatalf("%d handles on the event log before any reload, want 1", n)
	}

	for i := 1; i <= 5; i++ {
		p.write(listener(1000 + i))
		if res := p.run("reload"); res.code != 0 {
			t.Fatalf("reload %d exit %d: %s", i, res.code, res.stderr)
		}
	}
	waitFor(t, "the replaced routers to close their event logs", func() bool { return openHandles(t, pid, events) == 1 })

	p.write("")
	if res := p.run("reload"); res.code != 0 {
		t.Fatalf("reload without the listener exit %d: %s", res.code, res.stderr)
	}
	waitFor(t, "the removed listener's event log to close", func() bool { return openHandles(t, pid, events) == 0 })
	d.stop()
}

func TestRunJobOfUnloadedJobSuggestsReload(t *testing.T) {
	p := newProject(t, "[jobs.kept]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	d := p.startDaemon()
	p.write("[jobs.kept]\ncommand = [\"true\"]\nevery = \"1h\"\n\n[jobs.pending]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("run-job", "pending")
	if res.code != exitCannotRun || !strings.Contains(res.stderr, "agent-runner reload") {
		t.Errorf("run-job of a job the daemon has not loaded = %d %q, want %d and a hint to reload", res.code, res.stderr, exitCannotRun)
	}
	d.stop()
}

func TestStatusShowsRunOfRemovedJob(t *testing.T) {
	p := newProject(t, `[jobs.kept]
command = ["true"]
every = "1h"

[jobs.leaving]
command = ["sh", "-c", "touch started; sleep 30"]
schedule = "0 0 1 1 *"
`)
	d := p.startDaemon()
	client := p.command("run-job", "leaving")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer client.Wait()
	p.waitForFile("the run", "started")
	p.write("[jobs.kept]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	if res := p.run("reload"); res.code != 0 {
		t.Fatalf("reload = %d %q", res.code, res.stderr)
	}
	res := p.run("list")
	if !strings.Contains(res.stdout, "leaving") || !strings.Contains(res.stdout, "removed by a reload") {
		t.Errorf("list after the running job was removed:\n%s\nwant its run shown", res.stdout)
	}
	d.stop()
}

// TestWatchReportsUnreadableConfig replaces the watched main file in three
// ways and checks that each is logged once, that the running config
// stays, and that restoring the file clears the reload error.
func TestWatchReportsUnreadableConfig(t *testing.T) {
	p := newProject(t, "")
	content := "[runner]\nwatch = true\nshutdown_timeout = \"5s\"\n\n[jobs.first]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n"
	writeFile(t, p.config, content)
	d := p.startDaemon()

	// Each replacement runs after the file was removed.
	replacements := []struct {
		name    string
		replace func() error
	}{
		{"deleted", func() error { return nil }},
		{"folder", func() error { return os.Mkdir(p.config, 0o700) }},
		{"named pipe", func() error { return syscall.Mkfifo(p.config, 0o600) }},
	}
	for i, r := range replacements {
		if err := os.Remove(p.config); err != nil {
			t.Fatal(err)
		}
		if err := r.replace(); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		waitFor(t, "the "+r.name+" config to be reported", func() bool {
			return strings.Count(d.log(), "reload rejected") == i+1
		})
		time.Sleep(2 * watchEvery)
		if n := strings.Count(d.log(), "reload rejected"); n != i+1 {
			t.Errorf("%s config: %d rejected reloads in all, want %d, one per change", r.name, n, i+1)
		}
		if err := os.RemoveAll(p.config); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p.config, content)
		waitFor(t, "the reload error to clear after the "+r.name+" config was restored", func() bool {
			status := p.status()
			return status.Daemon != nil && status.Daemon.ReloadError == ""
		})
		if _, ok := p.list()["first"]; !ok {
			t.Errorf("%s config: the running config lost its job", r.name)
		}
	}
	d.stop()
}

// TestReloadDuringShutdownRejected reloads a config with a new job and
// a new exec listener while the daemon waits for a running job to stop.
// The reload is rejected, because nothing it adds would start.
func TestReloadDuringShutdownRejected(t *testing.T) {
	p := newProject(t, `[jobs.slow]
command = ["sh", "-c", "trap 'echo term' TERM; touch started; for i in 1 2 3 4 5 6; do sleep 1; done"]
schedule = "0 0 1 1 *"
`)
	d := p.startDaemon()
	client := p.command("run-job", "slow")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer client.Wait()
	p.waitForFile("the slow run", "started")
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.waitLog("stopping running jobs")

	p.write(`[jobs.slow]
command = ["true"]
schedule = "0 0 1 1 *"

[jobs.added]
command = ["touch", "added-ran"]
every = "1s"

[listeners.watcher]
kind = "exec"
command = ["sh", "-c", "touch listener-ran; exec sleep 60"]
`)
	res := p.run("reload")
	if res.code != 1 || !strings.Contains(res.stderr, "stopping") {
		t.Errorf("reload during shutdown = %d %q, want 1 and a message that the daemon is stopping", res.code, res.stderr)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop within 15s of SIGTERM")
	}
	if strings.Contains(d.log(), "config reloaded") {
		t.Errorf("a reload during shutdown was applied:\n%s", d.log())
	}
	if n := strings.Count(d.log(), "reload ignored because the daemon is stopping"); n != 2 {
		t.Errorf("%d reloads were logged as ignored, want 2: the command and SIGHUP", n)
	}
}
