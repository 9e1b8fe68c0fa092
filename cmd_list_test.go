package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
)

func TestPrintListenersEarlierError(t *testing.T) {
	now := time.Now()
	health := []listeners.Health{
		{Name: "up", Kind: "twitch", State: listeners.StateRunning, Since: now, LastError: "connection closed"},
		{Name: "dialing", Kind: "twitch", State: listeners.StateStarting, Since: now, LastError: "connection refused"},
		{Name: "down", Kind: "twitch", State: listeners.StateBackoff, Since: now, LastError: "connection reset"},
	}
	var out bytes.Buffer
	printListeners(&out, health, now)
	text := out.String()
	for _, want := range []string{
		"before the last restart: connection closed",
		"before the last restart: connection refused",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("list output %q, want %q", text, want)
		}
	}
	if strings.Contains(text, "before the last restart: connection reset") {
		t.Errorf("list output %q, want the backoff error without the prefix", text)
	}
}
