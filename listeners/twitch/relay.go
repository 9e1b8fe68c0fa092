package twitch

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// rejectLine is the line the relay sends to every connection after the
// first. go-twitch-irc's Connect returns ErrLoginAuthenticationFailed on
// it instead of dialing again.
const rejectLine = ":tmi.twitch.tv NOTICE * :Login unsuccessful\r\n"

// relay carries one connection between the go-twitch-irc client and the
// server, so that this package owns the socket. That lets it close the
// connection before the client has logged in, notice a stall, and keep
// the client from reconnecting by itself (see the package comment).
//
// It listens on 127.0.0.1 and takes the first connection as the
// client's. Its port stays bound until Connect returns, so that no other
// process can take it and receive a redial with the token.
type relay struct {
	listener net.Listener
	upstream net.Conn
	server   string
	idle     time.Duration
	// fail records why the connection ended and shuts the session down.
	fail func(error)

	mu       sync.Mutex
	local    net.Conn
	rejected []net.Conn
	closed   bool

	wg sync.WaitGroup
}

func newRelay(upstream net.Conn, server string, idle time.Duration, fail func(error)) (*relay, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1 for go-twitch-irc: %w", err)
	}
	return &relay{listener: listener, upstream: upstream, server: server, idle: idle, fail: fail}, nil
}

// addr returns the host:port the client dials.
func (r *relay) addr() string { return r.listener.Addr().String() }

// start accepts connections until finish.
func (r *relay) start() {
	r.wg.Add(1)
	go r.accept()
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		conn, err := r.listener.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		first := r.local == nil && !r.closed
		if first {
			r.local = conn
		} else {
			r.rejected = append(r.rejected, conn)
		}
		r.mu.Unlock()

		r.wg.Add(1)
		if first {
			r.wg.Add(1)
			go r.copyToClient(conn)
			go r.copyToServer(conn)
		} else {
			go r.reject(conn)
		}
	}
}

// copyToClient copies the server's data to the client and ends the
// connection when the server sends nothing for the idle timeout.
func (r *relay) copyToClient(local net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 4096)
	for {
		_ = r.upstream.SetReadDeadline(time.Now().Add(r.idle))
		n, err := r.upstream.Read(buf)
		if n > 0 {
			if _, werr := local.Write(buf[:n]); werr != nil {
				r.end(r.clientClosed())
				return
			}
		}
		if err != nil {
			r.end(r.readError(err))
			return
		}
	}
}

// copyToServer copies the client's lines to the server.
func (r *relay) copyToServer(local net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := local.Read(buf)
		if n > 0 {
			if _, werr := r.upstream.Write(buf[:n]); werr != nil {
				r.end(fmt.Errorf("write to %s: %w", r.server, werr))
				return
			}
		}
		if err != nil {
			r.end(r.clientClosed())
			return
		}
	}
}

func (r *relay) readError(err error) error {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("connection to %s stalled: no data for %s", r.server, r.idle)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("connection to %s closed by the server", r.server)
	}
	return fmt.Errorf("read from %s: %w", r.server, err)
}

// clientClosed is the error for a connection that go-twitch-irc closed,
// which it does after an unanswered PING or a failed write.
func (r *relay) clientClosed() error {
	return fmt.Errorf("connection to %s closed by go-twitch-irc", r.server)
}

// end reports why the connection ended, unless the relay was closed
// first, because then the error is only a consequence of that.
func (r *relay) end(err error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if !closed {
		r.fail(err)
	}
}

// reject sends a login failure to a connection after the first and
// keeps it open until the client reads that and hangs up, or for at most
// stopGrace.
func (r *relay) reject(conn net.Conn) {
	defer r.wg.Done()
	_ = conn.SetDeadline(time.Now().Add(stopGrace))
	_, _ = io.WriteString(conn, rejectLine)
	_, _ = io.Copy(io.Discard, conn)
	conn.Close()
}

// rejectedAny reports whether the relay rejected a connection.
func (r *relay) rejectedAny() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rejected) > 0
}

// close closes the connection in both directions but keeps the port.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	local := r.local
	r.mu.Unlock()
	r.upstream.Close()
	if local != nil {
		local.Close()
	}
}

// finish closes everything and waits for the relay's goroutines. Call it
// only after Connect returned.
func (r *relay) finish() {
	r.close()
	r.listener.Close()
	r.mu.Lock()
	rejected := r.rejected
	r.mu.Unlock()
	for _, conn := range rejected {
		conn.Close()
	}
	r.wg.Wait()
}
