package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
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

// requireTool returns the path of a program a test needs, skipping the
// test when it is missing, except under CI, where it fails.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing", name)
		}
		t.Skipf("%s is missing", name)
	}
	return path
}

// preloadSource is a shared object whose constructor appends the real
// and effective uid of every process that loads it to a file.
const preloadSource = `#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void record(void) {
	FILE *f = fopen(PROOF, "a");
	if (f) { fprintf(f, "uid=%d euid=%d\n", getuid(), geteuid()); fclose(f); }
}
`

// A job's env_file may be writable by the job's user. Its LD_PRELOAD must
// never load into a process that runs as root, such as the limits shim
// before it switches users, while the job still gets the file's
// variables.
func TestRunJobAsUserIgnoresPreloadAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a job as another user")
	}
	gcc := requireTool(t, "gcc")
	nobody := lookupNobody(t)
	shared := sharedDir(t)
	source, library, proof := filepath.Join(shared, "record.c"), filepath.Join(shared, "record.so"), filepath.Join(shared, "proof.txt")
	if err := os.WriteFile(source, []byte(preloadSource), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command(gcc, "-shared", "-fPIC", fmt.Sprintf("-DPROOF=%q", proof), "-o", library, source)
	if output, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the shared object: %v\n%s", err, output)
	}
	if err := os.WriteFile(proof, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(proof, 0o666); err != nil {
		t.Fatal(err)
	}
	p := newProject(t, `[jobs.app]
command = ["sh", "-c", "echo APP_MODE=$APP_MODE"]
every = "1h"
user = "nobody"
umask = "027"
working_dir = "/"
env_file = "app.env"
`)
	envFile := "APP_MODE=prod\nLD_PRELOAD=" + library + "\n"
	if err := os.WriteFile(p.path("app.env"), []byte(envFile), 0o644); err != nil {
		t.Fatal(err)
	}

	res := p.run("run-job", "app")
	if res.code != 0 {
		t.Fatalf("run-job app exit = %d: %s", res.code, res.stderr)
	}
	if res.stdout != "APP_MODE=prod\n" {
		t.Errorf("run-job app stdout = %q, want the env_file's APP_MODE=prod", res.stdout)
	}
	data, err := os.ReadFile(proof)
	if err != nil {
		t.Fatal(err)
	}
	records := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, record := range records {
		if strings.Contains(record, "uid=0 ") || strings.HasSuffix(record, "euid=0") {
			t.Errorf("the env_file's LD_PRELOAD ran as root: %q", records)
			break
		}
	}
	// The job's own shell loads the library as nobody, which shows that
	// the library works and that the check above could fail.
	want := fmt.Sprintf("uid=%s euid=%s", nobody.Uid, nobody.Uid)
	if !slices.Contains(records, want) {
		t.Errorf("records %q lack %q from the job's shell", records, want)
	}
}

// A daemon that runs as root without CAP_SETUID, CAP_SETGID, CAP_SYS_NICE
// and CAP_SYS_RESOURCE, as in a container, cannot switch users, lower its
// nice value or raise a hard limit. check and doctor report each with the
// missing capability, rather than pass a config whose every run fails.
func TestCheckRejectsLimitsWithoutCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root; TestCheckRejectsUserWithoutRoot covers a runner that is not root")
	}
	setpriv := requireTool(t, "setpriv")
	lookupNobody(t)
	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	nofile := limit.Max + 1
	if data, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if nrOpen, _ := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); nofile > nrOpen {
			t.Skipf("the hard RLIMIT_NOFILE %d is at fs.nr_open, so no nofile lies between them", limit.Max)
		}
	}
	p := newProject(t, fmt.Sprintf(`[jobs.limited]
command = ["true"]
every = "1h"
user = "nobody"
nice = %d
nofile = %d
`, ownNice(t)-5, nofile))
	wants := []string{
		`config.toml:8: jobs.limited.user: user = "nobody" runs the job as uid`,
		"but the runner runs as root without CAP_SETUID, which switching users needs: add CAP_SETUID to the unit's CapabilityBoundingSet=",
		`config.toml:8: jobs.limited.user: user = "nobody" sets the groups of the job, but the runner runs as root without CAP_SETGID`,
		fmt.Sprintf("config.toml:9: jobs.limited.nice: nice %d is below the runner's own nice value %d, and the runner runs as root without CAP_SYS_NICE", ownNice(t)-5, ownNice(t)),
		fmt.Sprintf("config.toml:10: jobs.limited.nofile: nofile needs a hard limit of %d, above the runner's own hard limit of %d, and the runner runs as root without CAP_SYS_RESOURCE", nofile, limit.Max),
		"docker run --cap-add SYS_RESOURCE",
	}
	for _, command := range []string{"check", "doctor"} {
		// Root gets the bounding set as its effective set at exec.
		cmd := exec.Command(setpriv, "--inh-caps=-all", "--bounding-set=-setuid,-setgid,-sys_nice,-sys_resource",
			"--", binary, command, "--config", p.config)
		cmd.Dir = p.dir
		output, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s without the capabilities exited 0, want a failure: %s", command, output)
		}
		for _, want := range wants {
			if !strings.Contains(string(output), want) {
				t.Errorf("%s output lacks %q:\n%s", command, want, output)
			}
		}
	}
}
