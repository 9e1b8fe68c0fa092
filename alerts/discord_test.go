package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// deliverOnce runs one alert through a test dispatcher's retry loop for
// sink and returns the attempts, the error and the time it took.
func deliverOnce(t *testing.T, sink Sink, cfg SinkConfig) (int, error, time.Duration) {
	t.Helper()
	log, _ := newTestLogger()
	d := newTestDispatcher([]SinkConfigured{{Sink: sink, Config: cfg}}, log)
	start := time.Now()
	attempts, err := d.workers[0].deliver(context.Background(), failedAlert("digest", base))
	return attempts, err, time.Since(start)
}

func TestDiscordWaitsOutRetryAfter(t *testing.T) {
	server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		if call == 1 {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"message": "You are being rate limited.", "retry_after": 0.3, "global": false}`)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := webhookConfig(webhookURL(server.Server))

	attempts, err, took := deliverOnce(t, newWebhook(t, cfg), cfg)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if attempts != 2 {
		t.Errorf("attempts: got %d, want 2", attempts)
	}
	if server.requests() != 2 {
		t.Errorf("requests: got %d, want 2", server.requests())
	}
	// The backoff is a millisecond, so only retry_after explains a wait
	// this long; the body's 0.3s wins over the header's 1s.
	if took < 300*time.Millisecond {
		t.Errorf("delivery took %s, want at least the 300ms that retry_after asked for", took)
	}
	if took >= time.Second {
		t.Errorf("delivery took %s, want less than the header's 1s because the body's retry_after is preferred", took)
	}
}

func TestDiscordRetriesServerError(t *testing.T) {
	server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		if call <= 2 {
			http.Error(w, "upstream broke", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := webhookConfig(webhookURL(server.Server))

	attempts, err, _ := deliverOnce(t, newWebhook(t, cfg), cfg)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if attempts != 3 {
		t.Errorf("attempts: got %d, want 3", attempts)
	}
	if server.requests() != 3 {
		t.Errorf("requests: got %d, want 3", server.requests())
	}
}

func TestDiscordGivesUpAfterMaxAttempts(t *testing.T) {
	server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		http.Error(w, "upstream broke", http.StatusBadGateway)
	})
	cfg := webhookConfig(webhookURL(server.Server))

	attempts, err, _ := deliverOnce(t, newWebhook(t, cfg), cfg)
	if err == nil {
		t.Fatal("deliver: got nil error, want the last 502")
	}
	if !strings.Contains(err.Error(), "502") {
		t.Errorf("error: got %q, want it to name the status 502", err)
	}
	if attempts != 5 {
		t.Errorf("attempts: got %d, want 5", attempts)
	}
	if server.requests() != 5 {
		t.Errorf("requests: got %d, want 5", server.requests())
	}
}

func TestDiscordClientErrorNotRetried(t *testing.T) {
	server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"message": "Cannot send an empty message", "code": 50006}`)
	})
	cfg := webhookConfig(webhookURL(server.Server))

	attempts, err, _ := deliverOnce(t, newWebhook(t, cfg), cfg)
	var permanent *PermanentError
	if !errors.As(err, &permanent) {
		t.Fatalf("error: got %v, want a *PermanentError", err)
	}
	if !strings.Contains(err.Error(), "Cannot send an empty message") {
		t.Errorf("error: got %q, want Discord's message in it", err)
	}
	if !strings.Contains(err.Error(), `"ops"`) {
		t.Errorf("error: got %q, want it to name the sink", err)
	}
	if attempts != 1 {
		t.Errorf("attempts: got %d, want 1", attempts)
	}
	if server.requests() != 1 {
		t.Errorf("requests: got %d, want 1", server.requests())
	}
}

// webhookPayload is the decoded body of one webhook request.
type webhookPayload struct {
	Content         string `json:"content"`
	Username        string `json:"username"`
	AllowedMentions *struct {
		Parse []string `json:"parse"`
	} `json:"allowed_mentions"`
}

// postedPayload sends a through a webhook sink built from cfg and returns
// the raw and decoded body the server got.
func postedPayload(t *testing.T, includeOutput bool, a Alert) (string, webhookPayload) {
	t.Helper()
	server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := webhookConfig(webhookURL(server.Server))
	cfg.IncludeOutput = includeOutput
	if err := newWebhook(t, cfg).Send(context.Background(), a); err != nil {
		t.Fatalf("Send: %v", err)
	}
	raw := server.body(0)
	var payload webhookPayload
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatalf("decode payload %s: %v", raw, err)
	}
	return string(raw), payload
}

