package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/listeners"
)

func (p *project) status() control.Status {
	p.t.Helper()
	res := p.run("list", "--json")
	if res.code != 0 {
		p.t.Fatalf("list exit %d: %s", res.code, res.stderr)
	}
	var status control.Status
	if err := json.Unmarshal([]byte(res.stdout), &status); err != nil {
		p.t.Fatalf("decode list output: %v", err)
	}
	return status
}

func (p *project) listener(name string) listeners.Health {
	p.t.Helper()
	for _, h := range p.status().Listeners {
		if h.Name == name {
			return h
		}
	}
	p.t.Fatalf("listener %s not in list", name)
	return listeners.Health{}
}

func TestListenersRunBesideJobs(t *testing.T) {
	p := newProject(t, `[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> ticks"]
every = "1s"

[listeners.svc]
kind = "exec"
command = ["sh", "-c", "echo $$ > svc.pid; exec sleep 300"]

[listeners.broken]
kind = "exec"
command = ["sh", "-c", "echo starting; exit 1"]

[listeners.bot]
kind = "discord"
`)
	d := p.startDaemon()
	waitFor(t, "svc to run", func() bool { return p.listener("svc").State == listeners.StateRunning })
	waitFor(t, "broken to restart", func() bool { return p.listener("broken").Restarts >= 1 })

	before := len(lines(t, p.path("ticks")))
	time.Sleep(2500 * time.Millisecond)
	if after := len(lines(t, p.path("ticks"))); after < before+2 {
		t.Errorf("ticks went from %d to %d in 2.5s while a listener kept failing", before, after)
	}
	broken := p.listener("broken")
	if !strings.Contains(broken.LastError, "exit status 1") {
		t.Errorf("broken last error = %q, want the exit status", broken.LastError)
	}
	if bot := p.listener("bot"); bot.State != listeners.StateDisabled {
		t.Errorf("discord without a token: state %q, want disabled", bot.State)
	}
	if !strings.Contains(d.log(), "listener=broken") || !strings.Contains(d.log(), "line=starting") {
		t.Errorf("the failing child's output is not in the daemon log")
	}
	res := p.run("status", "svc")
	if res.code != 0 || strings.Contains(res.stdout, "SCHEDULE") || !strings.Contains(res.stdout, "svc") {
		t.Errorf("status of a listener = %d %q, want its row and no job table", res.code, res.stdout)
	}
	if !strings.Contains(res.stdout, "3 listeners") {
		t.Errorf("status of a listener = %q, want the daemon's summary of all 3 listeners", res.stdout)
	}
	res = p.run("send", "discord", "hello")
	if res.code == 0 || !strings.Contains(res.stderr, "listener bot is disabled") {
		t.Errorf("send by the kind of a disabled listener = %d %q, want the listener and why it is disabled", res.code, res.stderr)
	}
	res = p.run("status", "tick")
	if !strings.Contains(res.stdout, "3 listeners") {
		t.Errorf("status of a job = %q, want the daemon's summary of all 3 listeners", res.stdout)
	}

	pid := lines(t, p.path("svc.pid"))[0]
	d.stop()
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Errorf("exec listener child %s outlived the daemon", pid)
	}
}

// fakePDS speaks the few AT Protocol XRPC methods a Bluesky listener
// uses: login, notifications newest first, and posting.
type fakePDS struct {
	mu            sync.Mutex
	logins        int
	notifications []map[string]any
	posts         []map[string]any
}

