package control

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// nobody is the uid and gid the rejected client runs as.
const nobody = 65534

// startOpenServer starts a Server whose socket any user may connect to,
// as if its mode were opened by hand, so that only the SO_PEERCRED check
// keeps other users out.
func startOpenServer(t *testing.T) (dir, socket string) {
	t.Helper()
	return startOpenServerLogging(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startOpenServerLogging is startOpenServer with the server's log.
func startOpenServerLogging(t *testing.T, log *slog.Logger) (dir, socket string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "control-access-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	socket = filepath.Join(dir, "control.sock")
	srv, err := Listen(socket, "", stubHandler{}, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve()
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	if err := os.Chmod(socket, 0o666); err != nil {
		t.Fatal(err)
	}
	return dir, socket
}

// copyTestBinary copies this test binary into dir, because uid 65534
// cannot reach the build folder that it runs from.
func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "client.test")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// runClientAsNobody runs this test binary as a control client under uid
// 65534 and returns what it printed.
func runClientAsNobody(t *testing.T, binary, socket, delay string) string {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = []string{clientModeEnv + "=" + socket, "CONTROL_TEST_CLIENT_DELAY=" + delay}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as uid %d: %v: %s", nobody, err, out)
	}
	return strings.TrimSpace(string(out))
}

// A user the daemon rejects must see the rejection, never a failed write
// of its request: the server waits for the request after the denial, and
// the client reads the denial when its write fails anyway.
func TestRejectedUserSeesDenial(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	dir, socket := startOpenServer(t)
	binary := copyTestBinary(t, dir)
	want := "user 65534 is not allowed to use the control socket"

	cases := []struct{ name, delay string }{
		{"request at once", ""},
		{"request after the server sent the denial", "200ms"},
	}
	for _, c := range cases {
		for i := range 5 {
			got := runClientAsNobody(t, binary, socket, c.delay)
			if !strings.Contains(got, want) {
				t.Errorf("%s, try %d: client printed %q, want the denial %q", c.name, i, got, want)
			}
		}
	}
}

// syncBuffer is a log destination that the server's connection handlers
// may write at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A client that connects over and over fills the log with one line, not
// one per connection.
func TestRejectedClientsLoggedOnce(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	var logs syncBuffer
	dir, socket := startOpenServerLogging(t, slog.New(slog.NewTextHandler(&logs, nil)))
	binary := copyTestBinary(t, dir)
	for range 5 {
		runClientAsNobody(t, binary, socket, "")
	}
	if n := strings.Count(logs.String(), "control client rejected"); n != 1 {
		t.Errorf("5 rejected clients logged %d lines, want 1:\n%s", n, logs.String())
	}
}

func TestLogLimitCountsSuppressed(t *testing.T) {
	var limit logLimit
	start := time.Now()
	if ok, suppressed := limit.allow(start); !ok || suppressed != 0 {
		t.Errorf("first line: allow = %v, %d, want true, 0", ok, suppressed)
	}
	for i := range 3 {
		if ok, _ := limit.allow(start.Add(time.Duration(i+1) * time.Second)); ok {
			t.Errorf("line %d within the interval was allowed", i+2)
		}
	}
	ok, suppressed := limit.allow(start.Add(logLimitInterval))
	if !ok || suppressed != 3 {
		t.Errorf("line after the interval: allow = %v, %d, want true, 3", ok, suppressed)
	}
}

// A client that the socket's file mode rejects must see how to get access.
func TestClosedSocketNamesFix(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	dir, socket := startOpenServer(t)
	if err := os.Chmod(socket, 0o600); err != nil {
		t.Fatal(err)
	}
	binary := copyTestBinary(t, dir)
	got := runClientAsNobody(t, binary, socket, "")
	for _, want := range []string{
		"permission denied",
		"sudo -u root agent-runner",
		"socket_group",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("client printed %q, want it to contain %q", got, want)
		}
	}
}
