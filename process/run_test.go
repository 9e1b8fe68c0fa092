package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// eachExitWatch runs test once with pidfds, where the kernel has them,
// and once with the waitid goroutine that kernels without them get.
func eachExitWatch(t *testing.T, test func(t *testing.T, reaper *Reaper)) {
	t.Run("pidfd", func(t *testing.T) {
		if !pidfdsWork() {
			t.Skip("this kernel gives no pidfds")
		}
		test(t, newTestReaper(t))
	})
	t.Run("waitid", func(t *testing.T) {
		saved := pidfdsWork
		pidfdsWork = func() bool { return false }
		t.Cleanup(func() { pidfdsWork = saved })
		test(t, newTestReaper(t))
	})
}

func newTestReaper(t *testing.T) *Reaper {
	t.Helper()
	return newTestReaperChecking(t, orphanCheck)
}

// newTestReaperChecking returns a reaper that looks for orphans every
// checkEvery.
func newTestReaperChecking(t *testing.T, checkEvery time.Duration) *Reaper {
	t.Helper()
	reaper, err := newReaper(slog.New(slog.NewTextHandler(io.Discard, nil)), checkEvery)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reaper.Close)
	return reaper
}

// shell returns the spec of sh -c script with a marker unique to the test.
func shell(t *testing.T, script string) Spec {
	marker := fmt.Sprintf("AGENT_RUNNER_RUN_ID=process-test-%d", time.Now().UnixNano())
	return Spec{
		Path:   "/bin/sh",
		Args:   []string{"sh", "-c", script},
		Dir:    t.TempDir(),
		Env:    []string{"PATH=/usr/bin:/bin", marker},
		Marker: marker,
		Grace:  time.Second,
	}
}

// collect gathers emitted lines. Its emit may be called from any
// goroutine.
type collect struct {
	mu    sync.Mutex
	lines []Line
}

func (c *collect) emit(line Line) {
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
}

func (c *collect) texts(stream string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var texts []string
	for _, line := range c.lines {
		if line.Stream == stream {
			texts = append(texts, line.Text)
		}
	}
	return texts
}

func TestRunSplitsStreamsAndKeepsExitStatus(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		var got collect
		spec := shell(t, `echo out1; echo err1 >&2; echo out2; printf 'no newline' >&2; exit 3`)
		exit, err := reaper.Run(context.Background(), spec, got.emit)
		if err != nil {
			t.Fatal(err)
		}
		if exit.Code != 3 || exit.Err == nil || exit.Stopped != nil {
			t.Errorf("exit = %+v, want status 3", exit)
		}
		if out := got.texts("stdout"); !slices.Equal(out, []string{"out1", "out2"}) {
			t.Errorf("stdout lines = %q", out)
		}
		if errs := got.texts("stderr"); !slices.Equal(errs, []string{"err1", "no newline"}) {
			t.Errorf("stderr lines = %q", errs)
		}
	})
}

// TestRunReadsOutputWhileTheChildRuns checks that lines arrive before the
// child exits, so a long run's output streams, and that a child writing
// more than a pipe holds does not stall.
func TestRunReadsOutputWhileTheChildRuns(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		dir := t.TempDir()
		gate := filepath.Join(dir, "gate")
		spec := shell(t, fmt.Sprintf(`seq 1 100000; echo ready
			i=0; while [ ! -e %[1]s ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
			[ -e %[1]s ] && echo after`, gate))
		var got collect
		var once sync.Once
		exit, err := reaper.Run(context.Background(), spec, func(line Line) {
			got.emit(line)
			if line.Text == "ready" {
				once.Do(func() { os.WriteFile(gate, nil, 0o600) })
			}
		})
		if err != nil || exit.Code != 0 {
			t.Fatalf("exit = %+v, err = %v", exit, err)
		}
		out := got.texts("stdout")
		if len(out) != 100002 || out[0] != "1" || out[99999] != "100000" || out[100001] != "after" {
			t.Errorf("got %d stdout lines, want 100002 ending in ready, after", len(out))
		}
	})
}