func (f *fakePDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch strings.TrimPrefix(r.URL.Path, "/xrpc/") {
	case "com.atproto.server.createSession":
		var in struct{ Identifier, Password string }
		json.NewDecoder(r.Body).Decode(&in)
		if in.Password != "app-password-123" {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": "AuthenticationRequired"})
			return
		}
		f.logins++
		json.NewEncoder(w).Encode(map[string]any{
			"accessJwt": "access-token", "refreshJwt": "refresh-token",
			"did": "did:plc:bot", "handle": "bot.test",
		})
	case "app.bsky.notification.listNotifications":
		list := make([]map[string]any, len(f.notifications))
		for i, n := range f.notifications {
			list[len(list)-1-i] = n
		}
		json.NewEncoder(w).Encode(map[string]any{"notifications": list})
	case "com.atproto.repo.createRecord":
		var in struct {
			Record map[string]any `json:"record"`
		}
		json.NewDecoder(r.Body).Decode(&in)
		f.posts = append(f.posts, in.Record)
		json.NewEncoder(w).Encode(map[string]string{
			"uri": fmt.Sprintf("at://did:plc:bot/app.bsky.feed.post/%d", len(f.posts)), "cid": "bafypost",
		})
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "MethodNotImplemented"})
	}
}

func (f *fakePDS) mention(n int, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notifications = append(f.notifications, map[string]any{
		"uri":       fmt.Sprintf("at://did:plc:alice/app.bsky.feed.post/m%d", n),
		"cid":       "bafymention" + strconv.Itoa(n),
		"author":    map[string]string{"did": "did:plc:alice", "handle": "alice.test"},
		"reason":    "mention",
		"record":    map[string]any{"$type": "app.bsky.feed.post", "text": text, "createdAt": time.Now().UTC().Format(time.RFC3339)},
		"indexedAt": time.Now().UTC().Add(time.Duration(n) * time.Millisecond).Format(time.RFC3339Nano),
	})
}

func (f *fakePDS) snapshot() (logins int, posts []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.logins, append([]map[string]any(nil), f.posts...)
}

func TestBlueskyMentionRunsHookAndReplies(t *testing.T) {
	pds := &fakePDS{}
	srv := httptest.NewServer(pds)
	defer srv.Close()
	pds.mention(0, "an old mention that must not be replayed")

	p := newProject(t, fmt.Sprintf(`[listeners.mentions]
kind = "bluesky"
handle = "bot.test"
password = { file = "app-password" }
host = %q
poll = "5s"
on_event = ["sh", "-c", "cat >> events.jsonl; echo thanks for the mention"]
log_to = "events-log.jsonl"

[jobs.daily-post]
post = { via = "mentions", text_command = ["sh", "-c", "echo daily post $AGENT_RUNNER_TRIGGER"] }
schedule = "0 9 * * *"
`, srv.URL))
	os.WriteFile(p.path("app-password"), []byte("app-password-123\n"), 0o600)

	d := p.startDaemon()
	waitFor(t, "the listener to connect", func() bool { return p.listener("mentions").State == listeners.StateRunning })
	pds.mention(1, "@bot.test hello from alice")
	waitFor(t, "the hook's reply", func() bool { _, posts := pds.snapshot(); return len(posts) == 1 })

	_, posts := pds.snapshot()
	if posts[0]["text"] != "thanks for the mention" {
		t.Errorf("reply text = %v, want the hook's stdout", posts[0]["text"])
	}
	if posts[0]["reply"] == nil {
		t.Errorf("the hook's reply is not a reply post: %v", posts[0])
	}
	events := readLines(t, p.path("events.jsonl"))
	if len(events) != 1 || !strings.Contains(events[0], "hello from alice") {
		t.Errorf("hook stdin = %q, want exactly the new mention", events)
	}
	// The event log is written in batches, within a second.
	waitFor(t, "the event in the log_to file", func() bool { return len(readLines(t, p.path("events-log.jsonl"))) == 1 })

	res := p.run("send", "bluesky", "scheduled post https://example.com")
	if res.code != 0 || !strings.Contains(res.stdout, "sent through mentions") {
		t.Errorf("send = %d %q %q", res.code, res.stdout, res.stderr)
	}
	_, posts = pds.snapshot()
	if len(posts) != 2 || posts[1]["facets"] == nil {
		t.Errorf("posts after send = %v, want a second post with a link facet", posts)
	}

	res = p.run("run-job", "daily-post")
	if res.code != 0 || !strings.Contains(res.stdout, "posted through mentions") {
		t.Errorf("run-job of a post job = %d %q %q", res.code, res.stdout, res.stderr)
	}
	_, posts = pds.snapshot()
	if len(posts) != 3 || posts[2]["text"] != "daily post manual" {
		t.Errorf("posts after the post job = %v, want the text_command's output", posts)
	}

	// Without the daemon nothing holds a session to post through.
	d.stop()
	res = p.run("run-job", "daily-post")
	if res.code != 125 || !strings.Contains(res.stderr, "needs the running daemon") {
		t.Errorf("run-job of a post job without the daemon = %d %q, want 125 and the reason", res.code, res.stderr)
	}

	// A restart keeps the session and the high-water mark.
	d = p.startDaemon()
	waitFor(t, "the listener to reconnect", func() bool { return p.listener("mentions").State == listeners.StateRunning })
	time.Sleep(6 * time.Second)
	logins, _ := pds.snapshot()
	if logins != 1 {
		t.Errorf("logins = %d, want 1: a restart must reuse the stored session", logins)
	}
	if events := readLines(t, p.path("events.jsonl")); len(events) != 1 {
		t.Errorf("events after restart = %d, want no replay", len(events))
	}
	d.stop()

	data, _ := os.ReadFile(p.path("state/state.db"))
	if strings.Contains(d.log(), "app-password-123") || strings.Contains(string(data), "app-password-123") {
		t.Errorf("the app password reached the log or the store")
	}
}

