package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs the daemon as systemd would with Type=notify and
// WatchdogSec=2s, and reads what it sends on NOTIFY_SOCKET.
func TestSystemdNotify(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	cmd := exec.Command(binary, "run", "--config", p.config)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "AGENT_RUNNER_CONFIG=", "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=2000000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()

	seen := map[string]string{}
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for seen["READY"] == "" || seen["WATCHDOG"] == "" || seen["STATUS"] == "" {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read notify socket: %v; got %v", err, seen)
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if key, value, ok := strings.Cut(line, "="); ok {
				seen[key] = value
			}
		}
	}
	if seen["READY"] != "1" || seen["WATCHDOG"] != "1" {
		t.Errorf("READY=%q WATCHDOG=%q, want 1 and 1", seen["READY"], seen["WATCHDOG"])
	}
	if !strings.Contains(seen["STATUS"], "1 job (") {
		t.Errorf("STATUS=%q, want the job summary", seen["STATUS"])
	}
}
