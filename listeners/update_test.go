package listeners

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agent-runner/agent-runner/config"
)

// verifyNoLeak fails the test when a goroutine started during it is
// still running at its end. Register it first, so that it runs after the
// other cleanups have stopped the supervisor and closed the routers.
func verifyNoLeak(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(ignore, goleak.IgnoreAnyFunction("github.com/agent-runner/agent-runner/process.(*Reaper).loop")); err != nil {
			t.Error(err)
		}
	})
}

// feedListener is connected until its attempt ends and delivers every
// event sent on events.
func feedListener(events <-chan Event) *fakeListener {
	return &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-events:
				host.Deliver(ev)
			}
		}
	}}
}

func commandRouter(reply string, replier Replier) *Router {
	cfg := &config.Listener{Name: "chat", Kind: config.KindTwitch, HookQueue: 1,
		Commands: []config.ChatCommand{{Trigger: "!hi", Reply: reply}}}
	return NewRouter(cfg, nil, nil, replier, quietLog)
}

func TestSupervisorUpdateKeepsConnection(t *testing.T) {
	replier := &fakeReplier{}
	events := make(chan Event)
	l := feedListener(events)
	old := commandRouter("old reply", replier)
	s := NewSupervisor("chat", config.KindTwitch, l, old, memKV{}, quietLog)
	startSupervisor(t, s)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	events <- Event{Type: "message", ID: "e1", Channel: "a", Text: "!hi"}
	waitUntil(t, "the old reply", func() bool { return len(replier.got()) == 1 })
	next := commandRouter("new reply", replier)
	t.Cleanup(func() { next.Close() })
	if got := s.Update(next); got != old {
		t.Errorf("Update returned %p, want the old router %p", got, old)
	}
	events <- Event{Type: "message", ID: "e2", Channel: "b", Text: "!hi"}
	waitUntil(t, "the new reply", func() bool { return len(replier.got()) == 2 })

	if got, want := replier.got(), []string{"e1:old reply", "e2:new reply"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replies = %q, want %q", got, want)
	}
	if n := l.calls.Load(); n != 1 {
		t.Errorf("the listener ran %d times, want 1: an update must not reconnect", n)
	}
	if h := s.Health(); h.State != StateRunning {
		t.Errorf("state = %s after the update, want %s", h.State, StateRunning)
	}
	if h := s.Health(); h.Handled != 2 {
		t.Errorf("handled = %d, want 2: the new router takes over the old one's count", h.Handled)
	}
	waitUntil(t, "the old router to close", old.Closed)
	if next.Closed() {
		t.Error("the new router was closed")
	}
}

func TestSupervisorUpdateKeepsCooldown(t *testing.T) {
	replier := &fakeReplier{}
	events := make(chan Event)
	cfg := &config.Listener{Name: "chat", Kind: config.KindTwitch, HookQueue: 1,
		Commands: []config.ChatCommand{{Trigger: "!hi", Reply: "hello", Cooldown: time.Hour}}}
	old := NewRouter(cfg, nil, nil, replier, quietLog)
	s := NewSupervisor("chat", config.KindTwitch, feedListener(events), old, memKV{}, quietLog)
	startSupervisor(t, s)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	events <- Event{Type: "message", ID: "e1", Channel: "a", Text: "!hi"}
	waitUntil(t, "the first reply", func() bool { return len(replier.got()) == 1 })
	next := NewRouter(cfg, nil, nil, replier, quietLog)
	t.Cleanup(func() { next.Close() })
	s.Update(next)
	events <- Event{Type: "message", ID: "e2", Channel: "a", Text: "!hi"}
	waitUntil(t, "the second event", func() bool { return s.Health().Handled == 2 })
	time.Sleep(50 * time.Millisecond)
	if got := replier.got(); len(got) != 1 {
		t.Errorf("replies = %q, want one: the cooldown goes on across an update", got)
	}
}

// TestSupervisorUpdateLosesNoEvent updates the router 20 times while the
// listener delivers events as fast as it can, and every update hands the
// log_to journal over to the new router.
func TestSupervisorUpdateLosesNoEvent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	journal, err := OpenJournal(path, 1<<30, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Listener{Name: "chat", Kind: config.KindTwitch, HookQueue: 1}
	router := NewRouter(cfg, nil, journal, nil, quietLog)
	const total = 20000
	sent := make(chan struct{})
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		host.Ready()
		for i := range total {
			host.Deliver(Event{Type: "message", ID: fmt.Sprint(i)})
		}
		close(sent)
		<-ctx.Done()
		return nil
	}}
	s := NewSupervisor("chat", config.KindTwitch, l, router, memKV{}, quietLog)
	startSupervisor(t, s)

	for range 20 {
		handed := router.HandOverJournal()
		if handed != journal {
			t.Fatalf("HandOverJournal = %p, want the open journal %p", handed, journal)
		}
		router = NewRouter(cfg, nil, handed, nil, quietLog)
		old := s.Update(router)
		// The supervisor drains the old router once its delivery in
		// progress, if any, has ended.
		waitUntil(t, "the old router to close", old.Closed)
		time.Sleep(time.Millisecond)
	}
	<-sent
	if err := router.Close(); err != nil {
		t.Fatalf("close the last router: %v", err)
	}
	if h := s.Health(); h.Handled != total {
		t.Errorf("handled = %d, want %d", h.Handled, total)
	}
	checkEventOrder(t, path, total)
}

// checkEventOrder fails the test unless the journal at path holds events
// 0 to total-1, each once and in order.
func checkEventOrder(t *testing.T, path string, total int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	next := 0
	for scanner.Scan() {
		var ev Event
		if err := json.Unmarshal(scanner.Bytes(), &ev); err != nil {
			t.Fatalf("line %d of the journal: %v", next+1, err)
		}
		if ev.ID != fmt.Sprint(next) {
			t.Fatalf("line %d of the journal is event %s, want %d", next+1, ev.ID, next)
		}
		next++
	}
	if next != total {
		t.Errorf("the journal holds %d events, want %d", next, total)
	}
}

// TestSupervisorUpdateLeavesNoGoroutine updates a listener whose routers
// run hook workers and write a journal 50 times, alternating between two
// log_to paths and keeping one for two updates in a row.
func TestSupervisorUpdateLeavesNoGoroutine(t *testing.T) {
	verifyNoLeak(t)
	dir := t.TempDir()
	newRouter := func(i int, journal *Journal) *Router {
		cfg := hookListener(t, "cat > /dev/null")
		cfg.HookConcurrency = 3
		if journal == nil {
			var err error
			journal, err = OpenJournal(filepath.Join(dir, fmt.Sprintf("events%d.jsonl", i%2)), 1<<20, quietLog)
			if err != nil {
				t.Fatal(err)
			}
		}
		hooks := NewHookRunner(cfg, sharedReaper(t), "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, time.Second, quietLog)
		return NewRouter(cfg, hooks, journal, nil, quietLog)
	}
	router := newRouter(0, nil)
	s := NewSupervisor("chat", config.KindTwitch, connectedListener(), router, memKV{}, quietLog)
	startSupervisor(t, s)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	var retired []*Router
	for i := range 50 {
		var journal *Journal
		if i%4 == 0 {
			journal = router.HandOverJournal()
		}
		router = newRouter(i, journal)
		retired = append(retired, s.Update(router))
	}
	for i, old := range retired {
		waitUntil(t, fmt.Sprintf("retired router %d to close", i), old.Closed)
	}
	t.Cleanup(func() { router.Close() })
}
