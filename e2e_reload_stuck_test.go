package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/listeners"
)

// stoppedTerminal is a pseudo-terminal whose output is stopped, as
// Ctrl-S stops it, so that a write to its path blocks until start runs,
// as a write to a hung disk does.
type stoppedTerminal struct {
	master, slave *os.File
	path          string
}

func newStoppedTerminal(t *testing.T) *stoppedTerminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("get the pseudo-terminal's number: %v", err)
	}
	path := fmt.Sprintf("/dev/pts/%d", n)
	slave, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	term := &stoppedTerminal{master: master, slave: slave, path: path}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TCXONC, unix.TCOOFF); err != nil {
		t.Fatalf("stop the pseudo-terminal's output: %v", err)
	}
	// Runs before the daemon's cleanup kills it, so that a daemon stuck
	// in a write can exit.
	t.Cleanup(term.start)
	return term
}

// start resumes the output and discards what reaches the master side.
func (term *stoppedTerminal) start() {
	_ = unix.IoctlSetInt(int(term.slave.Fd()), unix.TCXONC, unix.TCOON)
	go io.Copy(io.Discard, term.master)
}

// runWithin runs agent-runner with args and kills it after limit. It
// returns false when the command did not finish in time.
func (p *project) runWithin(limit time.Duration, args ...string) (result, bool) {
	p.t.Helper()
	cmd := p.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		return result{}, false
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}, true
}

// statusWithin returns the listener name's health from a status command
// that must finish within limit.
func (p *project) statusWithin(limit time.Duration, name string) (listeners.Health, bool) {
	p.t.Helper()
	res, ok := p.runWithin(limit, "status", "--json")
	if !ok {
		return listeners.Health{}, false
	}
	if res.code != 0 {
		p.t.Fatalf("status exit %d: %s", res.code, res.stderr)
	}
	var status control.Status
	if err := json.Unmarshal([]byte(res.stdout), &status); err != nil {
		p.t.Fatalf("decode status output %q: %v", res.stdout, err)
	}
	for _, h := range status.Listeners {
		if h.Name == name {
			return h, true
		}
	}
	p.t.Fatalf("listener %s not in status", name)
	return listeners.Health{}, false
}

// TestReloadDuringStuckDelivery reloads a Twitch listener in place
// while its delivery of an event waits on a log_to write that hangs.
// The reload and the status must still return, and the listener must go
// on with the new router once the write ends.
func TestReloadDuringStuckDelivery(t *testing.T) {
	server := newFakeTwitch(t, "node")
	term := newStoppedTerminal(t)
	listener := func(description string) string {
		return fmt.Sprintf(`[listeners.chat]
kind = "twitch"
description = %q
server = %q
tls = false
username = "bot"
token = { file = "twitch-token" }
channels = ["chan"]
log_to = %q
`, description, server.addr(), term.path)
	}
	p := newProject(t, listener("first"))
	writeTwitchToken(t, p)
	d := p.startDaemon()
	waitFor(t, "chat to handle an event", func() bool { return p.listener("chat").Handled > 0 })

	// The journal's flush, once a second, blocks on the stopped terminal
	// with the journal's lock held, and the next event's append waits
	// for that lock.
	stuck := p.listener("chat").Handled
	waitFor(t, "chat's delivery to get stuck", func() bool {
		time.Sleep(time.Second)
		handled := p.listener("chat").Handled
		unchanged := handled == stuck
		stuck = handled
		return unchanged
	})

	p.write(listener("second"))
	res, ok := p.runWithin(5*time.Second, "reload")
	if !ok {
		t.Fatal("reload did not finish within 5s of a stuck delivery")
	}
	if res.code != 0 {
		t.Fatalf("reload exit %d: %s", res.code, res.stderr)
	}
	if want := "1 updated in place (chat)"; !strings.Contains(res.stdout, want) {
		t.Errorf("reload output %q does not contain %q", res.stdout, want)
	}
	h, ok := p.statusWithin(5*time.Second, "chat")
	if !ok {
		t.Fatal("status did not finish within 5s of a stuck delivery")
	}
	if h.State != listeners.StateRunning {
		t.Errorf("chat state = %s during the stuck delivery, want %s", h.State, listeners.StateRunning)
	}

	term.start()
	waitFor(t, "chat to handle events again", func() bool { return p.listener("chat").Handled > stuck+1 })
	if got := len(server.snapshot()); got != 1 {
		t.Errorf("the server saw %d connections, want 1: an update in place keeps the connection", got)
	}
	d.stop()
	if log := d.log(); strings.Contains(log, "after the router closed") {
		t.Errorf("an event went to a closed router:\n%s", log)
	}
}
