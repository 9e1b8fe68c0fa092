package listeners

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
)

var (
	reaperOnce sync.Once
	testReaper *process.Reaper
)

func sharedReaper(t *testing.T) *process.Reaper {
	t.Helper()
	reaperOnce.Do(func() {
		r, err := process.NewReaper(quietLog)
		if err != nil {
			t.Fatalf("NewReaper: %v", err)
		}
		testReaper = r
	})
	return testReaper
}

// fakeReplier records replies.
type fakeReplier struct {
	mu      sync.Mutex
	replies []string
	// deadlines holds each reply's context deadline, zero for none.
	deadlines []time.Time
}

func (f *fakeReplier) Reply(ctx context.Context, to Event, text string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies = append(f.replies, to.ID+":"+text)
	deadline, _ := ctx.Deadline()
	f.deadlines = append(f.deadlines, deadline)
	return nil
}

func (f *fakeReplier) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.replies...)
}

func hookListener(t *testing.T, script string) *config.Listener {
	return &config.Listener{
		Name: "chat", Kind: config.KindTwitch,
		OnEvent:     []string{"sh", "-c", script},
		HookTimeout: 5 * time.Second, HookConcurrency: 1, HookQueue: 2,
		WorkingDir: t.TempDir(),
	}
}

func newHookRouter(t *testing.T, cfg *config.Listener, replier Replier) *Router {
	hooks := NewHookRunner(cfg, sharedReaper(t), "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, time.Second, quietLog)
	r := NewRouter(cfg, hooks, nil, replier, quietLog)
	t.Cleanup(func() { r.Close() })
	return r
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHookGetsEventAndReplies(t *testing.T) {
	cfg := hookListener(t, `cat > event.json; echo "hi $AGENT_RUNNER_LISTENER"`)
	replier := &fakeReplier{}
	r := newHookRouter(t, cfg, replier)
	r.Deliver(Event{Type: "message", ID: "m1", Channel: "chan", User: "ann", Text: "hello; rm -rf / $(reboot)"})

	waitUntil(t, "the reply", func() bool { return len(replier.got()) == 1 })
	if got := replier.got()[0]; got != "m1:hi chat" {
		t.Errorf("reply = %q, want the hook's stdout", got)
	}
	replier.mu.Lock()
	deadline := replier.deadlines[0]
	replier.mu.Unlock()
	if deadline.IsZero() || time.Until(deadline) > replyTimeout {
		t.Errorf("reply deadline = %v, want one within %v", deadline, replyTimeout)
	}
	var ev Event
	data, err := os.ReadFile(filepath.Join(cfg.WorkingDir, "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("hook stdin is not one JSON event: %v", err)
	}
	if ev.Text != "hello; rm -rf / $(reboot)" || ev.Listener != "chat" || ev.Kind != "twitch" {
		t.Errorf("event on stdin = %+v", ev)
	}
}

func TestHookReplyRedactsSecrets(t *testing.T) {
	cfg := hookListener(t, `echo "token $TOKEN_COPY"; echo "key $API_KEY"`)
	cfg.Twitch = &config.Twitch{}
	token := config.NewSecret("oauth:abcdefgh12345678", "file secrets/twitch-token")
	cfg.Twitch.Token = &token
	cfg.Env = map[string]config.Secret{
		"API_KEY":    config.NewSecret("sk-0123456789abcdef", "env API_KEY"),
		"TOKEN_COPY": config.NewSecret("oauth:abcdefgh12345678", "inline"),
	}
	replier := &fakeReplier{}
	r := newHookRouter(t, cfg, replier)
	r.Deliver(Event{Type: "message", ID: "m1"})

	waitUntil(t, "the reply", func() bool { return len(replier.got()) == 1 })
	got := replier.got()[0]
	if strings.Contains(got, "abcdefgh12345678") {
		t.Errorf("reply = %q, want the Twitch token redacted", got)
	}
	if strings.Contains(got, "sk-0123456789abcdef") {
		t.Errorf("reply = %q, want the API_KEY value redacted", got)
	}
	if want := "m1:token [redacted]\nkey [redacted]"; got != want {
		t.Errorf("reply = %q, want %q", got, want)
	}
}

// A hook's env_file is read for each event, and its values under secret
// names are redacted from the reply and the logged stderr as that event's
// hook got them.
func TestHookRedactsEnvFileSecrets(t *testing.T) {
	cfg := hookListener(t, `echo "token $BOT_TOKEN plain $GREETING"; echo "err $BOT_TOKEN" >&2`)
	cfg.EnvFile = filepath.Join(cfg.WorkingDir, "hook.env")
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged}, nil))
	hooks := NewHookRunner(cfg, sharedReaper(t), "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, time.Second, log)
	replier := &fakeReplier{}
	r := NewRouter(cfg, hooks, nil, replier, log)
	t.Cleanup(func() { r.Close() })

	for i, token := range []string{"first-hook-token-1", "second-hook-token-2"} {
		text := "BOT_TOKEN=" + token + "\nGREETING=hello-visible\n"
		if err := os.WriteFile(cfg.EnvFile, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		r.Deliver(Event{Type: "message", ID: fmt.Sprintf("m%d", i)})
		waitUntil(t, "the reply", func() bool { return len(replier.got()) == i+1 })
		if got, want := replier.got()[i], fmt.Sprintf("m%d:token [redacted] plain hello-visible", i); got != want {
			t.Errorf("reply = %q, want %q", got, want)
		}
	}
	waitUntil(t, "the second hook's stderr", func() bool {
		return strings.Count(logged.String(), `line="err [redacted]"`) == 2
	})
	if strings.Contains(logged.String(), "hook-token") {
		t.Errorf("log shows a token:\n%s", logged.String())
	}
}

func TestHookFailureSendsNoReply(t *testing.T) {
	cfg := hookListener(t, `echo partial; exit 2`)
	replier := &fakeReplier{}
	r := newHookRouter(t, cfg, replier)
	r.Deliver(Event{Type: "message", ID: "m1"})
	time.Sleep(300 * time.Millisecond)
	if got := replier.got(); len(got) != 0 {
		t.Errorf("replies = %v, want none from a failed hook", got)
	}
}

func TestHookTimeoutStopsIt(t *testing.T) {
	cfg := hookListener(t, `echo $$ > pid; sleep 30; echo late`)
	cfg.HookTimeout = 200 * time.Millisecond
	replier := &fakeReplier{}
	r := newHookRouter(t, cfg, replier)
	start := time.Now()
	r.Deliver(Event{Type: "message", ID: "m1"})
	r.Deliver(Event{Type: "message", ID: "m2"})
	// The second event runs only after the first hook was stopped.
	waitUntil(t, "both hooks to end", func() bool { return len(r.queue) == 0 })
	time.Sleep(500 * time.Millisecond)
	if elapsed := time.Since(start); elapsed > 4*time.Second {
		t.Errorf("two timed-out hooks took %v", elapsed)
	}
	if got := replier.got(); len(got) != 0 {
		t.Errorf("replies = %v, want none from stopped hooks", got)
	}
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	cfg := hookListener(t, `sleep 1`)
	r := newHookRouter(t, cfg, nil)
	for i := range 10 {
		r.Deliver(Event{Type: "message", ID: string(rune('a' + i))})
	}
	handled, dropped, last := r.counts()
	if handled != 10 {
		t.Errorf("handled = %d, want 10", handled)
	}
	// One hook runs, two wait in the queue, the rest are dropped.
	if dropped < 7 || dropped > 8 {
		t.Errorf("dropped = %d, want 7 or 8", dropped)
	}
	if last.IsZero() {
		t.Errorf("last event time not recorded")
	}
}

func TestChatCommandCooldown(t *testing.T) {
	cfg := &config.Listener{
		Name: "chat", Kind: config.KindTwitch, HookQueue: 1,
		Commands: []config.ChatCommand{{Trigger: "!ping", Reply: "pong {user} {args}", Cooldown: time.Hour}},
	}
	replier := &fakeReplier{}
	r := NewRouter(cfg, nil, nil, replier, quietLog)
	defer r.Close()
	r.Deliver(Event{Type: "message", ID: "1", Channel: "a", User: "ann", Text: "!PING now"})
	r.Deliver(Event{Type: "message", ID: "2", Channel: "a", User: "bob", Text: "!ping"})
	r.Deliver(Event{Type: "message", ID: "3", Channel: "b", User: "cat", Text: "!ping"})
	r.Deliver(Event{Type: "message", ID: "4", Channel: "a", User: "dan", Text: "ping"})
	waitUntil(t, "two replies", func() bool { return len(replier.got()) == 2 })
	time.Sleep(50 * time.Millisecond)
	got := strings.Join(replier.got(), "|")
	if !strings.Contains(got, "1:pong ann now") || !strings.Contains(got, "3:pong cat") || len(replier.got()) != 2 {
		t.Errorf("replies = %v, want one per channel within the cooldown", replier.got())
	}
}

// stuckReplier holds every reply until its context ends, as a send
// that waits for the platform's rate limit does, and counts the replies
// held at once.
type stuckReplier struct {
	waiting, peak atomic.Int64
}

func (f *stuckReplier) Reply(ctx context.Context, _ Event, _ string) error {
	n := f.waiting.Add(1)
	defer f.waiting.Add(-1)
	for {
		peak := f.peak.Load()
		if n <= peak || f.peak.CompareAndSwap(peak, n) {
			break
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// A command without a cooldown in a chat flood once started a goroutine
// per message, each waiting for the send rate limit.
func TestChatCommandFloodCapsWaitingReplies(t *testing.T) {
	cfg := &config.Listener{
		Name: "chat", Kind: config.KindTwitch, HookQueue: 1,
		Commands: []config.ChatCommand{{Trigger: "!ping", Reply: "pong"}},
	}
	replier := &stuckReplier{}
	r := NewRouter(cfg, nil, nil, replier, quietLog)

	for i := range 10 * maxWaitingReplies {
		r.Deliver(Event{Type: "message", ID: strconv.Itoa(i), Channel: "a", User: "ann", Text: "!ping"})
	}
	waitUntil(t, "the first replies", func() bool { return replier.waiting.Load() > 0 })
	time.Sleep(100 * time.Millisecond)

	if peak := replier.peak.Load(); peak > maxWaitingReplies {
		t.Errorf("%d command replies waited at once, want at most %d", peak, maxWaitingReplies)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the replies end with the router", func() bool { return replier.waiting.Load() == 0 })
}

// A reply that the cap drops leaves the command's cooldown free, so the
// channel still gets a reply before the cooldown ends.
func TestDroppedCommandReplyKeepsCooldown(t *testing.T) {
	help := config.ChatCommand{Trigger: "!help", Reply: "see the docs", Cooldown: time.Hour}
	cfg := &config.Listener{
		Name: "chat", Kind: config.KindTwitch, HookQueue: 1,
		Commands: []config.ChatCommand{{Trigger: "!ping", Reply: "pong"}, help},
	}
	replier := &stuckReplier{}
	r := NewRouter(cfg, nil, nil, replier, quietLog)
	defer r.Close()
	for i := range maxWaitingReplies {
		r.answerCommand(Event{Type: "message", ID: strconv.Itoa(i), Channel: "a", User: "ann", Text: "!ping"})
	}
	r.answerCommand(Event{Type: "message", ID: "help", Channel: "a", User: "ann", Text: "!help"})
	if !r.takeCooldown(help, "a") {
		t.Error("the dropped reply took the cooldown of !help")
	}
}

func TestRenderSubstitutesOnlyFields(t *testing.T) {
	fields := map[string]string{"user": "{uptime}\nPRIVMSG #x :pwned", "uptime": "5m"}
	got := Render("hi {user}, up {uptime}, {nope} {", fields)
	want := "hi {uptime} PRIVMSG #x :pwned, up 5m, {nope} {"
	if got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
}

func TestJournalAppendsAndRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, err := OpenJournal(path, 400, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := j.Append(Event{Listener: "chat", ID: string(rune('a' + i)), Text: "some chat text"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range []string{path + ".1", path} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		scanner := bufio.NewScanner(f)
		for scanner.Scan() {
			var ev Event
			if err := json.Unmarshal(scanner.Bytes(), &ev); err != nil {
				t.Errorf("%s: line %q is not JSON: %v", p, scanner.Text(), err)
			}
			total++
		}
		f.Close()
		if info, _ := os.Stat(p); info.Size() > 400 {
			t.Errorf("%s is %d bytes, over the 400-byte limit", p, info.Size())
		}
	}
	if total < 4 {
		t.Errorf("found %d events in the current and rotated files", total)
	}
}

// blockSyncs makes each of the journal's file syncs wait until the test
// closes the channel that the sync sent on the returned channel. After
// unblock, syncs no longer wait.
func blockSyncs(t *testing.T) (syncs <-chan chan struct{}, unblock func()) {
	t.Helper()
	gates := make(chan chan struct{}, 16)
	var blocking atomic.Bool
	blocking.Store(true)
	original := syncFile
	syncFile = func(f *os.File) error {
		if blocking.Load() {
			gate := make(chan struct{})
			gates <- gate
			<-gate
		}
		return original(f)
	}
	t.Cleanup(func() { syncFile = original })
	return gates, func() { blocking.Store(false) }
}

// nextSync waits for the next sync to start and returns its gate.
func nextSync(t *testing.T, syncs <-chan chan struct{}) chan struct{} {
	t.Helper()
	select {
	case gate := <-syncs:
		return gate
	case <-time.After(3 * journalSyncInterval):
		t.Fatal("the journal did not sync within three sync intervals")
		return nil
	}
}

func TestJournalAppendsDuringSlowSync(t *testing.T) {
	syncs, _ := blockSyncs(t)
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(Event{Listener: "chat", ID: "before"}); err != nil {
		t.Fatal(err)
	}
	loopSync := nextSync(t, syncs)

	appended := make(chan error, 1)
	go func() { appended <- j.Append(Event{Listener: "chat", ID: "during"}) }()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Error("Append waited for the file sync")
	}
	close(loopSync)

	closed := make(chan error, 1)
	go func() { closed <- j.Close() }()
	close(nextSync(t, syncs))
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if got := countLines(t, path); got != 2 {
		t.Errorf("the log has %d events, want 2", got)
	}
}

func TestJournalRotatesDuringSlowSync(t *testing.T) {
	syncs, unblock := blockSyncs(t)
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged}, nil))
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(Event{Listener: "chat", ID: "first"}); err != nil {
		t.Fatal(err)
	}
	loopSync := nextSync(t, syncs)

	// Past the size limit, the next Append rotates: it syncs and closes
	// the file that the sync loop is still syncing.
	big := Event{Listener: "chat", ID: "big", Text: strings.Repeat("x", 1<<20)}
	rotated := make(chan error, 1)
	go func() { rotated <- j.Append(big) }()
	close(nextSync(t, syncs))
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
	unblock()
	close(loopSync)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := countLines(t, path+".1") + countLines(t, path); got != 2 {
		t.Errorf("the current and rotated logs have %d events, want 2", got)
	}
	if strings.Contains(logged.String(), "failed") {
		t.Errorf("a sync of the file that rotation closed was logged as a failure:\n%s", logged.String())
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

func TestJournalRecoversFromFailedRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	// A folder with an entry at PATH.1 makes the rename fail.
	if err := os.MkdirAll(filepath.Join(path+".1", "entry"), 0o700); err != nil {
		t.Fatal(err)
	}
	big := Event{Listener: "chat", Text: strings.Repeat("x", 600<<10)}
	if err := j.Append(big); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(big); err == nil {
		t.Error("a rotation whose rename failed was not reported")
	}

	if err := os.RemoveAll(path + ".1"); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(big); err != nil {
		t.Fatalf("append after the folder went: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := countLines(t, path+".1"); got != 2 {
		t.Errorf("the rotated log has %d events, want the 2 written before the rename worked", got)
	}
	if got := countLines(t, path); got != 1 {
		t.Errorf("the current log has %d events, want 1", got)
	}
}

func TestHookStoppedByCloseIsNotAnError(t *testing.T) {
	cfg := hookListener(t, `touch started; sleep 5`)
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged}, nil))
	hooks := NewHookRunner(cfg, sharedReaper(t), "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, time.Second, log)
	r := NewRouter(cfg, hooks, nil, nil, log)
	r.Deliver(Event{Type: "message", ID: "m1", Text: "hello"})
	waitUntil(t, "the hook to start", func() bool {
		_, err := os.Stat(filepath.Join(cfg.WorkingDir, "started"))
		return err == nil
	})

	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logged.String(), "level=ERROR") {
		t.Errorf("a hook that Close stopped was logged as an error:\n%s", logged.String())
	}
	if !strings.Contains(logged.String(), "hook stopped with its listener") {
		t.Errorf("the stopped hook was not logged:\n%s", logged.String())
	}
}

// slowHookRouter returns a router whose hook appends each event's ID to
// the file handled after a short sleep, with a log_to journal.
func slowHookRouter(t *testing.T) (r *Router, handled string) {
	t.Helper()
	cfg := hookListener(t, `sleep 0.1; echo "$AGENT_RUNNER_EVENT_ID" >> handled`)
	cfg.HookQueue = 10
	journal, err := OpenJournal(filepath.Join(cfg.WorkingDir, "events.jsonl"), 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	hooks := NewHookRunner(cfg, sharedReaper(t), "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, time.Second, quietLog)
	r = NewRouter(cfg, hooks, journal, nil, quietLog)
	t.Cleanup(func() { r.Close() })
	return r, filepath.Join(cfg.WorkingDir, "handled")
}

func TestRouterDrainRunsQueuedHooks(t *testing.T) {
	r, handled := slowHookRouter(t)
	for _, id := range []string{"e1", "e2", "e3"} {
		r.Deliver(Event{Type: "message", ID: id})
	}
	if err := r.Drain(); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if !r.Closed() {
		t.Error("router not closed after Drain")
	}
	if got := countLines(t, handled); got != 3 {
		t.Errorf("hooks ran for %d events, want all 3 queued ones", got)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close after Drain: %v", err)
	}
}

func TestSupervisorReplaceDrainsOldRouter(t *testing.T) {
	old, handled := slowHookRouter(t)
	l := &fakeListener{RunFunc: func(ctx context.Context, host Host, call int) error {
		for _, id := range []string{"e1", "e2", "e3"} {
			host.Deliver(Event{Type: "message", ID: id})
		}
		host.Ready()
		<-ctx.Done()
		return nil
	}}
	s := NewSupervisor("chat", config.KindTwitch, l, old, memKV{}, quietLog)
	startSupervisor(t, s)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	next := newPlainRouter()
	t.Cleanup(func() { next.Close() })
	s.Replace(connectedListener(), next)
	waitUntil(t, "the old router to close", old.Closed)
	if got := countLines(t, handled); got != 3 {
		t.Errorf("hooks ran for %d events, want the 3 the old listener delivered", got)
	}
	if next.Closed() {
		t.Error("the new router was closed")
	}
}

func TestReplaceInBackoffDrainsRouter(t *testing.T) {
	old := newPlainRouter()
	s := NewSupervisor("test", "exec", failingListener(), old, memKV{}, quietLog)
	s.backoff = Backoff{Initial: time.Hour, Max: time.Hour, Stable: time.Hour}
	startSupervisor(t, s)
	waitUntil(t, "the first failure", func() bool { return s.Health().State == StateBackoff })

	next := newPlainRouter()
	t.Cleanup(func() { next.Close() })
	s.Replace(connectedListener(), next)
	waitUntil(t, "the old router to close", old.Closed)
	waitUntil(t, "the replacement to run", func() bool { return s.Health().State == StateRunning })
	if next.Closed() {
		t.Error("the new router was closed")
	}
}

func TestSupervisorRetireDrainsRouter(t *testing.T) {
	router := newPlainRouter()
	s := NewSupervisor("test", "exec", connectedListener(), router, memKV{}, quietLog)
	startSupervisor(t, s)
	waitUntil(t, "the listener to run", func() bool { return s.Health().State == StateRunning })

	s.Retire()
	waitUntil(t, "the router to close", router.Closed)
}

func TestRouterDropsEventsAfterDrain(t *testing.T) {
	r, handled := slowHookRouter(t)
	r.Deliver(Event{Type: "message", ID: "before"})
	if err := r.Drain(); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	r.Deliver(Event{Type: "message", ID: "late"})
	if got := countLines(t, handled); got != 1 {
		t.Errorf("hooks ran for %d events, want only the one delivered before Drain", got)
	}
	if handledCount, _, _ := r.counts(); handledCount != 1 {
		t.Errorf("handled = %d, want 1: a late event is not counted as handled", handledCount)
	}
}

func TestJournalAppendAfterCloseRejected(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, err := OpenJournal(path, 100, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, Event{Listener: "chat", ID: "a", Text: "fills most of the 100-byte limit"})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	// A late event would rotate the file and reopen a new one.
	err = j.Append(Event{Listener: "chat", ID: "b", Text: "arrives after the close"})
	if !errors.Is(err, errJournalClosed) {
		t.Errorf("Append after Close = %v, want errJournalClosed", err)
	}
	if _, err := os.Stat(path + ".1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat %s.1 = %v, want no rotation after Close", path, err)
	}
}

// diskFullWriter writes half of each write and fails with ENOSPC while
// full is set, as a write to a full disk can.
type diskFullWriter struct {
	file *os.File
	full *atomic.Bool
}

func (w diskFullWriter) Write(p []byte) (int, error) {
	if !w.full.Load() {
		return w.file.Write(p)
	}
	n, _ := w.file.Write(p[:len(p)/2])
	return n, syscall.ENOSPC
}

// TestJournalWritesAgainAfterDiskFull checks that events are written
// again once writes work after a failed one, and that the line the
// failed write cut short does not merge with the next event.
func TestJournalWritesAgainAfterDiskFull(t *testing.T) {
	var full atomic.Bool
	original := journalWriter
	journalWriter = func(f *os.File) io.Writer { return diskFullWriter{file: f, full: &full} }
	t.Cleanup(func() { journalWriter = original })

	path := filepath.Join(t.TempDir(), "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, Event{Listener: "chat", ID: "before"})
	if err := j.flush(); err != nil {
		t.Fatal(err)
	}

	full.Store(true)
	mustAppend(t, j, Event{Listener: "chat", ID: "lost", Text: "written while the disk is full"})
	if err := j.flush(); err == nil {
		t.Error("flush to a full disk returned no error")
	}

	full.Store(false)
	if err := j.Append(Event{Listener: "chat", ID: "after"}); err != nil {
		t.Errorf("append once the disk has space: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("close once the disk has space: %v", err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for line := range strings.SplitSeq(strings.TrimSuffix(string(data), "\n"), "\n") {
		var ev Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			// The half line of the failed write is expected to stand alone.
			continue
		}
		ids = append(ids, ev.ID)
	}
	if !slices.Equal(ids, []string{"before", "after"}) {
		t.Errorf("events in the log = %q, want before and after:\n%s", ids, data)
	}
}

// TestJournalReopensMovedFile checks that a log moved away, as
// logrotate does, or deleted is started again at its path.
func TestJournalReopensMovedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chat.jsonl")
	j, err := OpenJournal(path, 1<<20, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, Event{Listener: "chat", ID: "first"})
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, Event{Listener: "chat", ID: "buffered"})
	if err := j.reopenIfMoved(); err != nil {
		t.Fatalf("reopen after a move: %v", err)
	}
	mustAppend(t, j, Event{Listener: "chat", ID: "after-move"})
	if err := j.flush(); err != nil {
		t.Fatal(err)
	}
	if got := countLines(t, path+".old"); got != 2 {
		t.Errorf("the moved log has %d events, want the 2 appended before the check", got)
	}
	if got := countLines(t, path); got != 1 {
		t.Errorf("the new log has %d events, want 1", got)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := j.reopenIfMoved(); err != nil {
		t.Fatalf("reopen after a delete: %v", err)
	}
	mustAppend(t, j, Event{Listener: "chat", ID: "after-delete"})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if got := countLines(t, path); got != 1 {
		t.Errorf("the log created after the delete has %d events, want 1", got)
	}
}

// TestHookStderrLogCapped checks that a hook that floods stderr logs at
// most maxHookLogLines lines and one warning that counts the rest.
func TestHookStderrLogCapped(t *testing.T) {
	cfg := hookListener(t, `cat >/dev/null; i=0; while [ $i -lt 500 ]; do echo "traceback line $i" >&2; i=$((i+1)); done; echo reply`)
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logged}, nil))
	hooks := NewHookRunner(cfg, sharedReaper(t), "AGENT_RUNNER_DAEMON=test", []string{"/usr/bin", "/bin"}, time.Second, log)

	reply, err := hooks.Run(context.Background(), Event{Type: "message", ID: "m1", Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if reply != "reply" {
		t.Errorf("reply = %q, want %q", reply, "reply")
	}
	if got := strings.Count(logged.String(), `msg="hook output"`); got != maxHookLogLines {
		t.Errorf("hook output lines logged = %d, want %d", got, maxHookLogLines)
	}
	if !strings.Contains(logged.String(), "dropped=400") {
		t.Errorf("log: want a warning that counts the 400 lines not logged, got the tail:\n%s", tail(logged.String(), 500))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// mustAppend appends ev to j and ends the test when that fails.
func mustAppend(t *testing.T, j *Journal, ev Event) {
	t.Helper()
	if err := j.Append(ev); err != nil {
		t.Fatal(err)
	}
}