func TestDiscordPayloadWithoutOutput(t *testing.T) {
	a := failedAlert("digest", base)
	a.Output = "@everyone the database password is hunter2"
	raw, payload := postedPayload(t, false, a)

	if payload.Username != "agent-runner" {
		t.Errorf("username: got %q, want %q", payload.Username, "agent-runner")
	}
	if !strings.Contains(raw, `"allowed_mentions":{"parse":[]}`) {
		t.Errorf("payload: got %s, want allowed_mentions with an empty parse list", raw)
	}
	if !strings.Contains(payload.Content, "exit status 3") {
		t.Errorf("content: got %q, want the summary", payload.Content)
	}
	if !strings.Contains(payload.Content, "job digest") {
		t.Errorf("content: got %q, want the job name", payload.Content)
	}
	if strings.Contains(payload.Content, "hunter2") {
		t.Errorf("content: got %q, want no output because include_output is off", payload.Content)
	}
	if strings.Contains(payload.Content, "```") {
		t.Errorf("content: got %q, want no code block", payload.Content)
	}
}

func TestDiscordPayloadWithOutput(t *testing.T) {
	a := failedAlert("digest", base)
	a.Output = "step 1 ok\n```\n@everyone injected\n```\nError: disk full\n"
	raw, payload := postedPayload(t, true, a)

	if !strings.Contains(raw, `"allowed_mentions":{"parse":[]}`) {
		t.Errorf("payload: got %s, want allowed_mentions with an empty parse list", raw)
	}
	if !strings.Contains(payload.Content, "Error: disk full") {
		t.Errorf("content: got %q, want the output", payload.Content)
	}
	// Only the block's own fences may contain three backticks in a row.
	if n := strings.Count(payload.Content, "```"); n != 2 {
		t.Errorf("content: got %d runs of three backticks, want 2 (the fences):\n%s", n, payload.Content)
	}
	if !strings.HasSuffix(payload.Content, "\n```") {
		t.Errorf("content: got %q, want it to end with the closing fence", payload.Content)
	}
}

func TestDiscordContentFitsLimit(t *testing.T) {
	a := failedAlert("digest", base)
	a.Detail = strings.Repeat("detail ", 500)
	a.Output = strings.Repeat("🙂 line of output\n", 500) + "LAST LINE"

	for _, includeOutput := range []bool{false, true} {
		content := discordContent(a, includeOutput)
		if n := utf16Len(content); n > maxContentUnits {
			t.Errorf("include_output=%v: content is %d UTF-16 units, want at most %d", includeOutput, n, maxContentUnits)
		}
		if !strings.Contains(content, "exit status 3") {
			t.Errorf("include_output=%v: content lost the summary", includeOutput)
		}
		if includeOutput && !strings.Contains(content, "LAST LINE```") && !strings.Contains(content, "LAST LINE\n```") {
			t.Errorf("include_output=%v: content lost the end of the output:\n%s", includeOutput, content)
		}
	}
}

func TestDiscordContentSuppressedCount(t *testing.T) {
	a := failedAlert("digest", base)
	a.Suppressed = 4
	content := discordContent(a, false)
	if !strings.Contains(content, "4 more") {
		t.Errorf("content: got %q, want it to count the 4 suppressed alerts", content)
	}
}

// TestDiscordRedirectNotDelivered checks that a webhook URL that
// redirects a POST with 301, 302 or 303 fails for good. Go's client
// would repeat such a request as a GET, whose 200 is no delivery.
// Redirects with 307 and 308 keep the POST and its body, so they are
// followed.
func TestDiscordRedirectNotDelivered(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
				if r.URL.Path != "/moved" {
					http.Redirect(w, r, "/moved", code)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			cfg := webhookConfig(webhookURL(server.Server))

			attempts, err, _ := deliverOnce(t, newWebhook(t, cfg), cfg)
			if err == nil {
				t.Fatal("deliver: got nil error, want a failure for the redirect")
			}
			var permanent *PermanentError
			if !errors.As(err, &permanent) {
				t.Errorf("error %v is not permanent", err)
			}
			if attempts != 1 {
				t.Errorf("attempts: got %d, want 1", attempts)
			}
			if server.requests() != 1 {
				t.Errorf("requests: got %d, want only the redirected POST", server.requests())
			}
		})
	}
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
				if r.URL.Path != "/moved" {
					http.Redirect(w, r, "/moved", code)
					return
				}
				if r.Method != http.MethodPost {
					t.Errorf("redirected request method: got %s, want POST", r.Method)
				}
				w.WriteHeader(http.StatusNoContent)
			})
			cfg := webhookConfig(webhookURL(server.Server))

			if _, err, _ := deliverOnce(t, newWebhook(t, cfg), cfg); err != nil {
				t.Fatalf("deliver: %v", err)
			}
			if got := len(server.body(1)); got == 0 {
				t.Error("the redirected POST has no body")
			}
		})
	}
}

