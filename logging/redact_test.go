package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactingCoversMessageAndValues(t *testing.T) {
	var buf bytes.Buffer
	redact := func(s string) string { return strings.ReplaceAll(s, "hunter2", "[redacted]") }
	log := slog.New(NewRedacting(slog.NewTextHandler(&buf, nil), redact))
	log = log.With("token", "hunter2-as-attr")
	log.Info("login hunter2 failed",
		"text", "sent hunter2",
		"err", errors.New("server said hunter2"),
		slog.Group("reply", "body", "echo hunter2"),
		"count", 3)

	out := buf.String()
	if strings.Contains(out, "hunter2") {
		t.Errorf("the secret is in the log line: %s", out)
	}
	for _, want := range []string{"login [redacted] failed", "[redacted]-as-attr", "count=3", "reply.body"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %q", out, want)
		}
	}
}

func TestRedactingNilReturnsHandler(t *testing.T) {
	h := slog.NewTextHandler(&bytes.Buffer{}, nil)
	if got := NewRedacting(h, nil); got != slog.Handler(h) {
		t.Errorf("NewRedacting with no redact = %T, want the handler itself", got)
	}
}
