package health

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLimitListenerRejectsPastCap checks that a connection past the cap
// gets a 503 and is closed, and that closing an accepted connection
// makes room for a new one.
func TestLimitListenerRejectsPastCap(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listener := newLimitListener(inner, 2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer listener.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- conn
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	nextAccepted := func() net.Conn {
		t.Helper()
		select {
		case conn := <-accepted:
			return conn
		case <-time.After(5 * time.Second):
			t.Fatal("no connection accepted within 5s")
			return nil
		}
	}

	dial()
	first := nextAccepted()
	dial()
	nextAccepted()

	over := dial()
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatalf("read the response of the connection past the cap: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status past the cap: got %d, want 503", resp.StatusCode)
	}
	select {
	case conn := <-accepted:
		t.Errorf("a connection past the cap was accepted: %v", conn.RemoteAddr())
	default:
	}

	first.Close()
	dial()
	nextAccepted()
}

// TestServerCapsKeepAliveConnections holds maxConnections keep-alive
// connections open after one request each, as a client that hoards
// connections does, and checks that the next one gets a 503.
func TestServerCapsKeepAliveConnections(t *testing.T) {
	source := &fakeSource{}
	base := startServer(t, source.get, nil)
	addr := strings.TrimPrefix(base, "http://")
	request := func() (*http.Response, net.Conn) {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, conn
	}
	for i := range maxConnections {
		if resp, _ := request(); resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: status %d, want 200", i+1, resp.StatusCode)
		}
	}
	if resp, _ := request(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("connection past the cap of %d: status %d, want 503", maxConnections, resp.StatusCode)
	}
}
