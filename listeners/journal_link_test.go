package listeners

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