func TestRetryAfterParsing(t *testing.T) {
	tests := []struct {
		name   string
		header string
		body   string
		want   time.Duration
		wantOK bool
	}{
		{"body seconds with fraction", "", `{"retry_after": 1.5}`, 1500 * time.Millisecond, true},
		{"body wins over header", "7", `{"retry_after": 0.25}`, 250 * time.Millisecond, true},
		{"header seconds", "2", `not json`, 2 * time.Second, true},
		{"neither", "", `{}`, 0, false},
		{"negative body", "", `{"retry_after": -1}`, 0, false},
		{"body past the duration range", "", `{"retry_after": 1e300}`, math.MaxInt64, true},
		{"header past the duration range", "1e20", ``, math.MaxInt64, true},
		{"header infinity", "Inf", ``, math.MaxInt64, true},
		{"header not a number", "NaN", ``, 0, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			header := http.Header{}
			if test.header != "" {
				header.Set("Retry-After", test.header)
			}
			got, ok := retryAfter(header, []byte(test.body))
			if ok != test.wantOK {
				t.Errorf("ok: got %v, want %v", ok, test.wantOK)
			}
			if got != test.want {
				t.Errorf("wait: got %s, want %s", got, test.want)
			}
		})
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	header := http.Header{}
	header.Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	got, ok := retryAfter(header, nil)
	if !ok {
		t.Fatal("ok: got false, want true for an HTTP date")
	}
	if got < 58*time.Minute || got > time.Hour {
		t.Errorf("wait: got %s, want about an hour", got)
	}
}

// expectNoToken fails when text contains the webhook token.
func expectNoToken(t *testing.T, label, text string) {
	t.Helper()
	if strings.Contains(text, testToken) {
		t.Errorf("%s contains the webhook token: %s", label, text)
	}
}

func TestDiscordErrorsNeverContainURL(t *testing.T) {
	// echo responds with the request path, which holds the token, the way a
	// misbehaving proxy might.
	echo := func(status int) func(http.ResponseWriter, *http.Request, int) {
		return func(w http.ResponseWriter, r *http.Request, call int) {
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"message": "no webhook at %s%s"}`, r.Host, r.URL.Path)
		}
	}
	for _, status := range []int{http.StatusNotFound, http.StatusInternalServerError, http.StatusTooManyRequests} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			server := newWebhookServer(t, echo(status))
			cfg := webhookConfig(webhookURL(server.Server))
			err := newWebhook(t, cfg).Send(context.Background(), failedAlert("digest", base))
			if err == nil {
				t.Fatal("Send: got nil error, want a failed delivery")
			}
			expectNoToken(t, "error", err.Error())
			if !strings.Contains(err.Error(), "[redacted]") {
				t.Errorf("error: got %q, want the echoed path redacted", err)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		server := newWebhookServer(t, echo(http.StatusNoContent))
		cfg := webhookConfig(webhookURL(server.Server))
		server.Close()
		err := newWebhook(t, cfg).Send(context.Background(), failedAlert("digest", base))
		if err == nil {
			t.Fatal("Send: got nil error, want connection refused")
		}
		expectNoToken(t, "error", err.Error())
	})

	t.Run("timeout", func(t *testing.T) {
		server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
			<-r.Context().Done()
		})
		cfg := webhookConfig(webhookURL(server.Server))
		cfg.Timeout = 100 * time.Millisecond
		err := newWebhook(t, cfg).Send(context.Background(), failedAlert("digest", base))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error: got %v, want context.DeadlineExceeded", err)
		}
		if err != nil {
			expectNoToken(t, "error", err.Error())
		}
	})

	t.Run("invalid url", func(t *testing.T) {
		for _, raw := range []string{"ftp://127.0.0.1/" + testToken, "http://[::1/" + testToken, "/relative/" + testToken} {
			_, err := NewDiscordWebhook(webhookConfig(raw), nil)
			if err == nil {
				t.Errorf("NewDiscordWebhook(%s): got nil error, want invalid url", strings.ReplaceAll(raw, testToken, "TOKEN"))
				continue
			}
			expectNoToken(t, "error", err.Error())
			if !strings.Contains(err.Error(), "env ALERT_WEBHOOK") {
				t.Errorf("error: got %q, want it to name the secret's source", err)
			}
		}
	})
}

func TestDiscordLogsNeverContainURL(t *testing.T) {
	server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unavailable: %s", r.URL.Path)
	})
	cfg := webhookConfig(webhookURL(server.Server))
	sink := newWebhook(t, cfg)
	log, logs := newTestLogger()
	d := newTestDispatcher([]SinkConfigured{{Sink: sink, Config: cfg}}, log)
	stop := startDispatcher(t, d)

	d.Notify(failedAlert("digest", base))
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(logs.String(), "giving up") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()

	text := logs.String()
	if !strings.Contains(text, "giving up") {
		t.Fatalf("log: want a record of the failed delivery, got:\n%s", text)
	}
	if !strings.Contains(text, "sink=ops") {
		t.Errorf("log: want records naming the sink, got:\n%s", text)
	}
	expectNoToken(t, "log", text)
	log.Info("printing the sink and its config", "sink", sink, "config", cfg)
	expectNoToken(t, "log of the sink and config", logs.String())
	expectNoToken(t, "formatted sink and config", fmt.Sprintf("%v %+v %#v %+v", sink, sink, cfg, cfg))
}
