package alerts

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// base is an arbitrary alert time; the cooldown is measured between alert
// times, so tests move it forward instead of sleeping.
var base = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// sentinel is an alert on another key. A sink delivers in order, so once
// the sentinel arrives, every alert notified before it has been handled.
func sentinel(n int) Alert {
	return failedAlert(fmt.Sprintf("sentinel-%d", n), base)
}

func expectAlert(t *testing.T, got Alert, key, event string, suppressed int) {
	t.Helper()
	if got.Key != key {
		t.Errorf("alert key: got %q, want %q", got.Key, key)
	}
	if got.Event != event {
		t.Errorf("alert %s event: got %q, want %q", got.Key, got.Event, event)
	}
	if got.Suppressed != suppressed {
		t.Errorf("alert %s %s suppressed: got %d, want %d", got.Key, got.Event, got.Suppressed, suppressed)
	}
}

func TestDispatcherFailureCooldownAndRecovery(t *testing.T) {
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	d := newTestDispatcher([]SinkConfigured{{Sink: sink, Config: SinkConfig{Cooldown: time.Hour}}}, log)
	startDispatcher(t, d)

	d.Notify(failedAlert("digest", base))
	d.Notify(failedAlert("digest", base.Add(time.Minute)))
	d.Notify(failedAlert("digest", base.Add(2*time.Minute)))
	d.Notify(sentinel(1))
	expectAlert(t, sink.next(t), "job:digest", EventFailed, 0)
	expectAlert(t, sink.next(t), "job:sentinel-1", EventFailed, 0)

	// After the cooldown the next failure goes out and counts the two
	// repeats that were held back.
	d.Notify(failedAlert("digest", base.Add(61*time.Minute)))
	expectAlert(t, sink.next(t), "job:digest", EventFailed, 2)

	recovered := failedAlert("digest", base.Add(62*time.Minute))
	recovered.Event = EventRecovered
	d.Notify(recovered)
	expectAlert(t, sink.next(t), "job:digest", EventRecovered, 0)

	// Recovery cleared the state, so a new failure goes out at once,
	// inside what would have been the cooldown.
	d.Notify(failedAlert("digest", base.Add(63*time.Minute)))
	expectAlert(t, sink.next(t), "job:digest", EventFailed, 0)

	// A second recovery in a row has no failure before it.
	d.Notify(recovered)
	d.Notify(recovered)
	d.Notify(sentinel(2))
	expectAlert(t, sink.next(t), "job:digest", EventRecovered, 0)
	expectAlert(t, sink.next(t), "job:sentinel-2", EventFailed, 0)
}

func TestDispatcherRecoveredWithoutFailure(t *testing.T) {
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	d := newTestDispatcher([]SinkConfigured{{Sink: sink}}, log)
	startDispatcher(t, d)

	recovered := failedAlert("digest", base)
	recovered.Event = EventRecovered
	d.Notify(recovered)
	d.Notify(sentinel(1))

	expectAlert(t, sink.next(t), "job:sentinel-1", EventFailed, 0)
	if calls := sink.calls.Load(); calls != 1 {
		t.Errorf("sink calls: got %d, want 1 (only the sentinel)", calls)
	}
}

func TestDispatcherOtherEventNotSuppressed(t *testing.T) {
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	d := newTestDispatcher([]SinkConfigured{{Sink: sink}}, log)
	startDispatcher(t, d)

	d.Notify(failedAlert("digest", base))
	timeout := failedAlert("digest", base.Add(time.Second))
	timeout.Event = EventTimeout
	d.Notify(timeout)

	expectAlert(t, sink.next(t), "job:digest", EventFailed, 0)
	expectAlert(t, sink.next(t), "job:digest", EventTimeout, 0)
}

func TestDispatcherUndeliveredFailureStartsNoCooldown(t *testing.T) {
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	sink.fail = func(call int) error {
		if call == 1 {
			return &PermanentError{Err: errors.New("rejected")}
		}
		return nil
	}
	d := newTestDispatcher([]SinkConfigured{{Sink: sink, Config: SinkConfig{Cooldown: time.Hour}}}, log)
	startDispatcher(t, d)

	d.Notify(failedAlert("digest", base))
	// No failure alert reached anyone, so the recovery is not sent.
	recovered := failedAlert("digest", base.Add(time.Minute))
	recovered.Event = EventRecovered
	d.Notify(recovered)
	d.Notify(failedAlert("digest", base.Add(2*time.Minute)))

	expectAlert(t, sink.next(t), "job:digest", EventFailed, 0)
	if calls := sink.calls.Load(); calls != 2 {
		t.Errorf("sink calls: got %d, want 2", calls)
	}
}

