package discord

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/internal/testnet"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/gorilla/websocket"
)

func TestRunConnectTimeoutNamesMissingStep(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	silentTCP := "ws://" + testnet.SilentServer(t) + "/gateway"
	cases := []struct {
		name, gatewayURL, missing string
	}{
		{"no upgrade response", silentTCP, "no websocket upgrade response"},
		{"no HELLO", f.muteGatewayURL(), "no HELLO"},
		{"no READY", f.silentGatewayURL(), "no READY or RESUMED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(f)
			cfg.Discord.GatewayURL = tc.gatewayURL
			l := newListener(t, cfg)
			l.timing = shortTiming
			host := newFakeHost(t)
			start := time.Now()
			_, done := startRun(t, l, host)

			want := shortTiming.open + shortTiming.abandon
			result := runEnds(t, done, start, want+2*time.Second)
			if result.err == nil {
				t.Fatal("Run error = nil, want a connect timeout")
			}
			if !strings.Contains(result.err.Error(), tc.missing) {
				t.Errorf("Run error = %v, want it to contain %q", result.err, tc.missing)
			}
			if !strings.Contains(result.err.Error(), tc.gatewayURL) {
				t.Errorf("Run error = %v, want the gateway URL %s in it", result.err, tc.gatewayURL)
			}
			if errors.Is(result.err, listeners.ErrAuth) {
				t.Errorf("Run error = %v, want one not wrapping ErrAuth", result.err)
			}
			select {
			case <-host.ready:
				t.Error("host.Ready was called without READY")
			default:
			}
		})
	}
}

func TestRunWrongGatewayPathQuotesStatus(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	cfg := testConfig(f)
	cfg.Discord.GatewayURL = "ws" + strings.TrimPrefix(f.server.URL, "http") + "/wrong-path"
	l := newListener(t, cfg)
	l.timing = shortTiming
	host := newFakeHost(t)
	start := time.Now()
	_, done := startRun(t, l, host)

	result := runEnds(t, done, start, shortTiming.open)
	if result.err == nil {
		t.Fatal("Run error = nil, want the rejected upgrade")
	}
	for _, want := range []string{`"HTTP/1.1 404 Not Found"`, cfg.Discord.GatewayURL, "gateway_url"} {
		if !strings.Contains(result.err.Error(), want) {
			t.Errorf("Run error = %v, want it to contain %s", result.err, want)
		}
	}
	if !errors.Is(result.err, websocket.ErrBadHandshake) {
		t.Errorf("Run error = %v, want one wrapping websocket.ErrBadHandshake", result.err)
	}
}

// The tests with a floodGateway do not run in parallel, because the
// client fills its send buffer only as fast as it can process op 1
// messages, and parallel tests would slow that down.
func TestWriteTimeoutEndsRun(t *testing.T) {
	f := newFakeDiscord(t)
	gateway := newFloodGateway(t)
	cfg := testConfig(f)
	cfg.Discord.GatewayURL = gateway.url
	l := newListener(t, cfg)
	l.timing = shortTiming
	l.timing.write = 300 * time.Millisecond
	host := newFakeHost(t)
	_, done := startRun(t, l, host)
	waitReady(t, host)

	start := time.Now()
	result := waitFloodedRun(t, done)
	if result.err == nil {
		t.Fatal("Run error = nil, want a write timeout")
	}
	t.Logf("Run returned after %v: %v", result.at.Sub(start), result.err)
	if !isWriteTimeout(result.err) {
		t.Errorf("Run error = %v, want a *writeTimeoutError in it", result.err)
	}
	if !strings.Contains(result.err.Error(), "timed out") {
		t.Errorf("Run error = %v, want it to say the write timed out", result.err)
	}
	if !strings.Contains(result.err.Error(), gateway.url) {
		t.Errorf("Run error = %v, want the gateway URL %s in it", result.err, gateway.url)
	}
	if errors.Is(result.err, listeners.ErrAuth) {
		t.Errorf("Run error = %v, want one not wrapping ErrAuth", result.err)
	}
	if n := gateway.connections.Load(); n != 1 {
		t.Errorf("gateway connections = %d, want 1, because a write timeout ends Run without a resume", n)
	}
}

