package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/agent-runner/agent-runner/listeners"
)

// chatRecorder is a Twitch IRC server on 127.0.0.1 that welcomes each
// connection, echoes JOINs and records the PRIVMSG lines it receives.
type chatRecorder struct {
	listener net.Listener
	mu       sync.Mutex
	messages []string
}

func newChatRecorder(t *testing.T) *chatRecorder {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &chatRecorder{listener: listener}
	t.Cleanup(func() { listener.Close() })
	go r.accept()
	return r
}

func (r *chatRecorder) accept() {
	for {
		conn, err := r.listener.Accept()
		if err != nil {
			return
		}
		go r.serve(conn)
	}
}

func (r *chatRecorder) serve(conn net.Conn) {
	defer conn.Close()
	scanner := bufio.NewScanner(conn)
	for scanner.Scan() {
		line := strings.TrimSuffix(scanner.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "NICK "):
			fmt.Fprintf(conn, ":tmi.twitch.tv 001 %s :Welcome, GLHF!\r\n", strings.TrimPrefix(line, "NICK "))
		case strings.HasPrefix(line, "JOIN "):
			fmt.Fprintf(conn, ":bot!bot@bot.tmi.twitch.tv %s\r\n", line)
		case strings.HasPrefix(line, "PRIVMSG "):
			r.mu.Lock()
			r.messages = append(r.messages, line)
			r.mu.Unlock()
		}
	}
}

// listenerTOML returns the config of a Twitch listener named chat that
// connects to r and joins #chan.
func (r *chatRecorder) listenerTOML() string {
	return fmt.Sprintf(`[listeners.chat]
kind = "twitch"
server = %q
tls = false
username = "bot"
token = { file = "twitch-token" }
channels = ["chan"]
`, r.listener.Addr())
}

// writeTwitchToken writes the token file that listenerTOML names.
func writeTwitchToken(t *testing.T, p *project) {
	t.Helper()
	if err := os.WriteFile(p.path("twitch-token"), []byte("oauth:test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// received reports whether the server got line as a PRIVMSG.
func (r *chatRecorder) received(line string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.messages, line)
}

func TestSendAndPostTwitchOnlyChannel(t *testing.T) {
	server := newChatRecorder(t)
	p := newProject(t, server.listenerTOML()+`
[jobs.chat-post]
post = { via = "chat", text_command = ["sh", "-c", "echo hello chat"] }
every = "24h"
`)
	writeTwitchToken(t, p)
	if res := p.run("check"); res.code != 0 {
		t.Fatalf("check = %d %q, want 0", res.code, res.stderr)
	}
	p.startDaemon()
	waitFor(t, "chat to run", func() bool { return p.listener("chat").State == listeners.StateRunning })

	if res := p.run("send", "chat", "hi"); res.code != 0 {
		t.Errorf("send chat hi = %d %q, want 0", res.code, res.stderr)
	}
	waitFor(t, "the sent message in #chan", func() bool { return server.received("PRIVMSG #chan :hi") })
	if res := p.run("run-job", "chat-post"); res.code != 0 {
		t.Errorf("run-job chat-post = %d %q, want 0", res.code, res.stderr)
	}
	waitFor(t, "the posted message in #chan", func() bool { return server.received("PRIVMSG #chan :hello chat") })
}

func TestSendWithBrokenConfigFile(t *testing.T) {
	server := newChatRecorder(t)
	p := newProject(t, server.listenerTOML())
	writeTwitchToken(t, p)
	p.startDaemon()
	waitFor(t, "chat to run", func() bool { return p.listener("chat").State == listeners.StateRunning })

	// An edit that breaks the file leaves the daemon on its last valid
	// config, which still has the listener and its only channel.
	p.write(server.listenerTOML() + "no_such_key = 1\n")
	res := p.run("send", "chat", "hi")
	if res.code != 0 {
		t.Errorf("send chat hi = %d %q, want 0", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "sending through the running daemon") {
		t.Errorf("send chat hi: stderr %q, want a note that the daemon's config is used", res.stderr)
	}
	waitFor(t, "the sent message in #chan", func() bool { return server.received("PRIVMSG #chan :hi") })
}

func TestSendMissingTarget(t *testing.T) {
	p := newProject(t, `[listeners.chat]
kind = "twitch"
channels = ["one", "two"]

[listeners.bot]
kind = "discord"
token = { file = "discord-token" }
`)
	if err := os.WriteFile(p.path("discord-token"), []byte("test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		listener, want string
	}{
		{"chat", "send through chat: missing --to: the listener joins 2 channels, so pass --to CHANNEL"},
		{"twitch", "send through chat: missing --to: the listener joins 2 channels, so pass --to CHANNEL"},
		{"bot", "send through bot: missing --to: pass --to CHANNEL_ID"},
	}
	for _, tt := range tests {
		res := p.run("send", tt.listener, "hi")
		if res.code != exitUsage {
			t.Errorf("send %s hi: exit status %d, want %d", tt.listener, res.code, exitUsage)
		}
		if !strings.Contains(res.stderr, tt.want) {
			t.Errorf("send %s hi: stderr %q, want %q", tt.listener, res.stderr, tt.want)
		}
	}
}

func TestSendDuringShutdownReachesChat(t *testing.T) {
	server := newChatRecorder(t)
	p := newProject(t, "")
	script := fmt.Sprintf("trap '' TERM; touch started; while [ ! -e go ]; do sleep 0.05; done; %q send --config %q chat 'last words'", binary, p.config)
	p.write(server.listenerTOML() + fmt.Sprintf(`
[jobs.last-words]
command = ["sh", "-c", %q]
every = "24h"
`, script))
	writeTwitchToken(t, p)
	d := p.startDaemon()
	waitFor(t, "chat to run", func() bool { return p.listener("chat").State == listeners.StateRunning })

	runJob := p.command("run-job", "last-words")
	if err := runJob.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		runJob.Process.Kill()
		runJob.Wait()
	})
	p.waitForFile("the job to start", "started")

	// The job sends its message only after the daemon got SIGTERM.
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog("stopping running jobs")
	if err := os.WriteFile(p.path("go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message sent during shutdown", func() bool { return server.received("PRIVMSG #chan :last words") })
	d.stop()
}