func TestDispatcherEventsFilter(t *testing.T) {
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	d := newTestDispatcher([]SinkConfigured{{Sink: sink, Config: SinkConfig{Events: []string{EventTimeout}}}}, log)
	startDispatcher(t, d)

	d.Notify(failedAlert("digest", base))
	timeout := failedAlert("digest", base)
	timeout.Event = EventTimeout
	d.Notify(timeout)

	expectAlert(t, sink.next(t), "job:digest", EventTimeout, 0)
	if calls := sink.calls.Load(); calls != 1 {
		t.Errorf("sink calls: got %d, want 1", calls)
	}
}

func TestNotifyFillsKeyAndTime(t *testing.T) {
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	d := newTestDispatcher([]SinkConfigured{{Sink: sink}}, log)
	startDispatcher(t, d)

	d.Notify(Alert{Kind: KindListener, Name: "chat", Event: EventCrashLooping, Suppressed: 9})
	got := sink.next(t)
	if got.Key != "listener:chat" {
		t.Errorf("key: got %q, want %q", got.Key, "listener:chat")
	}
	if got.Time.IsZero() {
		t.Error("time: got zero, want the time of Notify")
	}
	if got.Suppressed != 0 {
		t.Errorf("suppressed: got %d, want 0 because callers cannot set it", got.Suppressed)
	}
}

func TestNotifyNeverBlocksOnHangingSink(t *testing.T) {
	release := make(chan struct{})
	server := newWebhookServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	// Cleanups run last-in first-out, so the handler is released before
	// the server closes.
	t.Cleanup(func() { close(release) })

	log, logs := newTestLogger()
	cfg := webhookConfig(webhookURL(server.Server))
	cfg.Timeout = time.Minute
	fast := newRecordingSink("fast")
	d := newTestDispatcher([]SinkConfigured{
		{Sink: newWebhook(t, cfg), Config: cfg},
		{Sink: fast},
	}, log)
	stop := startDispatcher(t, d)

	const alerts = 1000
	start := time.Now()
	for i := range alerts {
		d.Notify(failedAlert(fmt.Sprintf("job-%d", i), base))
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Notify of %d alerts took %s, want well under a second", alerts, took)
	}

	// The hanging sink holds one alert in flight and queueSize queued.
	minDropped := uint64(alerts - queueSize - 1)
	if dropped := d.Dropped(); dropped < minDropped {
		t.Errorf("Dropped: got %d, want at least %d", dropped, minDropped)
	}
	expectAlert(t, fast.next(t), "job:job-0", EventFailed, 0)

	if took := stop(); took > 3*time.Second {
		t.Errorf("Run returned %s after its context ended, want about the drain timeout of %s", took, d.drainTimeout)
	}
	if n := strings.Count(logs.String(), "alert queue full"); n != 1 {
		t.Errorf("log records about dropped alerts: got %d, want 1 because they are rate-limited", n)
	}
	if !strings.Contains(logs.String(), "shutdown drain timed out") {
		t.Errorf("log: want a record about alerts abandoned at shutdown, got:\n%s", logs)
	}
}

// TestDroppedAlertsLoggedAfterStorm checks that drops held back by the
// log's rate limit are logged once the interval ends, also when no drop
// follows it.
func TestDroppedAlertsLoggedAfterStorm(t *testing.T) {
	log, logs := newTestLogger()
	d := newTestDispatcher([]SinkConfigured{{Sink: newRecordingSink("fake")}}, log)
	d.dropLogInterval = 100 * time.Millisecond

	// Without Run, the queue fills up and every alert past it is dropped.
	for i := range queueSize + 10 {
		d.Notify(failedAlert(fmt.Sprintf("job-%d", i), base))
	}
	if dropped := d.Dropped(); dropped != 10 {
		t.Fatalf("Dropped: got %d, want 10", dropped)
	}
	if !strings.Contains(logs.String(), "dropped=1 ") {
		t.Errorf("log: want the first drop logged at once, got:\n%s", logs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "dropped=9 ") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "dropped=9 ") {
		t.Errorf("log: want the 9 drops held back logged after the interval, got:\n%s", logs)
	}
}

