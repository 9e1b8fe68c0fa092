package health

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// maxConnections caps the HTTP connections open at once. Without it, a
// client that keeps thousands of keep-alive connections open can use up
// the daemon's file descriptors, and then jobs fail to start because
// their pipes cannot be created. 256 matches the control socket's cap
// and leaves room for many scrapers, probes and status pages at once.
const maxConnections = 256

// overCapWriteTimeout bounds the write of the 503 to a connection past
// maxConnections. The response fits the empty send buffer of a new
// connection, so the write does not block in practice.
const overCapWriteTimeout = 100 * time.Millisecond

// overCapResponse is written to a connection past maxConnections before
// it is closed, so that a client can tell why.
const overCapResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\n" +
	"Content-Length: 58\r\n" +
	"\r\n" +
	"too many connections to agent-runner; try again in a bit\r\n"

// limitListener accepts at most cap(slots) connections at once and
// closes each connection past that at once, with a 503.
type limitListener struct {
	net.Listener
	slots chan struct{}
	log   *slog.Logger
	// logged and rejected rate-limit the log of rejected connections.
	// Only the goroutine that calls Accept touches them.
	logged   time.Time
	rejected int
}

func newLimitListener(listener net.Listener, max int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: listener, slots: make(chan struct{}, max), log: log}
}

// Accept returns the next connection that fits under the cap.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: conn, release: func() { <-l.slots }}, nil
		default:
			l.reject(conn)
		}
	}
}

// reject sends a 503 to a connection past the cap and closes it.
func (l *limitListener) reject(conn net.Conn) {
	_ = conn.SetWriteDeadline(time.Now().Add(overCapWriteTimeout))
	_, _ = conn.Write([]byte(overCapResponse))
	conn.Close()
	l.rejected++
	if now := time.Now(); now.Sub(l.logged) >= errorLogInterval {
		l.log.Warn("http connection limit reached; closing new connections",
			"max", cap(l.slots), "rejected", l.rejected)
		l.logged, l.rejected = now, 0
	}
}

// limitedConn gives its place under the cap back when it is closed.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
