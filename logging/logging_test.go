package logging

import (
	"bytes"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestJournalHandlerSendsFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.sock")
	server, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	h, err := NewJournalHandler(path, slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(h).With("job", "digest")
	log.Error("run failed", "run", "42", "err", "exit status 3\nsecond line")

	buf := make([]byte, 64<<10)
	server.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := server.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	for _, want := range []string{"MESSAGE=run failed\n", "PRIORITY=3\n", "JOB=digest\n", "RUN=42\n", "SYSLOG_IDENTIFIER=agent-runner\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("datagram lacks %q:\n%q", want, got)
		}
	}
	// A value with a newline uses the length-prefixed form.
	if !strings.Contains(got, "ERR\n") || !strings.Contains(got, "exit status 3\nsecond line\n") {
		t.Errorf("multi-line value not encoded as binary field:\n%q", got)
	}
}

func TestFieldName(t *testing.T) {
	tests := map[string]string{"job": "JOB", "exit_code": "EXIT_CODE", "retry-in": "RETRY_IN", "_x": "X", "9lives": "LIVES"}
	for in, want := range tests {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRateLimitHoldsBackRepeatedErrors(t *testing.T) {
	var out bytes.Buffer
	h := NewRateLimit(slog.NewTextHandler(&out, nil))
	clock := time.Unix(0, 0)
	h.state.now = func() time.Time { return clock }
	log := slog.New(h)
	for range 5 {
		log.Error("store write failed", "err", "disk full")
	}
	log.Error("store write failed", "err", "permission denied")
	log.Info("run finished")
	log.Info("run finished")
	clock = clock.Add(RepeatWindow + time.Second)
	log.Error("store write failed", "err", "disk full")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("logged %d lines, want 5:\n%s", len(lines), out.String())
	}
	if !strings.Contains(lines[4], "repeats=4") {
		t.Errorf("line after the window = %q, want the count of held-back repeats", lines[4])
	}
}

func TestRateLimitForgetsExpiredErrors(t *testing.T) {
	var out bytes.Buffer
	h := NewRateLimit(slog.NewTextHandler(&out, nil))
	clock := time.Unix(0, 0)
	h.state.now = func() time.Time { return clock }
	log := slog.New(h)
	log.Error("hook failed", "event", "repeated")
	log.Error("hook failed", "event", "repeated")
	for i := range 100 {
		log.Error("run failed", "run", i)
		clock = clock.Add(time.Second)
	}
	clock = clock.Add(RepeatWindow)
	log.Error("run failed", "run", "last")

	// The sweep keeps the record with a held-back repeat and the newest one.
	if got := len(h.state.seen); got != 2 {
		t.Errorf("rate limiter keeps %d records after the window, want 2", got)
	}
	log.Error("hook failed", "event", "repeated")
	if !strings.Contains(out.String(), "repeats=1") {
		t.Errorf("log after the sweep = %q, want the held-back repeat counted", out.String())
	}
}
