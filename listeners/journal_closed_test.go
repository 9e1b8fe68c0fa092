package listeners

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// TestRouterAnswersWithLogBlocked checks that a log_to file that can
// no longer be written, here because a folder took its place, does not
// stop the router from replying to chat commands.
func TestRouterAnswersWithLogBlocked(t *testing.T) {
	folder := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(folder, "chat.jsonl")
	journal, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Listener{
		Name: "chat", Kind: config.KindTwitch, HookQueue: 1,
		Commands: []config.ChatCommand{{Trigger: "!ping", Reply: "pong"}},
	}
	replier := &fakeReplier{}
	r := NewRouter(cfg, nil, journal, replier, quietLog)
	defer r.Close()

	blockPath(t, path)
	// The sync loop finds the folder at the path, fails to reopen it and
	// then fails to flush to the closed file.
	time.Sleep(3 * journalSyncInterval)
	for i, id := range []string{"a", "b", "c"} {
		r.Deliver(Event{Type: "message", ID: id, Channel: "c" + id, User: "ann", Text: "!ping"})
		if i == 0 {
			time.Sleep(2 * journalSyncInterval)
		}
	}
	waitUntil(t, "three replies", func() bool { return len(replier.got()) == 3 })
}

// TestJournalReopensAfterFailedOpen checks that the journal starts
// writing again once a reopen that failed can succeed.
func TestJournalReopensAfterFailedOpen(t *testing.T) {
	folder := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(folder, "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	blockPath(t, path)
	if err := j.reopenIfMoved(); err == nil {
		t.Fatal("reopen with a folder at the path returned no error")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := j.reopenIfMoved(); err != nil {
		t.Fatalf("reopen after the folder went: %v", err)
	}
	if err := j.Append(Event{Listener: "chat", ID: "back"}); err != nil {
		t.Fatalf("append after the folder went: %v", err)
	}
	if err := j.flush(); err != nil {
		t.Fatal(err)
	}
	if got := countLines(t, path); got != 1 {
		t.Errorf("the new log has %d events, want 1", got)
	}
}

// blockPath replaces the file at path with a folder, so that a reopen of
// path fails even for root, as it fails for a daemon that lacks write
// access to the folder or has run out of file descriptors.
func blockPath(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
}
