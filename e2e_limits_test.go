package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// lookupNobody returns the user nobody, skipping the test on a machine
// without one.
func lookupNobody(t *testing.T) *user.User {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	return u
}

// sharedDir returns a new folder that every user may write to, for a job
// that runs as another user.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent-runner-limits")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A job with user and umask runs as that user, with its HOME, USER and
// LOGNAME, and creates files under its umask, both in a run-job without a
// daemon and in one the daemon runs.
func TestRunJobAsUserWithUmask(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a job as another user; TestCheckRejectsUserWithoutRoot covers the refusal")
	}
	nobody := lookupNobody(t)
	out := sharedDir(t)
	p := newProject(t, fmt.Sprintf(`[jobs.who]
command = ["sh", "-c", "id -un; id -u; umask; echo HOME=$HOME USER=$USER LOGNAME=$LOGNAME; touch %[1]s/$AGENT_RUNNER_TRIGGER"]
every = "1h"
user = "nobody"
umask = "027"
working_dir = "/"

[jobs.own-home]
command = ["sh", "-c", "echo HOME=$HOME USER=$USER"]
every = "1h"
user = "nobody"
working_dir = "/"
env = { HOME = "/srv/own-home" }
`, out))
	want := fmt.Sprintf("nobody\n%s\n0027\nHOME=%s USER=nobody LOGNAME=nobody\n", nobody.Uid, nobody.HomeDir)

	res := p.run("run-job", "who")
	if res.code != 0 {
		t.Fatalf("run-job who exit = %d: %s", res.code, res.stderr)
	}
	if res.stdout != want {
		t.Errorf("run-job who stdout = %q, want %q", res.stdout, want)
	}
	checkCreated(t, filepath.Join(out, "manual"), nobody)

	res = p.run("run-job", "own-home")
	if res.stdout != "HOME=/srv/own-home USER=nobody\n" {
		t.Errorf("run-job own-home stdout = %q, want the job's own HOME", res.stdout)
	}

	d := p.startDaemon()
	defer d.stop()
	if err := os.Remove(filepath.Join(out, "manual")); err != nil {
		t.Fatal(err)
	}
	res = p.run("run-job", "who")
	if res.code != 0 {
		t.Fatalf("run-job who through the daemon exit = %d: %s", res.code, res.stderr)
	}
	if res.stdout != want {
		t.Errorf("run-job who through the daemon stdout = %q, want %q", res.stdout, want)
	}
	checkCreated(t, filepath.Join(out, "manual"), nobody)
}

// checkCreated checks that file belongs to u and has mode 0640, which is
// 0666 under the umask 027.
func checkCreated(t *testing.T, file string, u *user.User) {
	t.Helper()
	info, err := os.Stat(file)
	if err != nil {
		t.Fatalf("the job did not create its file: %v", err)
	}
	if mode := info.Mode().Perm(); mode != 0o640 {
		t.Errorf("%s has mode %o, want 640 from umask 027", file, mode)
	}
	owner := strconv.FormatUint(uint64(info.Sys().(*syscall.Stat_t).Uid), 10)
	if owner != u.Uid {
		t.Errorf("%s belongs to uid %s, want %s (%s)", file, owner, u.Uid, u.Username)
	}
}

// A job limited to one CPU second is killed in its busy loop, and run-job
// exits with the status of the signal.
func TestRunJobCPUTimeLimit(t *testing.T) {
	p := newProject(t, `[jobs.spin]
command = ["sh", "-c", "while :; do :; done"]
every = "1h"
cpu_time = "1s"
nofile = 50
`)
	res := p.run("run-job", "spin")
	xcpu, kill := 128+int(syscall.SIGXCPU), 128+int(syscall.SIGKILL)
	if res.code != xcpu && res.code != kill {
		t.Errorf("run-job spin exit = %d, want %d (SIGXCPU) or %d (SIGKILL): %s", res.code, xcpu, kill, res.stderr)
	}
}

// ownNice returns the nice value of the test process, which its children
// inherit.
func ownNice(t *testing.T) int {
	t.Helper()
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	return 20 - prio
}

// check and doctor, run by a user that is not root, report a job that
// switches users, lowers its nice value or raises its file limit, each
// with its file, line, key and fix.
func TestCheckRejectsUserWithoutRoot(t *testing.T) {
	dir := sharedDir(t)
	config := filepath.Join(dir, "config.toml")
	body := `[runner]
state_dir = "state"

[jobs.as-root]
command = ["true"]
every = "1h"
user = "root"
nice = -5
nofile = 1073741824
`
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var credential *syscall.Credential
	runner := fmt.Sprintf("uid %d", os.Geteuid())
	if u, err := user.Current(); err == nil {
		runner = fmt.Sprintf("user %q (uid %s)", u.Username, u.Uid)
	}
	if os.Geteuid() == 0 {
		nobody := lookupNobody(t)
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
		runner = fmt.Sprintf("user %q (uid %s)", nobody.Username, nobody.Uid)
		// The binary sits in a private temporary folder.
		if err := os.Chmod(filepath.Dir(binary), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wants := []string{
		fmt.Sprintf(`config.toml:7: jobs.as-root.user: user = "root" runs the job as uid 0, but the runner runs as %s and only root can switch users: run the daemon as root, or remove user`, runner),
		fmt.Sprintf("config.toml:8: jobs.as-root.nice: nice -5 is below the runner's own nice value %[1]d, and only root may lower it: run the daemon as root, or use a nice value of at least %[1]d", ownNice(t)),
		"config.toml:9: jobs.as-root.nofile: nofile needs a hard limit of 1073741824, above the runner's own hard limit of",
	}
	for _, command := range []string{"check", "doctor"} {
		cmd := exec.Command(binary, command, "--config", config)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credential}
		output, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s exited 0, want a failure: %s", command, output)
		}
		for _, want := range wants {
			if !strings.Contains(string(output), want) {
				t.Errorf("%s output lacks %q:\n%s", command, want, output)
			}
		}
	}
}
