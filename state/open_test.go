package state

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOpenCreatesFileAndFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "agent-runner")
	path := filepath.Join(dir, "state.db")
	store := openTestStore(t, path, Options{})

	if got := store.Path(); got != path {
		t.Errorf("Path() = %q, want %q", got, path)
	}
	if got := store.Recovered(); got != "" {
		t.Errorf("Recovered() = %q, want empty", got)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat store: %v", err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("store mode %v, want 0600", got)
	}
	info, err = os.Stat(dir)
	if err != nil {
		t.Fatalf("stat folder: %v", err)
	}
	if got := info.Mode().Perm(); got != 0o700 {
		t.Errorf("folder mode %v, want 0700", got)
	}
}

func TestOpenKeepsStateAcrossReopen(t *testing.T) {
	path := tempStorePath(t)
	firstSeen := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := store.EnsureJob("backup", firstSeen); err != nil {
		t.Fatalf("EnsureJob: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	store = openTestStore(t, path, Options{})
	job, ok, err := store.Job("backup")
	if err != nil || !ok {
		t.Fatalf("Job = %v, %v, want the job", ok, err)
	}
	if !job.FirstSeen.Equal(firstSeen) {
		t.Errorf("FirstSeen %v, want %v", job.FirstSeen, firstSeen)
	}
}

func TestOpenLockedByOtherProcess(t *testing.T) {
	path := tempStorePath(t)
	child := startChild(t, "hold-lock", path)
	if line := child.waitLine(t); line != "locked" {
		t.Fatalf("child printed %q, want locked", line)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read store: %v", err)
	}

	const timeout = 300 * time.Millisecond
	for _, readOnly := range []bool{false, true} {
		start := time.Now()
		store, err := Open(path, Options{LockTimeout: timeout, ReadOnly: readOnly})
		elapsed := time.Since(start)
		if err == nil {
			store.Close()
			t.Fatalf("ReadOnly=%t: Open succeeded while another process holds the lock", readOnly)
		}
		if !errors.Is(err, ErrLocked) {
			t.Errorf("ReadOnly=%t: got %v, want an error wrapping ErrLocked", readOnly, err)
		}
		for _, part := range []string{path, "probably the daemon"} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("ReadOnly=%t: error %q does not contain %q", readOnly, err, part)
			}
		}
		if elapsed < timeout-100*time.Millisecond {
			t.Errorf("ReadOnly=%t: Open gave up after %v, want about %v", readOnly, elapsed, timeout)
		}
	}

	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read store: %v", err)
	}
	if string(after) != string(before) {
		t.Error("store file changed while locked")
	}
	if copies := corruptCopies(t, path); len(copies) != 0 {
		t.Errorf("locked store was moved aside to %v", copies)
	}

	_ = child.stdin.Close()
	if err := child.cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	openTestStore(t, path, Options{})
}

func TestOpenLockedInSameProcess(t *testing.T) {
	path := tempStorePath(t)
	openTestStore(t, path, Options{})

	store, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		store.Close()
		t.Fatal("second Open succeeded while the first holds the lock")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("got %v, want an error wrapping ErrLocked", err)
	}
}

func TestOpenReadOnlySharesLock(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := store.EnsureJob("backup", time.Now()); err != nil {
		t.Fatalf("EnsureJob: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	first := openTestStore(t, path, Options{ReadOnly: true})
	second := openTestStore(t, path, Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond})
	for _, store := range []*Store{first, second} {
		jobs, err := store.Jobs()
		if err != nil {
			t.Fatalf("Jobs: %v", err)
		}
		if len(jobs) != 1 || jobs[0].Name != "backup" {
			t.Errorf("Jobs() = %v, want backup", jobs)
		}
	}
}

func TestOpenReadOnlyRejectsWrites(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := store.EnsureJob("backup", time.Now()); err != nil {
		t.Fatalf("EnsureJob: %v", err)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	store = openTestStore(t, path, Options{ReadOnly: true})
	if _, err := store.EnsureJob("backup", time.Now()); err != nil {
		t.Errorf("EnsureJob of a stored job: %v", err)
	}
	if _, err := store.EnsureJob("new", time.Now()); !errors.Is(err, ErrReadOnly) {
		t.Errorf("EnsureJob of a new job: got %v, want ErrReadOnly", err)
	}
	_, err = store.Claim(Run{Job: "backup", Start: time.Now()}, time.Time{})
	if !errors.Is(err, ErrReadOnly) {
		t.Errorf("Claim: got %v, want ErrReadOnly", err)
	}
	if err := store.ForgetJob("backup"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("ForgetJob: got %v, want ErrReadOnly", err)
	}
}

func TestOpenReadOnlyMissingFile(t *testing.T) {
	path := tempStorePath(t)
	_, err := Open(path, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only Open created the file: stat returned %v", err)
	}
}

func TestOpenReadOnlyEmptyFile(t *testing.T) {
	path := tempStorePath(t)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{ReadOnly: true})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
}
