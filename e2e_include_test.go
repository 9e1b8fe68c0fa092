package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// includeProject returns a project whose main file sets runner and
// include; each test writes its jobs into conf.d.
func includeProject(t *testing.T, runner string) *project {
	t.Helper()
	p := newProject(t, "")
	main := "include = [\"conf.d/*.toml\"]\n\n[runner]\nshutdown_timeout = \"5s\"\nkill_grace = \"1s\"\n" + runner +
		"\n[jobs.base]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n"
	if err := os.WriteFile(p.config, []byte(main), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p.path("conf.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeIncluded writes conf.d/name, or removes it when content is "".
func (p *project) writeIncluded(name, content string) {
	p.t.Helper()
	path := filepath.Join(p.dir, "conf.d", name)
	if content == "" {
		if err := os.Remove(path); err != nil {
			p.t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func TestIncludeSeenByCommands(t *testing.T) {
	p := includeProject(t, "")
	p.writeIncluded("extra.toml", "[jobs.extra]\ncommand = [\"sh\", \"-c\", \"echo from-conf-d\"]\nschedule = \"0 0 1 1 *\"\n")

	res := p.run("check")
	if res.code != 0 {
		t.Fatalf("check exit %d: %s", res.code, res.stderr)
	}
	for _, want := range []string{"OK, 2 jobs", "included " + p.path("conf.d/extra.toml")} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("check output %q lacks %q", res.stdout, want)
		}
	}
	if _, ok := p.list()["extra"]; !ok {
		t.Errorf("list lacks the included job")
	}
	if res := p.run("run-job", "extra"); res.code != 0 || !strings.Contains(res.stdout, "from-conf-d") {
		t.Errorf("run-job extra = %d %q %q, want 0 and its output", res.code, res.stdout, res.stderr)
	}
	if res := p.run("next", "extra", "-n", "1"); res.code != 0 {
		t.Errorf("next extra = %d %q", res.code, res.stderr)
	}
	if res := p.run("doctor"); !strings.Contains(res.stdout, "is valid: 2 jobs") {
		t.Errorf("doctor output lacks the included job:\n%s", res.stdout)
	}

	p.writeIncluded("bad.toml", "[runner]\nwatch = true\n")
	res = p.run("check")
	want := p.path("conf.d/bad.toml") + ":1: runner: [runner] applies to the whole runner"
	if res.code != 1 || !strings.Contains(res.stderr, want) {
		t.Errorf("check with [runner] in an included file = %d %q, want 1 and %q", res.code, res.stderr, want)
	}
}

func TestIncludeReloadAppliesDiff(t *testing.T) {
	p := includeProject(t, "")
	p.writeIncluded("a.toml", `[jobs.changed]
command = ["sh", "-c", "echo old >> changed"]
every = "1s"

[jobs.removed]
command = ["sh", "-c", "echo x >> removed"]
every = "1s"
`)
	d := p.startDaemon()
	waitFor(t, "the included jobs to run", func() bool {
		return len(lines(t, p.path("changed"))) >= 1 && len(lines(t, p.path("removed"))) >= 1
	})
	hashBefore := p.status().Daemon.ConfigHash

	p.writeIncluded("a.toml", "[jobs.changed]\ncommand = [\"sh\", \"-c\", \"echo new >> changed\"]\nevery = \"1s\"\n")
	p.writeIncluded("b.toml", "[jobs.added]\ncommand = [\"sh\", \"-c\", \"echo y >> added\"]\nevery = \"1s\"\n")
	res := p.run("reload")
	if res.code != 0 {
		t.Fatalf("reload exit %d: %s", res.code, res.stderr)
	}
	if want := "jobs: 1 added, 1 removed, 1 changed"; !strings.Contains(res.stdout, want) {
		t.Errorf("reload output %q lacks %q", res.stdout, want)
	}
	waitFor(t, "the added job", func() bool { return len(lines(t, p.path("added"))) >= 1 })
	waitFor(t, "the changed job's new command", func() bool {
		return strings.Contains(strings.Join(lines(t, p.path("changed")), " "), "new")
	})
	if _, ok := p.list()["removed"]; ok {
		t.Errorf("the removed job is still listed")
	}
	if hash := p.status().Daemon.ConfigHash; hash == hashBefore {
		t.Errorf("status shows the same config hash %s after included files changed", hash)
	}

	// An invalid included file is rejected and the running config stays.
	p.writeIncluded("c.toml", "[jobs.bad]\ncommand = [\"true\"]\nevery = \"soon\"\n")
	res = p.run("reload")
	want := p.path("conf.d/c.toml") + ":3: jobs.bad.every"
	if res.code != 1 || !strings.Contains(res.stderr, want) {
		t.Errorf("reload with an invalid included file = %d %q, want 1 and %q", res.code, res.stderr, want)
	}
	if status := p.status(); status.Daemon == nil || !strings.Contains(status.Daemon.ReloadError, want) {
		t.Errorf("status after the rejected reload = %+v, want the problem", status.Daemon)
	}
	before := len(lines(t, p.path("added")))
	waitFor(t, "the running jobs to go on", func() bool { return len(lines(t, p.path("added"))) > before })

	// A name that two files define is rejected too.
	p.writeIncluded("c.toml", "[jobs.added]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res = p.run("reload")
	want = `job "added" is already defined in ` + p.path("conf.d/b.toml") + " on line 1"
	if res.code != 1 || !strings.Contains(res.stderr, p.path("conf.d/c.toml")+":1: jobs.added: "+want) {
		t.Errorf("reload with a duplicate job = %d %q, want 1 and %q", res.code, res.stderr, want)
	}
	d.stop()
}

func TestIncludeWatchSeesNewFile(t *testing.T) {
	p := includeProject(t, "watch = true\n")
	d := p.startDaemon()

	p.writeIncluded("new.toml", "[jobs.second]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	waitFor(t, "the new included file to load", func() bool { _, ok := p.list()["second"]; return ok })

	p.writeIncluded("new.toml", "[jobs.second]\ncommand = [\"true\"]\nevery = \"soon\"\n")
	d.waitLog("reload rejected")
	if _, ok := p.list()["second"]; !ok {
		t.Errorf("a rejected included file replaced the running config")
	}

	p.writeIncluded("new.toml", "")
	waitFor(t, "the removed file's job to go", func() bool { _, ok := p.list()["second"]; return !ok })
	d.stop()
	if n := strings.Count(d.log(), "reload rejected"); n != 1 {
		t.Errorf("the invalid file was reloaded %d times, want once until it changes", n)
	}
}

func TestIncludeWatchSeesUnreadableFile(t *testing.T) {
	p := includeProject(t, "watch = true\n")
	d := p.startDaemon()
	if err := syscall.Mkfifo(p.path("conf.d/pipe.toml"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.waitLog("reload rejected")
	if !strings.Contains(d.log(), "pipe.toml") {
		t.Errorf("the rejected reload does not name the FIFO:\n%s", d.log())
	}
	d.stop()
}

// TestIncludeWatchUnreadableFolder makes conf.d unreadable
// under a watching daemon: a link to itself fails for root too, as mode
// 0 does for other users. The reload is rejected once and the folder's
// jobs stay, and the folder's return clears the error.
func TestIncludeWatchUnreadableFolder(t *testing.T) {
	p := includeProject(t, "watch = true\n")
	p.writeIncluded("extra.toml", "[jobs.extra]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n")
	d := p.startDaemon()

	folder, aside := p.path("conf.d"), p.path("conf.d.aside")
	if err := os.Rename(folder, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(folder, folder); err != nil {
		t.Fatal(err)
	}
	d.waitLog("reload rejected")
	if !strings.Contains(d.log(), "read included folder: "+folder) {
		t.Errorf("the rejected reload does not name the folder %s", folder)
	}
	if _, ok := p.list()["extra"]; !ok {
		t.Errorf("the unreadable folder's job was removed")
	}
	time.Sleep(2 * watchEvery)
	if n := strings.Count(d.log(), "reload rejected"); n != 1 {
		t.Errorf("the unreadable folder was reloaded %d times, want once", n)
	}

	if err := os.Remove(folder); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, folder); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload error to clear once the folder is back", func() bool {
		status := p.status()
		return status.Daemon != nil && status.Daemon.ReloadError == ""
	})
	d.stop()
}
