package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests re-execute the test binary to get a second process. The variable
// childModeEnv selects what the child does, and childPathEnv the store.
const (
	childModeEnv = "AGENT_RUNNER_STATE_TEST_CHILD"
	childPathEnv = "AGENT_RUNNER_STATE_TEST_PATH"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	switch mode := os.Getenv(childModeEnv); mode {
	case "":
		os.Exit(m.Run())
	case "hold-lock":
		os.Exit(childHoldLock(os.Getenv(childPathEnv)))
	case "claim-loop":
		os.Exit(childClaimLoop(os.Getenv(childPathEnv)))
	case "open":
		os.Exit(childOpen(os.Getenv(childPathEnv)))
	case "claim-hold":
		os.Exit(childClaimHold(os.Getenv(childPathEnv)))
	case "claim-deleted-log":
		os.Exit(childClaimDeletedLog(os.Getenv(childPathEnv)))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", childModeEnv, mode)
		os.Exit(2)
	}
}

// childHoldLock opens the store, prints "locked" and keeps it open until
// its standard input closes.
func childHoldLock(path string) int {
	store, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := store.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childOpen opens the store and prints the error, if any, and whether it
// is a permission error.
func childOpen(path string) int {
	store, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		fmt.Printf("permission=%t error=%v\n", errors.Is(err, fs.ErrPermission), err)
		return 0
	}
	fmt.Println("opened")
	_ = store.Close()
	return 0
}

// testChild is a re-executed test binary with its standard output read
// line by line.
type testChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startChild starts the test binary in mode on the store at path.
func startChild(t *testing.T, mode, path string) *testChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode, childPathEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("child stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("child stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	child := &testChild{cmd: cmd, stdin: stdin, lines: make(chan string, 1<<16)}
	go func() {
		defer close(child.lines)
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			child.lines <- scanner.Text()
		}
	}()
	return child
}

// waitLine returns the child's next output line.
func (c *testChild) waitLine(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			t.Fatal("child exited without output")
		}
		return line
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for child output")
	}
	return ""
}

// drain returns the rest of the child's output once it has exited.
func (c *testChild) drain() []string {
	var lines []string
	for line := range c.lines {
		lines = append(lines, line)
	}
	return lines
}

func tempStorePath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state.db")
}

// openTestStore opens a store at path that the test closes when it ends.
func openTestStore(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	store, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return store
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func newLogRecorder() (*logRecorder, *slog.Logger) {
	recorder := &logRecorder{}
	return recorder, slog.New(recorder)
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, record slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, record.Clone())
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// find returns the attributes of the first record at level, or false.
func (r *logRecorder) find(level slog.Level) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, record := range r.records {
		if record.Level != level {
			continue
		}
		attrs := map[string]string{"msg": record.Message}
		record.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.String()
			return true
		})
		return attrs, true
	}
	return nil, false
}

// has reports whether a record at level has a message containing text.
func (r *logRecorder) has(level slog.Level, text string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, record := range r.records {
		if record.Level == level && strings.Contains(record.Message, text) {
			return true
		}
	}
	return false
}

// count returns the number of records at level whose message contains
// text.
func (r *logRecorder) count(level slog.Level, text string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, record := range r.records {
		if record.Level == level && strings.Contains(record.Message, text) {
			n++
		}
	}
	return n
}

// corruptCopies returns the PATH.corrupt-* files next to path.
func corruptCopies(t *testing.T, path string) []string {
	t.Helper()
	matches, err := filepath.Glob(path + ".corrupt-*")
	if err != nil {
		t.Fatalf("glob: %v", err)
	}
	return matches
}

// slotAt returns the i-th slot of a one-minute schedule in the tests.
func slotAt(i int) time.Time {
	return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
}
