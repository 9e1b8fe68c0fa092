// Package testnet provides network peers for tests of the listeners.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// SilentServer accepts TCP connections on 127.0.0.1 and never reads from
// them or writes to them, as a peer that hangs after the connection is
// set up does. It returns the server's address. When the test ends, the
// listener and every accepted connection are closed.
func SilentServer(t testing.TB) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
	)
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				conn.Close()
			} else {
				conns = append(conns, conn)
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		listener.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, conn := range conns {
			conn.Close()
		}
	})
	return listener.Addr().String()
}
