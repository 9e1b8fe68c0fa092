package control

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAliveMarkNamesDaemon(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "control.sock")
	if _, alive := aliveDaemon(socket); alive {
		t.Fatal("a daemon is alive before any marked it")
	}
	mark, err := MarkAlive(socket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := MarkAlive(socket); err == nil {
		t.Error("a second daemon could mark the same socket alive")
	}
	pid, alive := aliveDaemon(socket)
	if !alive || pid != os.Getpid() {
		t.Errorf("aliveDaemon = %d, %v, want this process %d", pid, alive, os.Getpid())
	}
	mark.Close()
	if _, alive := aliveDaemon(socket); alive {
		t.Error("a daemon is alive after its mark was closed")
	}
}

// A client that finds no socket file while the daemon is alive waits for
// the daemon to recreate it.
func TestDialWaitsForRecreatedSocket(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "control.sock")
	mark, err := MarkAlive(socket)
	if err != nil {
		t.Fatal(err)
	}
	defer mark.Close()
	listened := make(chan *Server, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv, err := Listen(socket, "", stubHandler{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Error(err)
		}
		listened <- srv
	}()
	conn, err := dial(socket)
	srv := <-listened
	if srv != nil {
		defer srv.Close()
	}
	if err != nil {
		t.Fatalf("dial while the socket is recreated: %v", err)
	}
	conn.Close()
}

func TestDialWithoutDaemonReportsNone(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "control.sock")
	if _, err := dial(socket); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("dial with no daemon = %v, want ErrNoDaemon", err)
	}
}
