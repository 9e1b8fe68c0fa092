package twitch

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/internal/testnet"
	"github.com/agent-runner/agent-runner/listeners"
)

// shortConnectTimeout replaces the 30 s default in the tests below.
const shortConnectTimeout = 300 * time.Millisecond

func TestConnectTimeoutWithoutWelcome(t *testing.T) {
	server := newFakeServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
	l.ConnectTimeout = shortConnectTimeout
	r := startRun(t, l, host)
	conn := server.accept(t)
	conn.expect(t, "NICK ")

	err := r.wait(t, 3*time.Second)
	if err == nil {
		t.Fatal("Run returned nil, want an error about the missing welcome")
	}
	if !strings.Contains(err.Error(), "no welcome") {
		t.Errorf("got %v, want it to say the welcome is missing", err)
	}
	if !strings.Contains(err.Error(), server.addr()) {
		t.Errorf("got %v, want the server address %s in it", err, server.addr())
	}
	if !strings.Contains(err.Error(), shortConnectTimeout.String()) {
		t.Errorf("got %v, want the connect timeout %s in it", err, shortConnectTimeout)
	}
	if errors.Is(err, listeners.ErrAuth) {
		t.Errorf("got %v, want an error that does not wrap ErrAuth", err)
	}
	select {
	case <-host.ready:
		t.Error("host.Ready was called without a welcome")
	default:
	}
	server.expectNoConnection(t, 300*time.Millisecond)
}

func TestConnectTimeoutServerNeverReads(t *testing.T) {
	addr := testnet.SilentServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(addr, "s3cret", "chan"))
	l.ConnectTimeout = shortConnectTimeout
	r := startRun(t, l, host)

	err := r.wait(t, 3*time.Second)
	if err == nil {
		t.Fatal("Run returned nil, want an error about the missing welcome")
	}
	if !strings.Contains(err.Error(), "no welcome") {
		t.Errorf("got %v, want it to say the welcome is missing", err)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("got %v, want the server address %s in it", err, addr)
	}
}

func TestConnectTimeoutWithoutTLSHandshake(t *testing.T) {
	addr := testnet.SilentServer(t)
	host := newFakeHost(t)
	cfg := testConfig(addr, "s3cret", "chan")
	cfg.Twitch.TLS = true
	l := newTestListener(t, cfg)
	l.ConnectTimeout = shortConnectTimeout
	r := startRun(t, l, host)

	err := r.wait(t, 3*time.Second)
	if err == nil {
		t.Fatal("Run returned nil, want an error about the missing TLS handshake")
	}
	if !strings.Contains(err.Error(), "TLS handshake") {
		t.Errorf("got %v, want it to name the TLS handshake", err)
	}
	if !strings.Contains(err.Error(), "no response within "+shortConnectTimeout.String()) {
		t.Errorf("got %v, want it to say no response came within %s", err, shortConnectTimeout)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("got %v, want the server address %s in it", err, addr)
	}
}

func TestWriteTimeoutEndsRun(t *testing.T) {
	addr, welcomed := unreadServer(t)
	host := newFakeHost(t)
	l := newTestListener(t, testConfig(addr, "s3cret", "chan"))
	l.WriteTimeout = shortConnectTimeout
	l.SendBurst = 100000
	r := startRun(t, l, host)
	host.waitReady(t)
	<-welcomed

	// The server reads nothing more, so these fill the socket buffers
	// and the relay's write to the server blocks. Sending stops once Run
	// returns, because go-twitch-irc leaves a goroutine behind for each
	// line its full write queue cannot take.
	text := strings.Repeat("x", maxTextRunes)
	sent := 0
	for sent < 20000 && !r.ended() {
		for range 100 {
			if err := l.Send(t.Context(), "chan", text); err != nil {
				break
			}
			sent++
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("sent %d messages of %d characters", sent, maxTextRunes)
	err := r.wait(t, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("got %v, want an error saying the write timed out", err)
	}
	if err != nil && !strings.Contains(err.Error(), addr) {
		t.Errorf("got %v, want the server address %s in it", err, addr)
	}
}

// unreadServer accepts one connection with a small receive buffer,
// reads the login, sends the welcome and from then on reads nothing but
// sends a line every 50 ms, so that the idle timeout never ends the
// connection. It returns its address and a channel closed once the
// welcome is sent.
func unreadServer(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, raw syscall.RawConn) error {
		var sockErr error
		err := raw.Control(func(fd uintptr) {
			sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return sockErr
	}}
	listener, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	sent := make(chan struct{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		reader := bufio.NewReader(conn)
		for {
			line, err := reader.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "NICK ") {
				break
			}
		}
		conn.Write([]byte(":tmi.twitch.tv 001 bot :Welcome, GLHF!\r\n"))
		close(sent)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				conn.SetWriteDeadline(time.Now().Add(time.Second))
				conn.Write([]byte(":tmi.twitch.tv 372 bot :still here\r\n"))
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		listener.Close()
		<-done
	})
	return listener.Addr().String(), sent
}