func TestRunCancelStopsTheGroup(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		dir := t.TempDir()
		pidFile := filepath.Join(dir, "pid")
		spec := shell(t, fmt.Sprintf(`trap '' TERM; sleep 300 & echo $! > %s; echo started; while :; do sleep 1; done`, pidFile))
		spec.Grace = 200 * time.Millisecond

		ctx, cancel := context.WithCancelCause(context.Background())
		cause := errors.New("stopped by the test")
		var once sync.Once
		start := time.Now()
		exit, err := reaper.Run(ctx, spec, func(line Line) {
			if line.Text == "started" {
				once.Do(func() { cancel(cause) })
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(exit.Stopped, cause) || exit.Code != 128+int(unix.SIGKILL) {
			t.Errorf("exit = %+v, want SIGKILL after the ignored SIGTERM, stopped by the test", exit)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("run took %v with a 200ms grace", elapsed)
		}

		if sleeper := readPID(t, pidFile); running(sleeper) {
			t.Errorf("the group's sleep %d still runs", sleeper)
		}
	})
}

// TestRunStopsWaitingForAHeldPipe runs a child whose escaped grandchild
// keeps stdout open and carries no marker, so nothing kills it: the run
// must end after the drain timeout with the output written before.
func TestRunStopsWaitingForAHeldPipe(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		dir := t.TempDir()
		pidFile := filepath.Join(dir, "pid")
		spec := shell(t, fmt.Sprintf(`echo before; env -i setsid sh -c 'echo $$ > %s; exec sleep 30' & sleep 0.2; echo last`, pidFile))
		var got collect
		start := time.Now()
		exit, err := reaper.Run(context.Background(), spec, got.emit)
		if err != nil || exit.Code != 0 {
			t.Fatalf("exit = %+v, err = %v", exit, err)
		}
		defer unix.Kill(readPID(t, pidFile), unix.SIGKILL)
		elapsed := time.Since(start)
		if elapsed < pipeDrainTimeout || elapsed > pipeDrainTimeout+5*time.Second {
			t.Errorf("run took %v, want the drain timeout of %v", elapsed, pipeDrainTimeout)
		}
		if out := got.texts("stdout"); !slices.Equal(out, []string{"before", "last"}) {
			t.Errorf("stdout lines = %q", out)
		}
	})
}

// TestRunReleasesDescriptors checks that runs leave no descriptor open,
// including runs that fail to start.
func TestRunReleasesDescriptors(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		before := openDescriptors(t)
		for range 20 {
			if _, err := reaper.Run(context.Background(), shell(t, `echo x`), func(Line) {}); err != nil {
				t.Fatal(err)
			}
			missing := shell(t, "")
			missing.Path = filepath.Join(t.TempDir(), "missing")
			if _, err := reaper.Run(context.Background(), missing, func(Line) {}); err == nil {
				t.Fatal("a missing program started")
			}
		}
		if after := openDescriptors(t); after > before {
			t.Errorf("%d descriptors open after 40 runs, %d before", after, before)
		}
	})
}

// readPID returns the process ID that a test's script wrote to path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid file %s holds %q", path, data)
	}
	return pid
}

// running reports whether pid is a process that has not exited.
func running(pid int) bool {
	return unix.Kill(pid, 0) == nil && !isZombie(pid)
}

func openDescriptors(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestRunKillsTheChildWhenEmitPanics checks that a panic in the caller's
// line handler, which the caller may recover, leaves no process behind.
func TestRunKillsTheChildWhenEmitPanics(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		before := openDescriptors(t)
		var pid int
		pidFile := filepath.Join(t.TempDir(), "escapee")
		spec := shell(t, fmt.Sprintf(`setsid sh -c 'echo $$ > %s; exec sleep 300' &
			printf unfinished >&2; sleep 0.2; echo first; exec sleep 300`, pidFile))
		spec.Started = func(p int) { pid = p }
		func() {
			defer func() {
				if v := recover(); v != "handler failed" {
					t.Errorf("recovered %v, want the handler's panic", v)
				}
			}()
			reaper.Run(context.Background(), spec, func(Line) { panic("handler failed") })
		}()
		if pid == 0 {
			t.Fatal("the child did not start")
		}
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("child %d is still there after the panic (kill 0: %v)", pid, err)
		}
		if after := openDescriptors(t); after > before {
			t.Errorf("%d descriptors open after the panic, %d before", after, before)
		}
		if escapee := readPID(t, pidFile); running(escapee) {
			t.Errorf("the escapee %d still runs after the panic", escapee)
		}
	})
}

