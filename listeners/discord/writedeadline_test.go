package discord

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func TestDeadlineConnKeepsEarlierDeadline(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// requested is the deadline that the layer above sets, relative
		// to now, or 0 for none.
		requested time.Duration
		timeout   time.Duration
		// reported is whether the write timeout, and not the requested
		// deadline, ends the write.
		reported bool
	}{
		{"no requested deadline", 0, 50 * time.Millisecond, true},
		{"requested deadline later", time.Minute, 50 * time.Millisecond, true},
		{"requested deadline earlier", 50 * time.Millisecond, time.Minute, false},
		{"no write timeout", 50 * time.Millisecond, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, server := net.Pipe()
			defer server.Close()
			var ended []error
			conn := &deadlineConn{
				Conn: client, gateway: "ws://gateway.test", timeout: tc.timeout,
				ended: func(err error) { ended = append(ended, err) },
			}
			defer conn.Close()
			if tc.requested > 0 {
				conn.SetWriteDeadline(time.Now().Add(tc.requested))
			}

			start := time.Now()
			_, err := conn.Write([]byte("heartbeat"))
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("Write returned after %v, want within 5s", elapsed)
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("Write error = %v, want os.ErrDeadlineExceeded in it", err)
			}
			if got := isWriteTimeout(err); got != tc.reported {
				t.Errorf("Write error %v is a write timeout: %t, want %t", err, got, tc.reported)
			}
			if got := len(ended) == 1; got != tc.reported {
				t.Errorf("ended received %v, want one error: %t", ended, tc.reported)
			}
		})
	}
}

func TestDeadlineConnStopEndsBlockedWrite(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	defer server.Close()
	var ended []error
	conn := &deadlineConn{
		Conn: client, gateway: "ws://gateway.test", timeout: time.Minute,
		ended: func(err error) { ended = append(ended, err) },
	}
	defer conn.Close()
	time.AfterFunc(50*time.Millisecond, conn.stop)

	start := time.Now()
	_, err := conn.Write([]byte("heartbeat"))
	if elapsed := time.Since(start); elapsed > stopWriteGrace+2*time.Second {
		t.Errorf("Write returned after %v, want within %v of stop", elapsed, stopWriteGrace)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write error = %v, want os.ErrDeadlineExceeded in it", err)
	}
	if isWriteTimeout(err) {
		t.Errorf("Write error = %v, want no write timeout after stop", err)
	}
	if len(ended) != 0 {
		t.Errorf("ended received %v, want nothing after stop", ended)
	}
}
