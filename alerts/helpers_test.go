package alerts

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
)

// testReaper is shared by the whole test binary, because the subreaper
// mark belongs to the process.
var testReaper *process.Reaper

func TestMain(m *testing.M) {
	r, err := process.NewReaper(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	testReaper = r
	// The reaper runs for the whole test binary, because the subreaper
	// mark belongs to the process.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/agent-runner/agent-runner/process.(*Reaper).loop"))
}

// testPath is the PATH of exec sinks in tests.
var testPath = []string{"/usr/bin", "/bin"}

// waitTimeout bounds every wait for a delivery in these tests.
const waitTimeout = 5 * time.Second

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// recordingSink records what it is sent. fail, when set, decides the
// result of each call, numbered from 1.
type recordingSink struct {
	name  string
	sent  chan Alert
	calls atomic.Int32
	fail  func(call int) error
}

func newRecordingSink(name string) *recordingSink {
	return &recordingSink{name: name, sent: make(chan Alert, 4*queueSize)}
}

func (s *recordingSink) Name() string { return s.name }

func (s *recordingSink) Send(ctx context.Context, a Alert) error {
	call := int(s.calls.Add(1))
	if s.fail != nil {
		if err := s.fail(call); err != nil {
			return err
		}
	}
	s.sent <- a
	return nil
}

// next returns the next delivered alert, failing the test after
// waitTimeout.
func (s *recordingSink) next(t *testing.T) Alert {
	t.Helper()
	select {
	case a := <-s.sent:
		return a
	case <-time.After(waitTimeout):
		t.Fatalf("sink %s: no alert delivered within %s", s.name, waitTimeout)
		return Alert{}
	}
}

// newTestDispatcher returns a dispatcher with millisecond backoffs and a
// short drain.
func newTestDispatcher(sinks []SinkConfigured, log *slog.Logger) *Dispatcher {
	d := NewDispatcher(sinks, log)
	d.retry = retryPolicy{
		attempts:      5,
		initial:       time.Millisecond,
		max:           10 * time.Millisecond,
		maxRetryAfter: 2 * time.Second,
	}
	d.drainTimeout = 300 * time.Millisecond
	return d
}

// startDispatcher runs d until the test ends, and returns a function that
// stops it and reports how long Run took to return.
func startDispatcher(t *testing.T, d *Dispatcher) (stop func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(done)
	}()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			start := time.Now()
			cancel()
			<-done
			took = time.Since(start)
		})
		return took
	}
	t.Cleanup(func() { stop() })
	return stop
}

// webhookServer is a stand-in for Discord on 127.0.0.1. It records each
// request body and lets respond write the response.
type webhookServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func newWebhookServer(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, call int)) *webhookServer {
	t.Helper()
	s := &webhookServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		call := len(s.bodies)
		s.mu.Unlock()
		respond(w, r, call)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *webhookServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

func (s *webhookServer) body(i int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bodies[i]
}

// testToken stands for the webhook token, which must never show up in
// logs or errors.
const testToken = "tkn-7f3a9c1e5b"

// webhookURL is a Discord-shaped webhook URL on the test server.
func webhookURL(server *httptest.Server) string {
	return server.URL + "/api/webhooks/123456/" + testToken
}

func webhookConfig(rawURL string) SinkConfig {
	secret := config.NewSecret(rawURL, "env ALERT_WEBHOOK")
	return SinkConfig{
		Name:    "ops",
		Kind:    SinkDiscordWebhook,
		URL:     &secret,
		Timeout: 2 * time.Second,
	}
}

func newWebhook(t *testing.T, cfg SinkConfig) Sink {
	t.Helper()
	sink, err := NewDiscordWebhook(cfg, nil)
	if err != nil {
		t.Fatalf("NewDiscordWebhook: %v", err)
	}
	return sink
}

// failedAlert is a job failure at the given time.
func failedAlert(name string, at time.Time) Alert {
	return Alert{
		Key:      "job:" + name,
		Kind:     KindJob,
		Name:     name,
		Event:    EventFailed,
		Summary:  "exit status 3",
		Time:     at,
		RunID:    "42",
		ExitCode: 3,
	}
}
