package discord

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
)

// shortTiming keeps the waits of a test's gateway session short.
var shortTiming = timing{
	open:              time.Second,
	write:             time.Second,
	abandon:           200 * time.Millisecond,
	firstResumeDelay:  10 * time.Millisecond,
	invalidSessionMin: 100 * time.Millisecond,
	invalidSessionMax: 150 * time.Millisecond,
}

func newShortListener(t *testing.T, f *fakeDiscord) *Listener {
	t.Helper()
	l := newListener(t, testConfig(f))
	l.timing = shortTiming
	return l
}

// startSession runs l against f and waits until the session is up and
// sends heartbeats.
func startSession(t *testing.T, f *fakeDiscord, l *Listener) (*fakeHost, context.CancelFunc, <-chan runResult) {
	t.Helper()
	host := newFakeHost(t)
	cancel, done := startRun(t, l, host)
	waitReady(t, host)
	receive(t, f.heartbeats, "first heartbeat")
	return host, cancel, done
}

func TestRunReconnectDuringIdentify(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	f.setReply(2, map[string]any{"op": 7, "d": nil})
	// The default open timeout shows that op 7 itself ends the attempt.
	start := time.Now()
	_, done := startRun(t, newListener(t, testConfig(f)), newFakeHost(t))

	result := runEnds(t, done, start, 3*time.Second)
	if !errors.Is(result.err, errReconnectInHandshake) {
		t.Errorf("Run error = %v, want one wrapping errReconnectInHandshake", result.err)
	}
	if errors.Is(result.err, listeners.ErrAuth) {
		t.Errorf("Run error = %v, want one not wrapping ErrAuth", result.err)
	}
}

func TestRunReconnectDuringResume(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	_, _, done := startSession(t, f, newShortListener(t, f))

	f.setReply(6, map[string]any{"op": 7, "d": nil})
	start := time.Now()
	f.current().drop()

	// discordgo's Close after the drop sleeps 1 s, and each failed
	// resume waits shortTiming's delay, doubled each time.
	result := runEnds(t, done, start, 4*time.Second)
	if !errors.Is(result.err, errReconnectInHandshake) {
		t.Errorf("Run error = %v, want one wrapping errReconnectInHandshake", result.err)
	}
	if _, resumes := f.counts(); resumes != resumeAttempts {
		t.Errorf("gateway got %d RESUMEs, want %d", resumes, resumeAttempts)
	}
}

func TestRunStopsDuringResumeRetries(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	l := newShortListener(t, f)
	l.timing.firstResumeDelay = time.Minute
	_, cancel, done := startSession(t, f, l)

	f.setReply(6, map[string]any{"op": 7, "d": nil})
	f.current().drop()
	receive(t, f.resumes, "RESUME")
	start := time.Now()
	cancel()

	result := runEnds(t, done, start, 2*time.Second)
	if result.err != nil {
		t.Errorf("Run error = %v, want nil after cancel", result.err)
	}
}

func TestRunInvalidSessionOnIdentify(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	f.setReply(2, map[string]any{"op": 9, "d": false})
	start := time.Now()
	_, done := startRun(t, newShortListener(t, f), newFakeHost(t))

	result := receive(t, done, "Run to return")
	var invalid *invalidSessionError
	if !errors.As(result.err, &invalid) {
		t.Fatalf("Run error = %v, want an *invalidSessionError", result.err)
	}
	if invalid.resumable {
		t.Error("invalid session is resumable, want not resumable for d=false")
	}
	if identifies, _ := f.counts(); identifies != 1 {
		t.Errorf("gateway got %d IDENTIFYs, want 1", identifies)
	}
	if elapsed := result.at.Sub(start); elapsed < shortTiming.invalidSessionMin {
		t.Errorf("Run returned after %v, want at least the invalid session wait %v",
			elapsed, shortTiming.invalidSessionMin)
	}
}

