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

func TestFailingJobAlertsOnceAndRecovers(t *testing.T) {
	hook := &webhook{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
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