func TestCancelWhileWriteBlocked(t *testing.T) {
	f := newFakeDiscord(t)
	gateway := newFloodGateway(t)
	cfg := testConfig(f)
	cfg.Discord.GatewayURL = gateway.url
	l := newListener(t, cfg)
	l.timing = shortTiming
	// Far above the test's waits, so that only the stop deadline can
	// end the blocked write.
	l.timing.write = time.Minute
	host := newFakeHost(t)
	cancel, done := startRun(t, l, host)
	waitReady(t, host)
	select {
	case <-gateway.stalled:
	case <-time.After(floodWait):
		t.Fatalf("the client did not stop reading within %v", floodWait)
	}

	select {
	case result := <-done:
		t.Fatalf("Run returned %v before cancel, want it running with a blocked write", result.err)
	case <-time.After(200 * time.Millisecond):
	}
	start := time.Now()
	cancel()
	// discordgo's Close waits for the blocked write, which stop ends
	// within stopWriteGrace, and then sleeps 1 s.
	result := runEnds(t, done, start, stopWriteGrace+3*time.Second)
	t.Logf("Run returned %v after cancel", result.at.Sub(start))
	if result.err != nil {
		t.Errorf("Run error = %v, want nil after cancel", result.err)
	}
}

func TestWriteTimeoutThroughProxy(t *testing.T) {
	f := newFakeDiscord(t)
	gateway := newFloodGateway(t)
	proxy := newConnectProxy(t)
	cfg := testConfig(f)
	cfg.Discord.GatewayURL = gateway.url
	l := newListener(t, cfg)
	l.timing = shortTiming
	l.timing.write = 300 * time.Millisecond
	l.proxy = http.ProxyURL(proxy.url)
	host := newFakeHost(t)
	_, done := startRun(t, l, host)
	waitReady(t, host)

	start := time.Now()
	result := waitFloodedRun(t, done)
	if result.err == nil {
		t.Fatal("Run error = nil, want a write timeout")
	}
	t.Logf("Run returned after %v: %v", result.at.Sub(start), result.err)
	if !isWriteTimeout(result.err) {
		t.Errorf("Run error = %v, want a *writeTimeoutError in it", result.err)
	}
	if !strings.Contains(result.err.Error(), gateway.url) {
		t.Errorf("Run error = %v, want the gateway URL %s in it", result.err, gateway.url)
	}
	if n := proxy.tunnels.Load(); n != 1 {
		t.Errorf("proxy tunnels = %d, want 1", n)
	}
}

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1 whose connections
// have a 4 KiB receive buffer, so that it buffers little of what the
// client sends to a gateway that stopped reading.
type connectProxy struct {
	url     *url.URL
	tunnels atomic.Int32
	mu      sync.Mutex
	conns   []net.Conn
	wg      sync.WaitGroup
}

func newConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	listener := smallReceiveBufferListener(t)
	p := &connectProxy{url: &url.URL{Scheme: "http", Host: listener.Addr().String()}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			p.track(conn)
			p.wg.Add(1)
			go p.serve(conn)
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		p.mu.Lock()
		for _, conn := range p.conns {
			conn.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) track(conn net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, conn)
}

