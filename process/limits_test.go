package process

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// runShell runs sh -c script through a Reaper with spec's limits and
// identity, and returns its output lines, each prefixed by its stream, and
// how it ended.
func runShell(t *testing.T, spec Spec, script string) ([]string, Exit) {
	t.Helper()
	lines, exit, err := tryShell(t, spec, script)
	if err != nil {
		t.Fatalf("run %q: %v", script, err)
	}
	return lines, exit
}

func tryShell(t *testing.T, spec Spec, script string) ([]string, Exit, error) {
	t.Helper()
	reaper, err := NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer reaper.Close()
	spec.Path = "/bin/sh"
	spec.Args = []string{"sh", "-c", script}
	if spec.Env == nil {
		spec.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	}
	spec.Grace = time.Second
	// The timeout only keeps a broken limit from hanging the suite.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var lines []string
	exit, err := reaper.Run(ctx, spec, func(line Line) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, line.Stream+": "+line.Text)
	})
	if exit.Stopped != nil {
		t.Fatalf("run %q: stopped after a minute: %v", script, exit.Stopped)
	}
	return lines, exit, err
}

// stdout runs script and returns its standard output, failing the test
// when it exits with an error.
func stdout(t *testing.T, spec Spec, script string) []string {
	t.Helper()
	lines, exit := runShell(t, spec, script)
	if exit.Err != nil {
		t.Fatalf("run %q: %v, output %q", script, exit.Err, lines)
	}
	var out []string
	for _, line := range lines {
		if text, ok := strings.CutPrefix(line, "stdout: "); ok {
			out = append(out, text)
		}
	}
	return out
}

func TestShimUmask(t *testing.T) {
	got := stdout(t, Spec{Limits: config.Limits{Umask: 0o027, UmaskSet: true}}, "umask")
	if !slices.Equal(got, []string{"0027"}) {
		t.Errorf("umask printed %q, want 0027", got)
	}
}

func TestShimUmaskZero(t *testing.T) {
	got := stdout(t, Spec{Limits: config.Limits{Umask: 0, UmaskSet: true}}, "umask")
	if !slices.Equal(got, []string{"0000"}) {
		t.Errorf("umask printed %q, want 0000", got)
	}
}

// niceOf reads the nice value, field 19 of /proc/PID/stat, from the
// output of cat /proc/self/stat.
func niceOf(t *testing.T, stat []string) int {
	t.Helper()
	if len(stat) != 1 {
		t.Fatalf("cat /proc/self/stat printed %q, want one line", stat)
	}
	end := strings.LastIndexByte(stat[0], ')')
	fields := strings.Fields(stat[0][end+1:])
	// Fields after the command name start at field 3, the state.
	nice, err := strconv.Atoi(fields[19-3])
	if err != nil {
		t.Fatalf("parse nice from %q: %v", stat[0], err)
	}
	return nice
}

func TestShimNice(t *testing.T) {
	got := niceOf(t, stdout(t, Spec{Limits: config.Limits{Nice: 7, NiceSet: true}}, "cat /proc/self/stat"))
	if got != 7 {
		t.Errorf("child's nice value is %d, want 7", got)
	}
}

func TestShimNiceNegative(t *testing.T) {
	requireRoot(t)
	got := niceOf(t, stdout(t, Spec{Limits: config.Limits{Nice: -3, NiceSet: true}}, "cat /proc/self/stat"))
	if got != -3 {
		t.Errorf("child's nice value is %d, want -3", got)
	}
}

func TestShimNoFile(t *testing.T) {
	got := stdout(t, Spec{Limits: config.Limits{NoFile: 77}}, "ulimit -n; ulimit -Hn")
	if !slices.Equal(got, []string{"77", "77"}) {
		t.Errorf("ulimit -n and -Hn printed %q, want 77 and 77", got)
	}
}

