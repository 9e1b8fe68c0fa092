package listeners

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestJournalRejectsLinkedPath(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "passwd")
	if err := os.WriteFile(target, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "chat.jsonl")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}

	j, err := OpenJournal(path, 1<<20, quietLog)
	if err == nil {
		mustAppend(t, j, Event{Listener: "chat", ID: "through-link"})
		_ = j.flush()
		j.Close()
		t.Fatal("event log opened through a symbolic link")
	}
	if !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("error = %v, want one that names the symbolic link", err)
	}
	data, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("link target changed to %q", data)
	}
}

func TestJournalReopenRejectsLink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	target := filepath.Join(dir, "other")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}

	if err := j.reopenIfMoved(); err == nil {
		t.Error("event log reopened through a symbolic link put in place of the moved file")
	}
	mustAppend(t, j, Event{Listener: "chat", ID: "after-swap"})
	_ = j.flush()
	info, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size() != 0 {
		t.Errorf("link target has %d bytes, want 0", info.Size())
	}
}

// TestJournalReopenRejectsNamedPipe puts a named pipe in place of a moved
// event log. Opening it for writing would wait for a reader while the
// journal's lock is held, and with it every Append of the listener.
func TestJournalReopenRejectsNamedPipe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- j.reopenIfMoved() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("event log reopened as a named pipe")
		}
	case <-time.After(5 * time.Second):
		// Open the pipe for reading, which ends the blocked open.
		if reader, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			defer reader.Close()
		}
		<-done
		t.Fatal("reopen of the event log blocked on a named pipe for 5s")
	}
}

// TestJournalRejectsNamedPipeWithReader opens an event log at a named
// pipe that a process reads, which an open alone does not catch.
func TestJournalRejectsNamedPipeWithReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	j, err := OpenJournal(path, 1<<20, quietLog)
	if err == nil {
		j.Close()
		t.Fatal("event log opened at a named pipe")
	}
	if !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("error = %v, want one that says the path is not a regular file", err)
	}
}
