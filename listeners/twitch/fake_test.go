package twitch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// waitTimeout bounds every wait in these tests for something that should
// happen almost at once.
const waitTimeout = 5 * time.Second

// fakeServer is a scripted Twitch IRC server on 127.0.0.1 that speaks the
// real wire format. Tests accept its connections one by one and drive
// them line by line.
type fakeServer struct {
	listener net.Listener
	conns    chan *fakeConn
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return startFakeServer(t, listener)
}

// newFakeTLSServer is a fakeServer behind TLS with cert.
func newFakeTLSServer(t *testing.T, cert tls.Certificate) *fakeServer {
	t.Helper()
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatalf("listen with TLS: %v", err)
	}
	return startFakeServer(t, listener)
}

func startFakeServer(t *testing.T, listener net.Listener) *fakeServer {
	s := &fakeServer{listener: listener, conns: make(chan *fakeConn, 16)}
	var accepted []*fakeConn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			c := newFakeConn(conn)
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
			s.conns <- c
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			c.close()
		}
	})
	return s
}

func (s *fakeServer) addr() string { return s.listener.Addr().String() }

// accept returns the next connection.
func (s *fakeServer) accept(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no connection to the fake server")
		return nil
	}
}

// expectNoConnection fails when a connection arrives within d.
func (s *fakeServer) expectNoConnection(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-s.conns:
		t.Errorf("got a second connection to the fake server, want none")
	case <-time.After(d):
	}
}

// fakeLine is a line the fake server received, without its CRLF.
type fakeLine struct {
	text string
	at   time.Time
}

// fakeConn is one client connection to the fake server. It echoes JOIN
// lines like Twitch does and replies to PING while autoPong is set.
type fakeConn struct {
	conn     net.Conn
	lines    chan fakeLine
	autoPong atomic.Bool
	nick     atomic.Value

	writeMu sync.Mutex
}

func newFakeConn(conn net.Conn) *fakeConn {
	c := &fakeConn{conn: conn, lines: make(chan fakeLine, 1000)}
	c.autoPong.Store(true)
	c.nick.Store("")
	go c.read()
	return c
}

func (c *fakeConn) read() {
	defer close(c.lines)
	scanner := bufio.NewScanner(c.conn)
	for scanner.Scan() {
		line := fakeLine{text: strings.TrimSuffix(scanner.Text(), "\r"), at: time.Now()}
		c.reply(line.text)
		c.lines <- line
	}
}

// reply sends what Twitch sends back for NICK, JOIN and PING.
func (c *fakeConn) reply(line string) {
	switch {
	case strings.HasPrefix(line, "NICK "):
		c.nick.Store(strings.TrimPrefix(line, "NICK "))
	case strings.HasPrefix(line, "JOIN "):
		nick := c.nick.Load().(string)
		for _, channel := range strings.Split(strings.TrimPrefix(line, "JOIN "), ",") {
			c.write(":" + nick + "!" + nick + "@" + nick + ".tmi.twitch.tv JOIN " + channel)
		}
	case strings.HasPrefix(line, "PING ") && c.autoPong.Load():
		c.write(":tmi.twitch.tv PONG tmi.twitch.tv " + strings.TrimPrefix(line, "PING "))
	}
}

func (c *fakeConn) write(line string) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_, err := c.conn.Write([]byte(line + "\r\n"))
	return err
}

// send writes lines to the client.
func (c *fakeConn) send(t *testing.T, lines ...string) {
	t.Helper()
	for _, line := range lines {
		if err := c.write(line); err != nil {
			t.Fatalf("write %q to the client: %v", line, err)
		}
	}
}

// expect returns the next line that starts with prefix, skipping others.
func (c *fakeConn) expect(t *testing.T, prefix string) fakeLine {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("connection closed before a line starting with %q", prefix)
			}
			if strings.HasPrefix(line.text, prefix) {
				return line
			}
		case <-deadline:
			t.Fatalf("no line starting with %q within %s", prefix, waitTimeout)
		}
	}
}