// Go's runtime raises its own soft RLIMIT_NOFILE to the hard limit at
// start and lowers it again for its children. The shim is a Go program
// too, so a child through it must still get the daemon's soft limit, not
// the hard one.
func TestShimKeepsDaemonNoFile(t *testing.T) {
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	if saved.Max < 128 {
		t.Skipf("hard RLIMIT_NOFILE %d is too low to lower the soft one", saved.Max)
	}
	soft := saved.Max / 2
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: soft, Max: saved.Max}); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)

	want := []string{strconv.FormatUint(soft, 10)}
	direct := stdout(t, Spec{}, "ulimit -n")
	if !slices.Equal(direct, want) {
		t.Fatalf("ulimit -n printed %q without the shim, want %q", direct, want)
	}
	shimmed := stdout(t, Spec{Limits: config.Limits{Umask: 0o022, UmaskSet: true}}, "ulimit -n")
	if !slices.Equal(shimmed, want) {
		t.Errorf("ulimit -n printed %q through the shim, want %q as without it", shimmed, want)
	}
}

// A 200 MB variable cannot fit under a 64 MiB RLIMIT_DATA, and a 1 MB one
// can, so the shell fails only for the first.
func TestShimMemoryLimit(t *testing.T) {
	spec := Spec{Limits: config.Limits{MemoryMax: 64 << 20}}
	const fill = `x=$(head -c %s /dev/zero | tr '\0' a); echo ${#x}`
	small := stdout(t, spec, strings.Replace(fill, "%s", "1000000", 1))
	if !slices.Equal(small, []string{"1000000"}) {
		t.Errorf("a 1 MB variable printed %q, want its length 1000000", small)
	}
	lines, exit := runShell(t, spec, strings.Replace(fill, "%s", "200000000", 1))
	if exit.Err == nil {
		t.Errorf("a 200 MB variable under a 64 MiB limit succeeded with %q, want a failure", lines)
	}
	if slices.Contains(lines, "stdout: 200000000") {
		t.Errorf("the shell held a 200 MB variable under a 64 MiB limit: %q", lines)
	}
}

// The shim allocates after it sets RLIMIT_DATA, so a limit far below its
// own runtime's mappings must still let it exec.
func TestShimMemoryLimitLow(t *testing.T) {
	got := stdout(t, Spec{Limits: config.Limits{MemoryMax: 4 << 20}}, "echo started")
	if !slices.Equal(got, []string{"started"}) {
		t.Errorf("output %q, want started", got)
	}
}

func TestShimCPUTime(t *testing.T) {
	lines, exit := runShell(t, Spec{Limits: config.Limits{CPUTime: time.Second}}, "while :; do :; done")
	xcpu, kill := 128+int(syscall.SIGXCPU), 128+int(syscall.SIGKILL)
	if exit.Code != xcpu && exit.Code != kill {
		t.Errorf("busy loop ended with code %d (%v), output %q; want %d for SIGXCPU or %d for SIGKILL", exit.Code, exit.Err, lines, xcpu, kill)
	}
}

func TestShimStatusFDClosed(t *testing.T) {
	got := stdout(t, Spec{Limits: config.Limits{NoFile: 64}}, "ls /proc/$$/fd")
	if slices.Contains(got, strconv.Itoa(shimStatusFD)) {
		t.Errorf("the child has the shim's status descriptor open: %q", got)
	}
	if slices.Contains(got, strconv.Itoa(shimRequestFD)) {
		t.Errorf("the child has the shim's request descriptor open: %q", got)
	}
}

// A missing working folder is named in the start error, with and
// without the shim.
func TestChdirFailure(t *testing.T) {
	for _, limits := range []config.Limits{{}, {NoFile: 64}} {
		_, exit, err := tryShell(t, Spec{Dir: "/nonexistent/folder", Limits: limits}, "true")
		if err == nil || !strings.Contains(err.Error(), "chdir /nonexistent/folder: no such file or directory") {
			t.Errorf("limits %+v: got error %v, want a start error about chdir", limits, err)
		}
		if exit.Code != -1 {
			t.Errorf("limits %+v: got exit code %d, want -1 for a child that never started", limits, exit.Code)
		}
	}
}

