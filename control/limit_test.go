package control

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A client past maxClients gets the busy error that the CLI shows, never
// a broken pipe or a closed connection, and a freed place serves again.
func TestClientPastLimitSeesBusy(t *testing.T) {
	var logs syncBuffer
	_, socket := startOpenServerLogging(t, slog.New(slog.NewTextHandler(&logs, nil)))
	idle := make([]net.Conn, 0, maxClients)
	t.Cleanup(func() {
		for _, conn := range idle {
			conn.Close()
		}
	})
	for range maxClients {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatalf("open idle connection %d: %v", len(idle)+1, err)
		}
		// Half a request line keeps the server's handler waiting.
		if _, err := io.WriteString(conn, `{"op":`); err != nil {
			t.Fatal(err)
		}
		idle = append(idle, conn)
	}

	for i := range 20 {
		_, err := GetStatus(socket)
		var msg *ErrorMessage
		if !errors.As(err, &msg) {
			t.Fatalf("status request %d past the limit: error %v, want an *ErrorMessage", i, err)
		}
		if msg.Code != CodeTooManyClients {
			t.Errorf("status request %d past the limit: code %q, want %q", i, msg.Code, CodeTooManyClients)
		}
		want := "the daemon is busy: " + strconv.Itoa(maxClients) + " control connections are open"
		if !strings.Contains(msg.Message, want) {
			t.Errorf("status request %d past the limit: message %q, want %q", i, msg.Message, want)
		}
	}
	if n := strings.Count(logs.String(), "control connection limit reached"); n != 1 {
		t.Errorf("20 clients past the limit logged %d lines, want 1:\n%s", n, logs.String())
	}

	idle[0].Close()
	idle = idle[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := GetStatus(socket)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status request after one idle client left: %v, want the status", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