func TestDroppedAlertsCountedPerSink(t *testing.T) {
	log, logs := newTestLogger()
	d := newTestDispatcher([]SinkConfigured{{Sink: newRecordingSink("a")}, {Sink: newRecordingSink("b")}}, log)
	d.dropLogInterval = 100 * time.Millisecond

	// Each alert past the queues is dropped once for each sink.
	for i := range queueSize + 10 {
		d.Notify(failedAlert(fmt.Sprintf("job-%d", i), base))
	}
	want := []string{"sink=a dropped=1 ", "sink=a dropped=9 ", "sink=b dropped=10 "}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want[2]) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range want {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %q:\n%s", line, logs)
		}
	}
}

func TestRunDrainsQueueAfterCancel(t *testing.T) {
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	d := newTestDispatcher([]SinkConfigured{{Sink: sink}}, log)

	// Alerts notified before Run wait for it, and Run delivers them
	// even though its context has already ended.
	for i := range 3 {
		d.Notify(failedAlert(fmt.Sprintf("job-%d", i), base))
	}
	stop := startDispatcher(t, d)
	stop()

	if got := len(sink.sent); got != 3 {
		t.Errorf("alerts delivered during drain: got %d, want 3", got)
	}
	if dropped := d.Dropped(); dropped != 0 {
		t.Errorf("Dropped: got %d, want 0", dropped)
	}
}

func TestRetryPolicyWait(t *testing.T) {
	policy := retryPolicy{attempts: 3, initial: time.Second, max: time.Minute, maxRetryAfter: 10 * time.Second}
	tests := []struct {
		name      string
		err       error
		attempt   int
		wantWait  time.Duration
		wantRetry bool
	}{
		{"plain error", errors.New("HTTP 500"), 1, 4 * time.Second, true},
		{"last attempt", errors.New("HTTP 500"), 3, 0, false},
		{"permanent", &PermanentError{Err: errors.New("HTTP 400")}, 1, 0, false},
		{"retry after", &RetryAfterError{Wait: 3 * time.Second, Err: errors.New("HTTP 429")}, 1, 3 * time.Second, true},
		{"retry after capped", &RetryAfterError{Wait: time.Hour, Err: errors.New("HTTP 429")}, 1, 10 * time.Second, true},
		{"wrapped permanent", fmt.Errorf("send: %w", &PermanentError{Err: errors.New("HTTP 404")}), 1, 0, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			wait, retry := policy.wait(test.err, test.attempt, 4*time.Second)
			if retry != test.wantRetry {
				t.Errorf("retry: got %v, want %v", retry, test.wantRetry)
			}
			if wait != test.wantWait {
				t.Errorf("wait: got %s, want %s", wait, test.wantWait)
			}
		})
	}
}

func TestSinkConfigValidate(t *testing.T) {
	secret := webhookConfig("https://example.invalid/api/webhooks/1/x").URL
	tests := []struct {
		name string
		cfg  SinkConfig
		want string
	}{
		{"missing name", SinkConfig{Kind: SinkExec, Command: []string{"true"}}, "missing name"},
		{"unknown kind", SinkConfig{Name: "a", Kind: "slack"}, `unknown kind "slack"`},
		{"missing url", SinkConfig{Name: "a", Kind: SinkDiscordWebhook}, "missing url"},
		{"missing command", SinkConfig{Name: "a", Kind: SinkExec}, "missing command"},
		{"unknown event", SinkConfig{Name: "a", Kind: SinkDiscordWebhook, URL: secret, Events: []string{"exploded"}}, `unknown event "exploded"`},
		{"negative cooldown", SinkConfig{Name: "a", Kind: SinkExec, Command: []string{"true"}, Cooldown: -time.Second}, "negative cooldown"},
		{"negative timeout", SinkConfig{Name: "a", Kind: SinkExec, Command: []string{"true"}, Timeout: -time.Second}, "negative timeout"},
		{"valid", SinkConfig{Name: "a", Kind: SinkDiscordWebhook, URL: secret, Events: []string{EventFailed, EventRecovered}}, ""},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			err := test.cfg.Validate()
			if test.want == "" {
				if err != nil {
					t.Errorf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), test.want) {
				t.Errorf("Validate: got %v, want an error containing %q", err, test.want)
			}
		})
	}
}