// The shim's request goes through a memfd, so an environment far larger
// than a pipe's buffer reaches the program whole.
func TestShimLargeEnvironment(t *testing.T) {
	// Linux caps each variable at 128 KiB, so five make up 300 KiB.
	value := strings.Repeat("v", 60<<10)
	env := []string{"PATH=/usr/bin:/bin"}
	for i := range 5 {
		env = append(env, fmt.Sprintf("BIG%d=%s", i, value))
	}
	spec := Spec{Env: append(env, "LAST=end"), Limits: config.Limits{NoFile: 64}}
	got := stdout(t, spec, `echo ${#BIG0} ${#BIG4} $LAST`)
	size := strconv.Itoa(len(value))
	want := []string{size + " " + size + " end"}
	if !slices.Equal(got, want) {
		t.Errorf("output %q, want %q", got, want)
	}
}

// A shell cannot start under a 4 KiB RLIMIT_DATA, and the error of the
// run points at memory_max rather than at the signal alone.
func TestMemoryMaxHint(t *testing.T) {
	lines, exit := runShell(t, Spec{Limits: config.Limits{MemoryMax: 4 << 10}}, "echo started")
	if exit.Err == nil {
		t.Fatalf("a shell under a 4 KiB limit succeeded with %q, want a signal", lines)
	}
	if !strings.Contains(exit.Err.Error(), "killed by SIG") {
		t.Errorf("got error %v, want the signal", exit.Err)
	}
	if !strings.Contains(exit.Err.Error(), "memory_max is 4096 bytes") {
		t.Errorf("got error %v, want a hint at memory_max", exit.Err)
	}
}

// A signal without memory_max gets no hint.
func TestMemoryMaxHintUnset(t *testing.T) {
	_, exit := runShell(t, Spec{Limits: config.Limits{NoFile: 64}}, "kill -SEGV $$")
	if exit.Err == nil || strings.Contains(exit.Err.Error(), "memory_max") {
		t.Errorf("got error %v, want the signal without a hint", exit.Err)
	}
}

func TestShimExecFailure(t *testing.T) {
	file := t.TempDir() + "/not-executable"
	if err := os.WriteFile(file, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reaper, err := NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer reaper.Close()
	if os.Geteuid() == 0 {
		// Root may run a file without execute bits only when some bit
		// is set, so clear them all.
		if err := os.Chmod(file, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = reaper.Run(context.Background(), Spec{
		Path: file, Args: []string{file}, Limits: config.Limits{NoFile: 64},
	}, func(Line) {})
	if err == nil || !strings.Contains(err.Error(), "exec "+file) || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("got error %v, want exec %s: permission denied", err, file)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users or lower the nice value")
	}
}

// nobody returns the Identity of the user nobody, as the config resolves
// it.
func nobody(t *testing.T) config.Identity {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return config.Identity{Set: true, User: u.Username, Home: u.HomeDir, UID: uint32(uid), GID: uint32(gid), Groups: []uint32{uint32(gid)}}
}

const idScript = "id -u; id -g; id -G; umask"

func TestIdentityWithoutShim(t *testing.T) {
	requireRoot(t)
	id := nobody(t)
	got := stdout(t, Spec{Dir: "/", Identity: id}, idScript)
	want := []string{decimal(id.UID), decimal(id.GID), decimal(id.GID)}
	if len(got) != 4 || !slices.Equal(got[:3], want) {
		t.Errorf("id printed %q, want uid, gid and groups %q", got, want)
	}
}

func TestIdentityThroughShim(t *testing.T) {
	requireRoot(t)
	id := nobody(t)
	spec := Spec{Dir: "/", Identity: id, Limits: config.Limits{Umask: 0o077, UmaskSet: true, Nice: -2, NiceSet: true, NoFile: 99}}
	got := stdout(t, spec, idScript+"; ulimit -n")
	want := []string{decimal(id.UID), decimal(id.GID), decimal(id.GID), "0077", "99"}
	if !slices.Equal(got, want) {
		t.Errorf("output %q, want %q", got, want)
	}
	// The nice value was lowered before the switch gave up root.
	if nice := niceOf(t, stdout(t, spec, "cat /proc/self/stat")); nice != -2 {
		t.Errorf("child's nice value is %d, want -2", nice)
	}
}

// A child running as nobody may not enter a folder that only root may
// enter, because both paths enter it after the switch, as os/exec does.
func TestIdentityDirPermission(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	id := nobody(t)
	want := fmt.Sprintf("chdir %s as user %q (uid %d): permission denied", dir, id.User, id.UID)
	for _, limits := range []config.Limits{{}, {NoFile: 64}} {
		_, _, err := tryShell(t, Spec{Dir: dir, Identity: id, Limits: limits}, "true")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("limits %+v: got error %v, want %q", limits, err, want)
		}
	}
}

func TestIdentityRefusedWithoutRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as root, which may switch users; the e2e check test covers the refusal")
	}
	other := config.Identity{Set: true, User: "root", Home: "/root", UID: 0, GID: 0, Groups: []uint32{0}}
	_, _, err := tryShell(t, Spec{Identity: other}, "true")
	if err == nil || !strings.Contains(err.Error(), "only root can switch users") {
		t.Errorf("got error %v, want a refusal to switch users", err)
	}
}