// TestLeftoverSearchFollowsAnUncleanStop kills a daemon whose exec
// listener outlives it, and checks that the next start stops that
// listener. After a clean stop the next start does not search: a process
// that carries the daemon's marker without being its child survives it.
func TestLeftoverSearchFollowsAnUncleanStop(t *testing.T) {
	p := newProject(t, `[listeners.watcher]
kind = "exec"
command = ["sh", "-c", "echo $$ >> watcher.pids; exec sleep 300"]
`)
	t.Cleanup(func() { killPids(t, p.path("watcher.pids")) })
	d := p.startDaemon()
	waitFor(t, "the listener", func() bool { return len(lines(t, p.path("watcher.pids"))) == 1 })
	orphan := lines(t, p.path("watcher.pids"))[0]
	marker := daemonMarkerOf(t, orphan)
	d.kill()
	if !running(orphan) {
		t.Fatalf("the listener's process %s died with the daemon; this test needs it to outlive it", orphan)
	}

	d = p.startDaemon()
	d.waitLog("stopped processes left by a previous daemon or CLI")
	if running(orphan) {
		t.Errorf("the killed daemon's listener %s still runs after the restart", orphan)
	}
	waitFor(t, "the listener again", func() bool { return len(lines(t, p.path("watcher.pids"))) == 2 })
	d.stop()

	decoy := exec.Command("sleep", "300")
	decoy.Env = append(os.Environ(), marker)
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { decoy.Process.Kill(); decoy.Wait() })
	d = p.startDaemon()
	waitFor(t, "the listener after a clean stop", func() bool { return len(lines(t, p.path("watcher.pids"))) == 3 })
	if !running(strconv.Itoa(decoy.Process.Pid)) {
		t.Errorf("a start after a clean stop searched for leftovers and stopped process %d", decoy.Process.Pid)
	}
	d.stop()
}