// welcome reads the login lines and sends what Twitch sends after a
// successful login. It returns the PASS line.
func (c *fakeConn) welcome(t *testing.T) string {
	t.Helper()
	c.expect(t, "CAP REQ ")
	pass := c.expect(t, "PASS ").text
	nick := strings.TrimPrefix(c.expect(t, "NICK ").text, "NICK ")
	c.send(t,
		":tmi.twitch.tv CAP * ACK :twitch.tv/tags twitch.tv/commands",
		":tmi.twitch.tv 001 "+nick+" :Welcome, GLHF!",
		":tmi.twitch.tv 002 "+nick+" :Your host is tmi.twitch.tv",
		":tmi.twitch.tv 003 "+nick+" :This server is rather new",
		":tmi.twitch.tv 004 "+nick+" :-",
		":tmi.twitch.tv 375 "+nick+" :-",
		":tmi.twitch.tv 372 "+nick+" :You are in a maze of twisty passages, all alike.",
		":tmi.twitch.tv 376 "+nick+" :>",
	)
	return pass
}

func (c *fakeConn) close() { c.conn.Close() }

// fakeHost records what a listener hands its host.
type fakeHost struct {
	logs    *lockedBuffer
	log     *slog.Logger
	ready   chan struct{}
	events  chan listeners.Event
	deliver func(listeners.Event)
}

func newFakeHost(t *testing.T) *fakeHost {
	logs := &lockedBuffer{}
	h := &fakeHost{
		logs:   logs,
		log:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ready:  make(chan struct{}, 16),
		events: make(chan listeners.Event, 100),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener log:\n%s", logs.String())
		}
	})
	return h
}

func (h *fakeHost) Ready() { h.ready <- struct{}{} }

// Reconnecting is unused: the Twitch listener ends Run on a failure.
func (h *fakeHost) Reconnecting(error) {}

func (h *fakeHost) Deliver(event listeners.Event) {
	if h.deliver != nil {
		h.deliver(event)
		return
	}
	h.events <- event
}

func (h *fakeHost) Log() *slog.Logger { return h.log }

func (h *fakeHost) State() listeners.KV { return nil }

func (h *fakeHost) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-h.ready:
	case <-time.After(waitTimeout):
		t.Fatal("host.Ready was not called")
	}
}

func (h *fakeHost) nextEvent(t *testing.T) listeners.Event {
	t.Helper()
	select {
	case event := <-h.events:
		return event
	case <-time.After(waitTimeout):
		t.Fatal("no event delivered")
		return listeners.Event{}
	}
}

// lockedBuffer is a bytes.Buffer that the listener's goroutines may log
// to at the same time.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig returns a twitch listener config for server that logs in as
// "bot" with token, or anonymously when token is "".
func testConfig(server, token string, channels ...string) *config.Listener {
	twitch := &config.Twitch{Server: server, TLS: false, Channels: channels}
	if token != "" {
		secret := config.NewSecret(token, "inline")
		twitch.Username = "bot"
		twitch.Token = &secret
	}
	return &config.Listener{Name: "chat", Kind: config.KindTwitch, Enabled: true, Twitch: twitch}
}

// newTestListener returns a listener for cfg with limits short enough
// for tests.
func newTestListener(t *testing.T, cfg *config.Listener) *Listener {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l.IdleTimeout = 10 * time.Second
	l.JoinWindow = 200 * time.Millisecond
	l.SendInterval = 10 * time.Millisecond
	return l
}

// run is a Run in progress.
type run struct {
	cancel context.CancelFunc
	done   chan error
}

// startRun calls l.Run in a goroutine. Cleanup cancels it and waits.
func startRun(t *testing.T, l *Listener, h listeners.Host) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- l.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitTimeout):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

// ended reports whether Run has returned.
func (r *run) ended() bool {
	select {
	case err := <-r.done:
		r.done <- err
		return true
	default:
		return false
	}
}

// wait returns Run's error, failing when Run takes longer than limit.
func (r *run) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(limit):
		t.Fatalf("Run did not return within %s", limit)
		return nil
	}
}
