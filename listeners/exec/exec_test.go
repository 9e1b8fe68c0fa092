package exec

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"go.uber.org/goleak"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/process"
)

var testReaper *process.Reaper

func TestMain(m *testing.M) {
	r, err := process.NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	testReaper = r
	// The reaper runs for the whole test binary, because the subreaper
	// mark belongs to the process.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/agent-runner/agent-runner/process.(*Reaper).loop"))
}

// fakeHost records readiness.
type fakeHost struct{ ready atomic.Int32 }

func (h *fakeHost) Ready()                  { h.ready.Add(1) }
func (h *fakeHost) Reconnecting(error)      {}
func (h *fakeHost) Deliver(listeners.Event) {}
func (h *fakeHost) Log() *slog.Logger       { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func (h *fakeHost) State() listeners.KV     { return nil }

func newExec(t *testing.T, script string, probe *config.Probe) (*Listener, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Listener{
		Name: "svc", Kind: config.KindExec, WorkingDir: dir,
		Exec: &config.Exec{Command: []string{"sh", "-c", script}, Probe: probe},
	}
	l, err := New(cfg, testReaper, "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return l, dir
}

func runAsync(l *Listener, ctx context.Context, host listeners.Host) chan error {
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, host) }()
	return done
}

func wait(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func processGone(pid int) bool {
	return unix.Kill(pid, 0) != nil
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	deadline := time.Now().Add(5 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		data, _ := os.ReadFile(path)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		time.Sleep(10 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatalf("no pid in %s", path)
	}
	return pid
}

func TestChildExitEndsRun(t *testing.T) {
	l, _ := newExec(t, "exit 3", nil)
	host := &fakeHost{}
	err := wait(t, runAsync(l, context.Background(), host))
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Run = %v, want the exit status", err)
	}
	if host.ready.Load() != 1 {
		t.Errorf("Ready called %d times, want once at start without a probe", host.ready.Load())
	}
}

func TestCancelStopsChild(t *testing.T) {
	l, dir := newExec(t, "echo $$ > pid; exec sleep 300", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(l, ctx, &fakeHost{})
	pid := readPid(t, filepath.Join(dir, "pid"))
	cancel()
	if err := wait(t, done); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	if !processGone(pid) {
		t.Errorf("child %d still runs after cancel", pid)
	}
}

func TestHTTPProbeFailureRestarts(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	probe := &config.Probe{HTTP: srv.URL, Interval: 20 * time.Millisecond}
	l, dir := newExec(t, "echo $$ > pid; exec sleep 300", probe)
	host := &fakeHost{}
	done := runAsync(l, context.Background(), host)
	pid := readPid(t, filepath.Join(dir, "pid"))
	deadline := time.Now().Add(5 * time.Second)
	for host.ready.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if host.ready.Load() != 1 {
		t.Fatalf("Ready not called after a passing probe")
	}
	healthy.Store(false)
	err := wait(t, done)
	if !errors.Is(err, errProbeFailed) {
		t.Errorf("Run = %v, want a probe failure", err)
	}
	if !processGone(pid) {
		t.Errorf("child %d still runs after the probe failed", pid)
	}
}

// slowReadyHost takes 300 ms to mark the listener ready, as a probe
// goroutine that the scheduler runs late would, and records when it did.
type slowReadyHost struct {
	fakeHost
	readyAt atomic.Int64
}

func (h *slowReadyHost) Ready() {
	time.Sleep(300 * time.Millisecond)
	h.readyAt.Store(time.Now().UnixNano())
}

// A probe that passes just before the child exits must mark the listener
// ready before Run returns. Later, the supervisor would already show the
// failed attempt's backoff, and the late mark would show it as running.
func TestProbeReadyBeforeRunReturns(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	probe := &config.Probe{HTTP: srv.URL, Interval: time.Minute}
	l, _ := newExec(t, "sleep 0.05; exit 3", probe)
	host := &slowReadyHost{}

	_ = wait(t, runAsync(l, context.Background(), host))
	returned := time.Now().UnixNano()
	time.Sleep(500 * time.Millisecond)

	readyAt := host.readyAt.Load()
	if readyAt == 0 {
		t.Fatal("the passing probe never marked the listener ready")
	}
	if readyAt > returned {
		t.Errorf("the listener was marked ready %s after Run returned", time.Duration(readyAt-returned))
	}
}

// A probe request still waiting when the child exits ends with the
// attempt. Its canceled request once logged that the probe failed and
// stopped the child, after the child had exited by itself.
func TestProbeEndsWithChildExit(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	probe := &config.Probe{HTTP: srv.URL, Interval: time.Minute}
	l, _ := newExec(t, "sleep 0.3; exit 3", probe)
	host := &logHost{}

	err := wait(t, runAsync(l, context.Background(), host))
	time.Sleep(300 * time.Millisecond)

	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("Run = %v, want the child's exit status 3", err)
	}
	if strings.Contains(host.text(), "probe failed") {
		t.Errorf("the probe reported a failure after the child exited:\n%s", host.text())
	}
}

func TestStaleHeartbeatFails(t *testing.T) {
	dir := t.TempDir()
	beat := filepath.Join(dir, "beat")
	probe := &config.Probe{Heartbeat: beat, MaxAge: 200 * time.Millisecond, Interval: 20 * time.Millisecond, Grace: 150 * time.Millisecond}
	// The child touches the heartbeat twice, then stops touching it.
	l, _ := newExec(t, "touch "+beat+"; sleep 0.1; touch "+beat+"; exec sleep 300", probe)
	err := wait(t, runAsync(l, context.Background(), &fakeHost{}))
	if !errors.Is(err, errProbeFailed) || !strings.Contains(err.Error(), "old") {
		t.Errorf("Run = %v, want a stale heartbeat failure", err)
	}
}

func TestSlowStartReadyBeforeInterval(t *testing.T) {
	dir := t.TempDir()
	beat := filepath.Join(dir, "beat")
	probe := &config.Probe{Heartbeat: beat, MaxAge: time.Minute, Interval: time.Minute, Grace: time.Minute}
	// The first probe runs before the child touches its heartbeat.
	l, _ := newExec(t, "sleep 0.3; touch "+beat+"; exec sleep 300", probe)
	host := &fakeHost{}
	runUntilCleanup(t, l, host)
	waitReady(host, 5*time.Second)
	if host.ready.Load() != 1 {
		t.Errorf("Ready called %d times 5 s after the heartbeat, want once before the minute-long interval", host.ready.Load())
	}
}

func TestOldHeartbeatWaitsForNewChild(t *testing.T) {
	dir := t.TempDir()
	beat := filepath.Join(dir, "beat")
	// A fresh heartbeat from a child that ran before this one.
	if err := os.WriteFile(beat, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	probe := &config.Probe{Heartbeat: beat, MaxAge: time.Minute, Interval: 20 * time.Millisecond, Grace: time.Minute}
	l, work := newExec(t, "echo $$ > pid; while [ ! -e go ]; do sleep 0.01; done; touch "+beat+"; exec sleep 300", probe)
	host := &fakeHost{}
	runUntilCleanup(t, l, host)

	readPid(t, filepath.Join(work, "pid"))
	time.Sleep(200 * time.Millisecond)
	if n := host.ready.Load(); n != 0 {
		t.Fatalf("Ready called %d times before the child touched its heartbeat, want 0", n)
	}

	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitReady(host, 5*time.Second)
	if n := host.ready.Load(); n != 1 {
		t.Errorf("Ready called %d times after the child touched its heartbeat, want 1", n)
	}
}

// runUntilCleanup runs l in the background until the test ends.
func runUntilCleanup(t *testing.T, l *Listener, host listeners.Host) {
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(l, ctx, host)
	t.Cleanup(func() {
		cancel()
		wait(t, done)
	})
}

// waitReady waits up to limit for the first Ready call.
func waitReady(host *fakeHost, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for host.ready.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
