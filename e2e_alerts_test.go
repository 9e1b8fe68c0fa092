package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// webhook records the Discord webhook posts it receives.
type webhook struct {
	mu    sync.Mutex
	posts []string
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var body struct {
		Content         string
		AllowedMentions struct{ Parse []string } `json:"allowed_mentions"`
	}
	json.NewDecoder(r.Body).Decode(&body)
	w.mu.Lock()
	w.posts = append(w.posts, body.Content)
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

func (w *webhook) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.posts...)
}

// flakyProject returns a project with a job that fails every second until
// the file "healthy" exists, and a Discord webhook sink with a cooldown
// of an hour, whose posts the returned webhook records.
func flakyProject(t *testing.T) (*project, *webhook) {
	t.Helper()
	hook := &webhook{}
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	p := newProject(t, `[jobs.flaky]
command = ["sh", "-c", "echo not yet; test -e healthy"]
every = "1s"

[alerts.ops]
kind = "discord_webhook"
url = { file = "webhook-url" }
cooldown = "1h"
`)
	secretURL := srv.URL + "/api/webhooks/123/very-secret-token"
	os.WriteFile(p.path("webhook-url"), []byte(secretURL+"\n"), 0o600)
	return p, hook
}

func TestFailingJobAlertsOnceAndRecovers(t *testing.T) {
	p, hook := flakyProject(t)
	d := p.startDaemon()
	waitFor(t, "the failure alert", func() bool { return len(hook.got()) >= 1 })
	time.Sleep(3 * time.Second) // three more failed runs, all within the cooldown
	if posts := hook.got(); len(posts) != 1 {
		t.Fatalf("alerts while failing = %d, want 1: %q", len(posts), posts)
	}
	if !strings.Contains(hook.got()[0], "flaky") || !strings.Contains(hook.got()[0], "failed") {
		t.Errorf("failure alert = %q, want the job and the event", hook.got()[0])
	}

	os.WriteFile(p.path("healthy"), nil, 0o600)
	waitFor(t, "the recovery alert", func() bool { return len(hook.got()) >= 2 })
	time.Sleep(2 * time.Second)
	posts := hook.got()
	if len(posts) != 2 || !strings.Contains(posts[1], "recovered") {
		t.Errorf("alerts after recovery = %q, want exactly one recovered", posts)
	}
	if strings.Contains(posts[0], "not yet") {
		t.Errorf("the alert includes job output without include_output")
	}
	d.stop()
	if strings.Contains(d.log(), "very-secret-token") {
		t.Errorf("the webhook URL reached the log")
	}
}

// TestAlertMemoryKeptAcrossRestart checks that a restart neither repeats
// a failure alert within its cooldown nor loses the recovery of a failure
// alerted before it.
func TestAlertMemoryKeptAcrossRestart(t *testing.T) {
	p, hook := flakyProject(t)
	d := p.startDaemon()
	waitFor(t, "the failure alert", func() bool { return len(hook.got()) >= 1 })
	d.stop()

	d = p.startDaemon()
	waitFor(t, "two failed runs after the restart", func() bool { return strings.Count(d.log(), "run failed") >= 2 })
	time.Sleep(time.Second) // time for an alert of those runs to arrive
	if posts := hook.got(); len(posts) != 1 {
		t.Fatalf("alerts after the restart = %d, want the first one only: %q", len(posts), posts)
	}

	os.WriteFile(p.path("healthy"), nil, 0o600)
	waitFor(t, "the recovery alert", func() bool { return len(hook.got()) >= 2 })
	if posts := hook.got(); !strings.Contains(posts[1], "recovered") {
		t.Errorf("alert after the recovery = %q, want recovered", posts[1])
	}
	d.stop()
}

// TestAlertCommandsEndWithTheDaemon checks that a clean stop waits for a
// hanging alert command and stops it, and that after a kill -9 the next
// start stops the one the killed daemon left.
func TestAlertCommandsEndWithTheDaemon(t *testing.T) {
	p := newProject(t, `[jobs.bad]
command = ["sh", "-c", "exit 1"]
every = "1s"

[alerts.ops]
kind = "exec"
command = ["sh", "-c", "echo $$ >> alert.pids; cat > /dev/null; exec sleep 300"]
events = ["failed"]
`)
	t.Cleanup(func() { killPids(t, p.path("alert.pids")) })
	d := p.startDaemon()
	waitFor(t, "the first alert command", func() bool { return len(lines(t, p.path("alert.pids"))) == 1 })
	d.stop()
	first := lines(t, p.path("alert.pids"))[0]
	if running(first) {
		t.Errorf("alert command %s outlived a clean stop", first)
	}

	d = p.startDaemon()
	waitFor(t, "the second alert command", func() bool { return len(lines(t, p.path("alert.pids"))) == 2 })
	second := lines(t, p.path("alert.pids"))[1]
	d.kill()
	if !running(second) {
		t.Fatalf("alert command %s died with the daemon; this test needs it to outlive it", second)
	}
	d = p.startDaemon()
	d.waitLog("stopped processes left by a previous daemon or CLI")
	if running(second) {
		t.Errorf("alert command %s left by a killed daemon still runs after the restart", second)
	}
	d.stop()
}