func TestRunInvalidSessionMidSession(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		resumable bool
	}{
		{"not resumable", false},
		{"resumable", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeDiscord(t)
			host, _, _ := startSession(t, f, newShortListener(t, f))
			receive(t, f.identifies, "IDENTIFY")

			start := time.Now()
			f.current().send(map[string]any{"op": 9, "d": tc.resumable})
			code := receive(t, f.closed, "first connection to close")
			if code != 1006 {
				t.Errorf("close code = %d, want 1006 for a closed socket", code)
			}

			if tc.resumable {
				receive(t, f.resumes, "RESUME")
			} else {
				receive(t, f.identifies, "second IDENTIFY")
				waitReady(t, host)
			}
			if elapsed := time.Since(start); elapsed < shortTiming.invalidSessionMin {
				t.Errorf("reconnected after %v, want at least %v", elapsed, shortTiming.invalidSessionMin)
			}
			identifies, resumes := f.counts()
			if tc.resumable && (identifies != 1 || resumes != 1) {
				t.Errorf("gateway got %d IDENTIFYs and %d RESUMEs, want 1 and 1", identifies, resumes)
			}
			if !tc.resumable && (identifies != 2 || resumes != 0) {
				t.Errorf("gateway got %d IDENTIFYs and %d RESUMEs, want 2 and 0", identifies, resumes)
			}
		})
	}
}

func TestRunWaitsForReady(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	// A heartbeat request in reply to IDENTIFY makes discordgo's Open
	// return without READY.
	f.setReply(2, map[string]any{"op": 1, "d": nil})
	host := newFakeHost(t)
	start := time.Now()
	_, done := startRun(t, newShortListener(t, f), host)

	result := runEnds(t, done, start, shortTiming.open+3*time.Second)
	if result.err == nil || !strings.Contains(result.err.Error(), "no READY or RESUMED") {
		t.Errorf("Run error = %v, want a timeout waiting for READY", result.err)
	}
	select {
	case <-host.ready:
		t.Error("host.Ready was called without READY")
	default:
	}
}

func TestRunHeartbeatAckBeforeReady(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	// discordgo's onEvent takes the session lock for op 11, which Open
	// holds while it reads the reply to IDENTIFY.
	f.setBefore(2, map[string]any{"op": 11})
	host := newFakeHost(t)
	startRun(t, newShortListener(t, f), host)

	waitReady(t, host)
	f.dispatch("MESSAGE_CREATE", messageData("1", "200", "300", "alice", "hello"))
	receive(t, host.events, "event after READY")
}

func TestRunAbandonsStuckOpen(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	// A READY handler that blocks keeps discordgo's Open from returning
	// after its connection closes, as op 7 during the handshake did.
	release := make(chan struct{})
	host.onReady = func() { <-release }
	start := time.Now()
	_, done := startRun(t, newShortListener(t, f), host)
	t.Cleanup(func() { close(release) })

	want := shortTiming.open + shortTiming.abandon
	result := runEnds(t, done, start, want+2*time.Second)
	if !errors.Is(result.err, errSessionAbandoned) {
		t.Errorf("Run error = %v, want one wrapping errSessionAbandoned", result.err)
	}
}

func TestRunEndsOnOversizeMessage(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	// Inflating the message blocks the reader, and so the heartbeat ACKs,
	// for longer than five 100 ms heartbeats on a busy machine.
	f.heartbeat = 60_000
	host, _, done := startSession(t, f, newShortListener(t, f))

	content := strings.Repeat("A", maxGatewayMessageBytes)
	f.current().sendBinary(zlibMessage(t, messageData("1", "200", "300", "alice", content)))

	result := receive(t, done, "Run to return")
	if !errors.Is(result.err, errMessageTooLarge) {
		t.Errorf("Run error = %v, want one wrapping errMessageTooLarge", result.err)
	}
	select {
	case ev := <-host.events:
		t.Errorf("oversize message delivered as an event of %d bytes", len(ev.Text))
	default:
	}
}

// zlibMessage returns a MESSAGE_CREATE dispatch with data, compressed as
// Discord compresses messages.
func zlibMessage(t *testing.T, data map[string]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := zlib.NewWriter(&buf)
	enc := map[string]any{"op": 0, "t": "MESSAGE_CREATE", "s": 2, "d": data}
	if err := json.NewEncoder(z).Encode(enc); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
