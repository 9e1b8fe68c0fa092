package discord

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// stopWriteGrace bounds each write to the gateway once the Run's context
// has ended. It leaves time for discordgo's close frame, and keeps a
// write that is blocked on a gateway that stopped reading from holding
// up shutdown for the full write timeout.
const stopWriteGrace = time.Second

// writeTimeoutError is a write to the gateway that did not finish within
// the write timeout, which happens when the gateway stops reading while
// the connection stays open.
type writeTimeoutError struct {
	gateway string
	timeout time.Duration
	err     error
}

func (e *writeTimeoutError) Error() string {
	return fmt.Sprintf("write to gateway %s timed out after %s: the gateway is not reading", e.gateway, e.timeout)
}

func (e *writeTimeoutError) Unwrap() error { return e.err }

// deadlineConn bounds each write to the gateway connection by timeout.
// discordgo v0.28.1 writes heartbeats, and the heartbeat that replies to
// op 1, while it holds its websocket lock. Without a deadline, a write to
// a gateway that stopped reading blocks for good, and so do Close and
// every later write.
//
// gorilla/websocket v1.5.3 sets write deadlines of its own. It sets the
// handshake deadline while it dials, a 1 s deadline for the control
// frames it writes itself, such as the pong that replies to a ping, and
// no deadline before each data frame. Each Write applies the earliest of
// that deadline, the write timeout and, once stop has run, the stop
// deadline.
type deadlineConn struct {
	net.Conn
	gateway string
	// timeout bounds each write, unless it is 0.
	timeout time.Duration
	// ended receives the timeout error before Write returns it.
	ended func(error)
	// release unregisters stop from the Run's context.
	release func() bool

	mu sync.Mutex
	// requested is the write deadline that the layer above set, or zero.
	requested time.Time
	// stopBy is the latest deadline for any write once stop has run.
	stopBy time.Time
	// writing is set while a Write runs, and current is that write's
	// deadline.
	writing bool
	current time.Time
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requested = t
	return nil
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(t)
}

// Write writes p within the earliest deadline. When the write timeout
// ends it, Write reports a *writeTimeoutError through ended and closes
// the connection, so that discordgo's read fails too and it emits its
// disconnect event.
func (c *deadlineConn) Write(p []byte) (int, error) {
	ours, err := c.beginWrite()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	stopped := c.endWrite()
	if err == nil || stopped || !errors.Is(err, os.ErrDeadlineExceeded) || !ours {
		return n, err
	}
	timeout := &writeTimeoutError{gateway: c.gateway, timeout: c.timeout, err: err}
	if c.ended != nil {
		c.ended(timeout)
	}
	c.Conn.Close()
	return n, timeout
}

// beginWrite sets the deadline of the next write and reports whether it
// is the write timeout's.
func (c *deadlineConn) beginWrite() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var own time.Time
	if c.timeout > 0 {
		own = time.Now().Add(c.timeout)
	}
	deadline := earlier(earlier(own, c.requested), c.stopBy)
	ours := !own.IsZero() && deadline.Equal(own)
	if err := c.Conn.SetWriteDeadline(deadline); err != nil {
		return false, err
	}
	c.writing, c.current = true, deadline
	return ours, nil
}

// endWrite marks the write done and reports whether stop has run.
func (c *deadlineConn) endWrite() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writing = false
	return !c.stopBy.IsZero()
}

// stop limits every write, including one in progress, to stopWriteGrace
// from now. It runs when the Run's context ends.
func (c *deadlineConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopBy = time.Now().Add(stopWriteGrace)
	if c.writing {
		_ = c.Conn.SetWriteDeadline(earlier(c.current, c.stopBy))
	}
}

// earlier returns the earlier of two deadlines. A zero time means no
// deadline.
func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

func (c *deadlineConn) Close() error {
	if c.release != nil {
		c.release()
	}
	return c.Conn.Close()
}
