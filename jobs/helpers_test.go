package jobs

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

var (
	reaperOnce sync.Once
	testReaper *process.Reaper
)

// The catch-up spread counts from the process start; the tests count it
// from the scheduler's start, as if the process had just started.
func init() { processAge = func() time.Duration { return 0 } }

// sharedReaper returns one reaper for the whole test binary, since the
// subreaper mark belongs to the process.
func sharedReaper(t *testing.T) *process.Reaper {
	t.Helper()
	reaperOnce.Do(func() {
		r, err := process.NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("NewReaper: %v", err)
		}
		testReaper = r
	})
	return testReaper
}

func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter logs through t until the test ends. gocron's executor can
// still log while it stops after a test has ended, and a t.Log then is a
// data race in package testing.
type testWriter struct {
	mu     sync.Mutex
	t      *testing.T
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Helper()
		w.t.Log(string(p))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

func openStore(t testing.TB, dir string) *state.Store {
	t.Helper()
	store, err := state.Open(filepath.Join(dir, "state.db"), state.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func testSettings(dir string) config.Runner {
	return config.Runner{
		StateDir:        dir,
		Location:        time.UTC,
		Path:            []string{"/usr/local/bin", "/usr/bin", "/bin"},
		ShutdownTimeout: 5 * time.Second,
		KillGrace:       300 * time.Millisecond,
		HistoryLimit:    50,
	}
}

// shellJob returns an enabled job running script with sh.
func shellJob(name, script string) *config.Job {
	return &config.Job{
		Name:     name,
		Command:  []string{"sh", "-c", script},
		Every:    time.Hour,
		Location: time.UTC,
		CatchUp:  config.CatchUpOnce,
		Enabled:  true,
	}
}

// newTestRunner returns a runner for jobs backed by a store in a fresh
// temporary folder.
func newTestRunner(t *testing.T, jobs ...*config.Job) (*Runner, *state.Store) {
	t.Helper()
	dir := t.TempDir()
	for _, job := range jobs {
		if job.WorkingDir == "" {
			job.WorkingDir = dir
		}
	}
	cfg := &config.Config{Path: filepath.Join(dir, "config.toml"), Dir: dir, Runner: testSettings(dir), Jobs: jobs}
	store := openStore(t, dir)
	return NewRunner(cfg, store, sharedReaper(t), testLogger(t), time.Now), store
}

// alive reports whether pid exists and has not exited.
func alive(pid int) bool {
	if unix.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// waitDead fails the test unless every pid is gone within a few seconds.
func waitDead(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d is still alive", pid)
				unix.Kill(pid, unix.SIGKILL)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(data)
}
