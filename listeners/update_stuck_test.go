package listeners

import (
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// hungWriter blocks every write until release closes, as a write to a
// hung disk does, and sends on blocked as each write starts to wait.
type hungWriter struct {
	file    *os.File
	blocked chan<- struct{}
	release <-chan struct{}
}

func (w hungWriter) Write(p []byte) (int, error) {
	select {
	case <-w.release:
	default:
		select {
		case w.blocked <- struct{}{}:
		default:
		}
		<-w.release
	}
	return w.file.Write(p)
}

// hangJournalWrites makes the journal's file writes hang until the
// returned release runs, which the test's cleanup also does. blocked
// receives a value as a write starts to hang.
func hangJournalWrites(t *testing.T) (blocked <-chan struct{}, release func()) {
	t.Helper()
	blockedWrites := make(chan struct{}, 1)
	released := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	original := journalWriter
	journalWriter = func(f *os.File) io.Writer {
		return hungWriter{file: f, blocked: blockedWrites, release: released}
	}
	t.Cleanup(func() {
		release()
		journalWriter = original
	})
	return blockedWrites, release
}

// returnsWithin reports whether f returns within limit. A call that
// does not return goes on in the background.
func returnsWithin(limit time.Duration, f func()) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

// TestSupervisorUpdateDuringStuckDelivery updates the router while a
// delivery waits on a hung log_to write. Update, Health and the journal's
// SetMaxBytes must return at once, and the old router must close only
// after that delivery ends, with every event logged once and in order.
func TestSupervisorUpdateDuringStuckDelivery(t *testing.T) {
	blocked, release := hangJournalWrites(t)
	path := filepath.Join(t.TempDir(), "events.jsonl")
	journal, err := OpenJournal(path, 1<<30, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Listener{Name: "chat", Kind: config.KindTwitch, HookQueue: 1}
	old := NewRouter(cfg, nil, journal, nil, quietLog)
	delivering := make(chan string, 4)
	old.SetFence(func(action string) error {
		delivering <- action
		return nil
	})
	events := make(chan Event)
	s := NewSupervisor("chat", config.KindTwitch, feedListener(events), old, memKV{}, quietLog)
	startSupervisor(t, s)
	// Registered after startSupervisor, so it runs first and the stuck
	// delivery ends before the supervisor stops.
	t.Cleanup(release)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	events <- Event{Type: "message", ID: "0"}
	<-delivering
	waitUntil(t, "the first event", func() bool { return s.Health().Handled == 1 })
	go journal.flush()
	select {
	case <-blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the journal's write did not start")
	}
	events <- Event{Type: "message", ID: "1"}
	<-delivering

	handed := old.HandOverJournal()
	if handed != journal {
		t.Fatalf("HandOverJournal = %p during a stuck delivery, want the open journal %p", handed, journal)
	}
	if !returnsWithin(time.Second, func() { handed.SetMaxBytes(1 << 30) }) {
		t.Error("SetMaxBytes waited for the stuck write")
	}
	next := NewRouter(cfg, nil, handed, nil, quietLog)
	t.Cleanup(func() {
		release()
		next.Close()
	})
	var retired *Router
	if !returnsWithin(time.Second, func() { retired = s.Update(next) }) {
		t.Fatal("Update waited for the stuck delivery")
	}
	if retired != old {
		t.Errorf("Update returned %p, want the old router %p", retired, old)
	}
	if !returnsWithin(time.Second, func() { s.Health() }) {
		t.Fatal("Health waited for the stuck delivery")
	}
	if old.Closed() {
		t.Error("the old router closed while a delivery to it was in progress")
	}

	release()
	events <- Event{Type: "message", ID: "2"}
	waitUntil(t, "the third event", func() bool { return s.Health().Handled == 3 })
	waitUntil(t, "the old router to close", old.Closed)
	if next.Closed() {
		t.Error("the new router was closed")
	}
	if err := next.Close(); err != nil {
		t.Fatalf("close the new router: %v", err)
	}
	checkEventOrder(t, path, 3)
}

// TestSupervisorUpdateKeepsJournalForStuckDelivery updates the router
// twice while a delivery to the first router waits in its fence: first
// handing the log_to journal over, then moving log_to to another file.
// The journal must stay open until that delivery has written its event.
func TestSupervisorUpdateKeepsJournalForStuckDelivery(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.jsonl"), filepath.Join(dir, "second.jsonl")
	journal, err := OpenJournal(first, 1<<30, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Listener{Name: "chat", Kind: config.KindTwitch, HookQueue: 1}
	old := NewRouter(cfg, nil, journal, nil, quietLog)
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	releaseFence := func() { releaseOnce.Do(func() { close(release) }) }
	old.SetFence(func(action string) error {
		entered <- struct{}{}
		<-release
		return nil
	})
	events := make(chan Event)
	s := NewSupervisor("chat", config.KindTwitch, feedListener(events), old, memKV{}, quietLog)
	startSupervisor(t, s)
	t.Cleanup(releaseFence)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	events <- Event{Type: "message", ID: "0"}
	<-entered
	handedOver := NewRouter(cfg, nil, old.HandOverJournal(), nil, quietLog)
	if !returnsWithin(time.Second, func() { s.Update(handedOver) }) {
		t.Fatal("Update waited for the stuck delivery")
	}
	moved, err := OpenJournal(second, 1<<30, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	last := NewRouter(cfg, nil, moved, nil, quietLog)
	t.Cleanup(func() { last.Close() })
	s.Update(last)
	waitUntil(t, "the handed-over router to close", handedOver.Closed)

	releaseFence()
	waitUntil(t, "the old router to close", old.Closed)
	if h := s.Health(); h.Handled != 1 {
		t.Errorf("handled = %d, want 1: the stuck event counts once it is delivered", h.Handled)
	}
	checkEventOrder(t, first, 1)
}
