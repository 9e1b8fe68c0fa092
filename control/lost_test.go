package control

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agent-runner/agent-runner/jobs"
)

// A daemon that dies after it started the run leaves run-job with an
// error that names the run and where its result will show.
func TestRunJobLostDaemonNamesRun(t *testing.T) {
	socket, done := replyOnce(t, `{"started":{"id":"7","job":"slow","trigger":"manual"}}`)
	_, err := RunJob(context.Background(), socket, "slow", false, func(jobs.Line) {})
	<-done
	if err == nil {
		t.Fatal("RunJob returned no error after the daemon closed the connection")
	}
	for _, want := range []string{"lost the daemon during run 7 of slow", "agent-runner runs slow"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("RunJob error %q lacks %q", err, want)
		}
	}
}

// A daemon of a build without reset replies with an unknown operation,
// and the error tells the user to restart it.
func TestResetOlderDaemonSaysRestart(t *testing.T) {
	socket, done := replyOnce(t, `{"error":{"code":"bad-request","message":"unknown operation \"reset\""}}`)
	_, err := Reset(socket, "tick", false, false)
	<-done
	if err == nil || !strings.Contains(err.Error(), "restart it") {
		t.Errorf("Reset error = %v, want it to say to restart the daemon", err)
	}
}

// replyOnce serves one connection on a new control socket: it reads one
// request line and writes reply, then closes the connection, as a daemon
// that dies or is of another build would. done closes once it has.
func replyOnce(t *testing.T, reply string) (socket string, done <-chan struct{}) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "control.sock")
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	served := make(chan struct{})
	go func() {
		defer close(served)
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
			return
		}
		_, _ = conn.Write([]byte(reply + "\n"))
	}()
	return socket, served
}