// TestRunReadsLeftoversWhileTheyStop runs children that leave a process
// behind which writes more than a pipe holds when it gets SIGTERM. The
// run must read that output while the leftover stops, and end well within
// the grace period instead of waiting for SIGKILL.
func TestRunReadsLeftoversWhileTheyStop(t *testing.T) {
	writer := `trap 'head -c 262144 /dev/zero | tr "\0" x; echo; echo done-on-term; exit 0' TERM; while :; do sleep 0.05; done`
	tests := []struct {
		name, script string
	}{
		{"in the group", fmt.Sprintf(`sh -c '%s' & sleep 0.3; echo parent-exit`, strings.ReplaceAll(writer, "'", `'\''`))},
		{"escaped with the marker", fmt.Sprintf(`setsid sh -c '%s' & sleep 0.3; echo parent-exit`, strings.ReplaceAll(writer, "'", `'\''`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
				spec := shell(t, tt.script)
				spec.Grace = 10 * time.Second
				var got collect
				start := time.Now()
				exit, err := reaper.Run(context.Background(), spec, got.emit)
				if err != nil || exit.Code != 0 {
					t.Fatalf("exit = %+v, err = %v", exit, err)
				}
				if elapsed := time.Since(start); elapsed > 5*time.Second {
					t.Errorf("run took %v, want the leftover to stop on SIGTERM", elapsed)
				}
				out := got.texts("stdout")
				if !slices.Contains(out, "done-on-term") {
					t.Errorf("stdout lacks the leftover's last line; %d lines", len(out))
				}
			})
		})
	}
}

// TestRunPanicEndsTheStopOnCancel makes an unrelated process group take
// the process group ID of a child whose run ended in a panic of emit, then
// cancels the run's context. Nothing may signal the new group.
func TestRunPanicEndsTheStopOnCancel(t *testing.T) {
	reaper := newTestReaper(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pid int
	func() {
		defer func() { recover() }()
		spec := shell(t, `echo first; exec sleep 300`)
		spec.Started = func(p int) { pid = p }
		reaper.Run(ctx, spec, func(Line) { panic("handler failed") })
	}()

	// Writing ns_last_pid needs root, and another process may still take
	// the ID first.
	if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
		t.Skipf("cannot choose the next process ID: %v", err)
	}
	other := exec.Command("sleep", "30")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	if other.Process.Pid != pid {
		t.Skipf("process ID %d went to another process", pid)
	}
	cancel()
	exited := make(chan error, 1)
	go func() { exited <- other.Wait() }()
	select {
	case err := <-exited:
		t.Errorf("the unrelated group's process ended after the cancel: %v", err)
	case <-time.After(2 * time.Second):
	}
}

// TestRunStdinHeldByBackgroundChild runs a child that exits at once and
// leaves a background process that keeps its stdin open unread, with more
// input than a pipe buffer takes. The run must still end and stop that
// process, rather than wait for the rest of the input to be written.
func TestRunStdinHeldByBackgroundChild(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		dir := t.TempDir()
		pidFile := filepath.Join(dir, "pid")
		spec := shell(t, fmt.Sprintf(`exec 3<&0; sleep 30 <&3 & echo $! > %s; exit 0`, pidFile))
		spec.Stdin = []byte(strings.Repeat("input line\n", 20000))

		type result struct {
			exit Exit
			err  error
		}
		done := make(chan result, 1)
		go func() {
			exit, err := reaper.Run(context.Background(), spec, func(Line) {})
			done <- result{exit, err}
		}()
		select {
		case got := <-done:
			if got.err != nil || got.exit.Code != 0 {
				t.Errorf("exit = %+v, err = %v, want status 0", got.exit, got.err)
			}
		case <-time.After(10 * time.Second):
			unix.Kill(readPID(t, pidFile), unix.SIGKILL)
			<-done
			t.Fatal("run did not end within 10s while a background process held its stdin")
		}
		if sleeper := readPID(t, pidFile); running(sleeper) {
			unix.Kill(sleeper, unix.SIGKILL)
			t.Errorf("the background sleep %d still runs", sleeper)
		}
	})
}

// TestRunExitBeforeCancelRanToItsEnd checks that a child that exited on
// its own counts as such when ctx ends while its leftovers are stopped,
// as when a shutdown begins just after a run ends: no signal of the stop
// on ctx reached it.
func TestRunExitBeforeCancelRanToItsEnd(t *testing.T) {
	eachExitWatch(t, func(t *testing.T, reaper *Reaper) {
		// The leftover ignores SIGTERM before the child exits, so the
		// cleanup lasts the grace.
		spec := shell(t, `(trap '' TERM; touch ready; exec sleep 30) &
while [ ! -e ready ]; do sleep 0.01; done
echo started; exit 0`)
		spec.Grace = 2 * time.Second
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		var once sync.Once
		exit, err := reaper.Run(ctx, spec, func(line Line) {
			if line.Text == "started" {
				once.Do(func() {
					time.AfterFunc(spec.Grace/2, func() { cancel(errors.New("shutdown")) })
				})
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if ctx.Err() == nil {
			t.Fatal("the cleanup ended before the test cancelled the run")
		}
		if exit.Stopped != nil || exit.Code != 0 || exit.Err != nil {
			t.Errorf("exit = %+v, want a clean exit of a child that ended on its own", exit)
		}
	})
}
