package control

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the uid and gid the rejected client runs as.
const nobody = 65534

// startOpenServer starts a Server whose socket any user may connect to,
// as if its mode were opened by hand, so that only the SO_PEERCRED check
// keeps other users out.
func startOpenServer(t *testing.T) (dir, socket string) {
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
	srv, err := Listen(socket, "", stubHandler{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
