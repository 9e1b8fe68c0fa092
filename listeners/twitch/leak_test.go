package twitch

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agent-runner/agent-runner/listeners"
)

// burst returns n PRIVMSG lines.
func burst(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = ":a!a@a.tmi.twitch.tv PRIVMSG #chan :line " + strings.Repeat("x", i%50)
	}
	return lines
}

// verifyNoLeak fails the test when a goroutine started during it is
// still running at its end. Register it first, so that it runs after the
// other cleanups have stopped the fake server and the listener.
func verifyNoLeak(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(ignore); err != nil {
			t.Error(err)
		}
	})
}

// Sessions that end while go-twitch-irc still has more lines to parse than
// its channel of 64 holds leave no goroutine behind: neither at RECONNECT
// followed by a burst, nor after a line that makes its parser panic, nor
// when the listener is stopped with a slow host.
func TestSessionEndWithBufferedLines(t *testing.T) {
	t.Run("RECONNECT then a burst", func(t *testing.T) {
		verifyNoLeak(t)
		server := newFakeServer(t)
		host := newFakeHost(t)
		host.deliver = func(listeners.Event) {}
		l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
		r := startRun(t, l, host)
		conn := server.accept(t)
		conn.welcome(t)
		host.waitReady(t)

		lines := append(burst(100), ":tmi.twitch.tv RECONNECT")
		// One write, whose end may meet a closed connection.
		_ = conn.write(strings.Join(append(lines, burst(300)...), "\r\n"))
		err := r.wait(t, waitTimeout)
		if err == nil || !strings.Contains(err.Error(), "RECONNECT") {
			t.Errorf("got %v, want an error about RECONNECT", err)
		}
	})
	t.Run("malformed line then a burst", func(t *testing.T) {
		verifyNoLeak(t)
		server := newFakeServer(t)
		host := newFakeHost(t)
		host.deliver = func(listeners.Event) {}
		l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
		r := startRun(t, l, host)
		conn := server.accept(t)
		conn.welcome(t)
		host.waitReady(t)

		lines := append([]string{"@badges=moderator;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :panic"}, burst(300)...)
		_ = conn.write(strings.Join(lines, "\r\n"))
		conn.close()
		if err := r.wait(t, waitTimeout); err == nil {
			t.Errorf("Run returned nil after the server closed the connection")
		}
	})
	t.Run("stop with a slow host", func(t *testing.T) {
		verifyNoLeak(t)
		server := newFakeServer(t)
		host := newFakeHost(t)
		host.deliver = func(listeners.Event) { time.Sleep(time.Millisecond) }
		l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
		r := startRun(t, l, host)
		conn := server.accept(t)
		conn.welcome(t)
		host.waitReady(t)

		conn.send(t, burst(500)...)
		r.cancel()
		if err := r.wait(t, waitTimeout); err == nil {
			t.Errorf("Run returned nil after cancel, want the context's error")
		}
	})
}