func decimal(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// The benchmarks show what the shim's extra exec of the running binary
// adds to a run of /bin/true.
func BenchmarkRunDirect(b *testing.B) { benchmarkRun(b, config.Limits{}) }

func BenchmarkRunShim(b *testing.B) { benchmarkRun(b, config.Limits{NoFile: 1024}) }

func benchmarkRun(b *testing.B, limits config.Limits) {
	reaper, err := NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer reaper.Close()
	spec := Spec{Path: "/bin/true", Args: []string{"true"}, Limits: limits}
	for b.Loop() {
		exit, err := reaper.Run(context.Background(), spec, func(Line) {})
		if err != nil {
			b.Fatal(err)
		}
		if exit.Err != nil {
			b.Fatal(exit.Err)
		}
	}
}

// RLIMIT_NPROC counts every process and thread of the child's user. The
// test runs as a uid that no other process uses, so with a cap of one the
// shell itself uses it up and cannot fork, and a cap of two leaves room
// for one child. The shim's own threads must not count.
func TestShimNProc(t *testing.T) {
	requireRoot(t)
	const unused = 3999999901
	id := config.Identity{Set: true, UID: unused, GID: unused, Groups: []uint32{unused}}
	script := "/bin/true && echo forked"
	two := stdout(t, Spec{Dir: "/", Identity: id, Limits: config.Limits{NProc: 2}}, script)
	if !slices.Equal(two, []string{"forked"}) {
		t.Errorf("with nproc 2 the shell printed %q, want forked", two)
	}
	lines, exit := runShell(t, Spec{Dir: "/", Identity: id, Limits: config.Limits{NProc: 1}}, script)
	if exit.Err == nil {
		t.Errorf("with nproc 1 the shell succeeded with %q, want a failed fork", lines)
	}
	if !slices.Contains(lines, "stderr: sh: 1: Cannot fork") {
		t.Errorf("with nproc 1 the shell printed %q, want its fork failure", lines)
	}
}

// A group without a user keeps uid 0 and replaces root's groups with the
// one group.
func TestIdentityGroupOnly(t *testing.T) {
	requireRoot(t)
	const gid = 3999999902
	id := config.Identity{Set: true, UID: 0, GID: gid, Groups: []uint32{gid}}
	got := stdout(t, Spec{Dir: "/", Identity: id}, "id -u; id -g; id -G")
	want := []string{"0", decimal(gid), decimal(gid)}
	if !slices.Equal(got, want) {
		t.Errorf("id printed %q, want %q", got, want)
	}
}

// A child that a signal ends has the signal's name as its error, without
// the description, which for SIGKILL only repeats "killed".
func TestSignalExitNamesSignal(t *testing.T) {
	_, exit := runShell(t, Spec{}, "kill -KILL $$")
	if exit.Err == nil || exit.Err.Error() != "killed by SIGKILL" {
		t.Errorf("got error %v, want killed by SIGKILL", exit.Err)
	}
}

// A real-time signal has no name in the signal table, so the error gives
// its number instead of ending in an empty name.
func TestSignalExitNamesUnnamedSignal(t *testing.T) {
	_, exit := runShell(t, Spec{}, "kill -40 $$")
	if exit.Err == nil || exit.Err.Error() != "killed by signal 40" {
		t.Errorf("got error %v, want killed by signal 40", exit.Err)
	}
	if exit.Code != 128+40 {
		t.Errorf("got exit code %d, want %d", exit.Code, 128+40)
	}
}