// serve tunnels one CONNECT request to its target, which the tests
// always set to a server on 127.0.0.1.
func (p *connectProxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	reader := bufio.NewReader(client)
	req, err := http.ReadRequest(reader)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	target, err := smallSendBufferDialer().Dial("tcp", req.Host)
	if err != nil {
		fmt.Fprint(client, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	p.track(target)
	defer target.Close()
	p.tunnels.Add(1)
	fmt.Fprint(client, "HTTP/1.1 200 Connection established\r\n\r\n")
	copied := make(chan struct{}, 2)
	go func() {
		io.Copy(target, reader)
		copied <- struct{}{}
	}()
	go func() {
		io.Copy(client, target)
		copied <- struct{}{}
	}()
	<-copied
	client.Close()
	target.Close()
	<-copied
}

// floodWait bounds the time the client takes to fill its send buffer
// against a floodGateway. On a shared 2-core machine that took about 1 s,
// 3 to 4 s with the race detector, and once more than 15 s under load
// with the race detector.
const floodWait = 30 * time.Second

// waitFloodedRun waits for Run to return after the write timeout, which
// comes once the client has filled its send buffer.
func waitFloodedRun(t *testing.T, done <-chan runResult) runResult {
	t.Helper()
	select {
	case result := <-done:
		return result
	case <-time.After(floodWait):
		t.Fatalf("Run did not return within %v while the gateway read nothing", floodWait)
		return runResult{}
	}
}

// floodGateway is a gateway on 127.0.0.1 whose connections have a 4 KiB
// receive buffer. It completes HELLO, IDENTIFY and READY, and then reads
// nothing and sends op 1 HEARTBEAT requests as fast as the connection
// takes them. discordgo writes a heartbeat for each, so its send buffer
// fills and a write blocks.
type floodGateway struct {
	url string
	// stalled is closed once the client has read nothing for 500 ms.
	stalled     chan struct{}
	stallOnce   sync.Once
	connections atomic.Int32
	stop        chan struct{}
	handlers    sync.WaitGroup
}

func newFloodGateway(t *testing.T) *floodGateway {
	t.Helper()
	g := &floodGateway{stalled: make(chan struct{}), stop: make(chan struct{})}
	server := httptest.NewUnstartedServer(http.HandlerFunc(g.handle))
	server.Listener.Close()
	server.Listener = smallReceiveBufferListener(t)
	server.Start()
	g.url = "ws" + strings.TrimPrefix(server.URL, "http") + "/gateway"
	t.Cleanup(func() {
		close(g.stop)
		server.Close()
		g.handlers.Wait()
	})
	return g
}

func (g *floodGateway) handle(w http.ResponseWriter, r *http.Request) {
	g.handlers.Add(1)
	defer g.handlers.Done()
	g.connections.Add(1)
	var upgrader websocket.Upgrader
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()

	ws.SetReadDeadline(time.Now().Add(receiveTimeout))
	ws.WriteJSON(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": 45000}})
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var frame struct {
			Op int `json:"op"`
		}
		if json.Unmarshal(data, &frame) == nil && frame.Op == 2 {
			break
		}
	}

	// discordgo sends the sequence number in each heartbeat, so a large
	// one makes the heartbeats fill the client's send buffer sooner.
	ws.WriteJSON(map[string]any{"op": 0, "t": "READY", "s": int64(1) << 62, "d": map[string]any{
		"v":          9,
		"session_id": testSessionID,
		"user":       map[string]any{"id": testBotID, "username": "agent-bot", "bot": true},
		"guilds":     []any{},
	}})
	// The long heartbeat interval above keeps discordgo's own heartbeat,
	// and its check for a missing ACK, out of the test.
	g.flood(ws.NetConn())
}

// flood writes op 1 messages, as unmasked text frames, until the
// connection fails or the test ends. It closes stalled when the client
// has read nothing for 500 ms. A client that reads slowly still frees
// room for a write in that time, and a client whose only reading
// goroutine is blocked in a write frees none.
func (g *floodGateway) flood(conn net.Conn) {
	message := `{"op":1,"d":null}`
	frame := append([]byte{0x81, byte(len(message))}, message...)
	chunk := bytes.Repeat(frame, 256)
	pending := chunk
	progress := time.Now()
	for {
		select {
		case <-g.stop:
			return
		default:
		}
		conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := conn.Write(pending)
		if n > 0 {
			progress = time.Now()
		}
		pending = pending[n:]
		if len(pending) == 0 {
			pending = chunk
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if time.Since(progress) > 500*time.Millisecond {
			g.stallOnce.Do(func() { close(g.stalled) })
		}
	}
}

// smallSendBufferDialer dials with a 4 KiB send buffer.
func smallSendBufferDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
		return setSocketBuffer(raw, syscall.SO_SNDBUF)
	}}
}

// smallReceiveBufferListener listens on 127.0.0.1 with a 4 KiB receive
// buffer, which accepted connections inherit.
func smallReceiveBufferListener(t *testing.T) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, raw syscall.RawConn) error {
		return setSocketBuffer(raw, syscall.SO_RCVBUF)
	}}
	listener, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return listener
}

// setSocketBuffer sets the socket option option, SO_RCVBUF or SO_SNDBUF,
// to 4 KiB.
func setSocketBuffer(raw syscall.RawConn, option int) error {
	var sockErr error
	err := raw.Control(func(fd uintptr) {
		sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, option, 4096)
	})
	if err != nil {
		return err
	}
	return sockErr
}