// daemonMarkerOf returns the AGENT_RUNNER_DAEMON entry of a process's
// environment. A process inside execve shows an empty environment for a
// moment, so the entry is awaited rather than read once.
func daemonMarkerOf(t *testing.T, pid string) string {
	t.Helper()
	var marker string
	waitFor(t, "the AGENT_RUNNER_DAEMON entry of process "+pid, func() bool {
		data, err := os.ReadFile("/proc/" + pid + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		for entry := range strings.SplitSeq(string(data), "\x00") {
			if strings.HasPrefix(entry, "AGENT_RUNNER_DAEMON=") {
				marker = entry
				return true
			}
		}
		return false
	})
	return marker
}

func TestJSONLogHasOnlyJSONLines(t *testing.T) {
	p := newProject(t, fmt.Sprintf(`[listeners.bot]
kind = "discord"
token = { file = "token" }
gateway_url = "ws://127.0.0.1:%d"
`, freePort(t)))
	if err := os.WriteFile(p.path("token"), []byte("fake-token-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := p.startProcess("--log-format", "json")
	d.waitLog("scheduler started")
	waitFor(t, "bot to fail a connect", func() bool { return p.listener("bot").LastError != "" })
	d.stop()

	for _, line := range strings.Split(strings.TrimSpace(d.log()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %q", line)
		}
	}
}

func TestListExplainsErrorsAndProblems(t *testing.T) {
	p := newProject(t, `[jobs.needs-env]
command = ["true"]
every = "1h"
env = { TOKEN = { env = "AGENT_RUNNER_TEST_UNSET_VARIABLE" } }

[listeners.flaky]
kind = "exec"
command = ["sh", "-c", "if [ -e failed-once ]; then exec sleep 300; fi; touch failed-once; exit 1"]
`)
	d := p.startDaemon()
	waitFor(t, "flaky to run after its failure", func() bool {
		h := p.listener("flaky")
		return h.State == listeners.StateRunning && h.Restarts >= 1
	})
	res := p.run("list")
	if !strings.Contains(res.stdout, "before the last restart: child exited: exit status 1") {
		t.Errorf("list shows a running listener's old error without saying so:\n%s", res.stdout)
	}
	if !strings.Contains(res.stdout, "needs-env cannot run:") || !strings.Contains(res.stdout, "jobs.needs-env.env.TOKEN") {
		t.Errorf("list does not say why needs-env cannot run:\n%s", res.stdout)
	}
	d.stop()
}

func TestShutdownCutsListenerStopGrace(t *testing.T) {
	// shutdown_timeout is 5s. The child and the job both ignore SIGTERM,
	// so only SIGKILL ends them.
	p := newProject(t, `[jobs.stubborn]
command = ["sh", "-c", "trap '' TERM; echo $$ > job.pid; while :; do sleep 0.1; done"]
schedule = "0 0 1 1 *"

[listeners.svc]
kind = "exec"
command = ["sh", "-c", "trap '' TERM; echo $$ > svc.pid; while :; do sleep 0.1; done"]
stop_grace = "60s"
`)
	d := p.startDaemon()
	go p.run("run-job", "stubborn")
	waitFor(t, "svc to run", func() bool { return p.listener("svc").State == listeners.StateRunning })
	waitFor(t, "the job to start", func() bool { return len(lines(t, p.path("job.pid"))) == 1 })

	start := time.Now()
	d.stop()
	// The listener's child and the job stop side by side, each within
	// shutdown_timeout, so the stop ends well before two timeouts.
	if took := time.Since(start); took > 9*time.Second {
		t.Errorf("stop took %s, want about shutdown_timeout (5s)", took.Round(100*time.Millisecond))
	}
	if pid := lines(t, p.path("svc.pid"))[0]; alive(pid) {
		t.Errorf("the listener's child %s outlived the daemon", pid)
	}
	if !strings.Contains(d.log(), "stop grace cut to fit the stop timeout") {
		t.Errorf("the daemon did not log the cut stop grace")
	}
}

func TestEchoedPasswordRedacted(t *testing.T) {
	const password = "echoed-app-password-4321"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error":"AuthenticationRequired","message":"Invalid identifier or password: got %s"}`, password)
	}))
	defer srv.Close()
	p := newProject(t, fmt.Sprintf(`[listeners.mentions]
kind = "bluesky"
handle = "bot.test"
password = { file = "app-password" }
host = %q
`, srv.URL))
	if err := os.WriteFile(p.path("app-password"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := p.startDaemon()
	waitFor(t, "the login to fail", func() bool { return p.listener("mentions").LastError != "" })
	res := p.run("list")
	d.stop()

	if !strings.Contains(res.stdout, "[redacted]") {
		t.Errorf("list does not show the server's error, redacted:\n%s", res.stdout)
	}
	for where, text := range map[string]string{"list": res.stdout, "the daemon log": d.log()} {
		if strings.Contains(text, password) {
			t.Errorf("%s contains the password that the server echoed:\n%s", where, text)
		}
	}
}
