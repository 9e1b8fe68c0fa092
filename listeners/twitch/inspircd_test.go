package twitch

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	irc "github.com/gempir/go-twitch-irc/v4"
)

// inspircdConfig is a minimal InspIRCd 3 config. The server is named
// tmi.twitch.tv because go-twitch-irc only treats a line containing
// ":tmi.twitch.tv 001" as the welcome. m_cap, m_ircv3_ctctags
// (message-tags), m_ircv3_msgid and m_ircv3_servertime add the IRCv3
// tags the listener reads when Twitch's are missing.
//
// NOTE: tested with Debian bookworm's inspircd 3.15.0-1 only. InspIRCd 4
// changed parts of the config format and may need changes here.
const inspircdConfig = `<server name="tmi.twitch.tv" description="agent-runner test server" network="test">
<admin name="test" nick="test" email="test@example.invalid">
<bind address="127.0.0.1" port="%d" type="clients">
<connect allow="127.0.0.1" timeout="20" pingfreq="120" threshold="1000" commandrate="100000" fakelag="no"
         localmax="20" globalmax="20" maxchans="50" resolvehostnames="no" useident="no"
         recvq="65536" softsendq="65536" hardsendq="1048576">
<dns server="127.0.0.1" timeout="1">
<pid file="%s">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="%s">
<module name="cap">
<module name="ircv3_ctctags">
<module name="ircv3_msgid">
<module name="ircv3_servertime">
`

// TestInspIRCdChat runs the listener against a real IRC server: a raw
// client and the bot chat in one channel both ways.
func TestInspIRCdChat(t *testing.T) {
	addr := startInspIRCd(t)
	raw := dialRawClient(t, addr, "raw")
	raw.send(t, "JOIN #chan")
	raw.expect(t, " JOIN ")

	host := newFakeHost(t)
	cfg := testConfig(addr, "unused-password", "chan")
	l := newTestListener(t, cfg)
	// InspIRCd does not know Twitch's capabilities and registers a client
	// only after USER and, once CAP REQ was sent, CAP END. SetupCmd is
	// written before PASS and NICK.
	l.prepareClient = func(client *irc.Client) {
		client.Capabilities = nil
		client.SetupCmd = "CAP REQ :message-tags server-time\r\nCAP END\r\nUSER bot 0 * :agent-runner test"
	}
	startRun(t, l, host)
	host.waitReady(t)
	raw.expect(t, ":bot!")

	raw.send(t, "PRIVMSG #chan :hello bot")
	event := host.nextEvent(t)
	if event.Text != "hello bot" || event.Channel != "chan" || event.Type != "message" {
		t.Errorf("got event %+v, want message \"hello bot\" in chan", event)
	}
	if !strings.Contains(event.User, "raw") {
		t.Errorf("got user %q, want the raw client's name", event.User)
	}
	if event.ID == "" {
		t.Errorf("got an empty ID, want the msgid tag")
	}
	if since := time.Since(event.Time); since < -time.Minute || since > time.Minute {
		t.Errorf("got time %v, want about now from the time tag", event.Time)
	}

	if err := l.Send(context.Background(), "chan", "hello raw"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := raw.expect(t, ":bot!"); !strings.HasSuffix(got, " PRIVMSG #chan :hello raw") {
		t.Errorf("got %q, want the bot's PRIVMSG to #chan", got)
	}
}

// startInspIRCd runs inspircd in the foreground on a free port of
// 127.0.0.1 and returns its address. It skips the test when inspircd is
// not installed, unless CI=true.
func startInspIRCd(t *testing.T) string {
	t.Helper()
	path := findInspIRCd()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("inspircd is not installed; CI must install the Debian package inspircd")
		}
		t.Skip("inspircd is not installed; install it with apt-get install inspircd")
	}
	port := freePort(t)
	dir := t.TempDir()
	confPath := filepath.Join(dir, "inspircd.conf")
	logPath := filepath.Join(dir, "inspircd.log")
	conf := fmt.Sprintf(inspircdConfig, port, filepath.Join(dir, "inspircd.pid"), logPath)
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatalf("write inspircd config: %v", err)
	}

	args := []string{"--config", confPath, "--nofork"}
	if os.Geteuid() == 0 {
		args = append(args, "--runasroot")
	}
	cmd := exec.Command(path, args...)
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start inspircd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(waitTimeout):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logged, _ := os.ReadFile(logPath)
			t.Logf("inspircd output:\n%s\ninspircd log:\n%s", output.String(), logged)
		}
	})

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, addr, exited)
	return addr
}

func findInspIRCd() string {
	if path, err := exec.LookPath("inspircd"); err == nil {
		return path
	}
	// Debian installs it in /usr/sbin, which is not on every user's PATH.
	if _, err := os.Stat("/usr/sbin/inspircd"); err == nil {
		return "/usr/sbin/inspircd"
	}
	return ""
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatal("inspircd exited during startup")
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("inspircd did not listen on %s within 10s", addr)
}

// rawClient is a plain IRC client that replies to PING and hands every
// other line to the test.
type rawClient struct {
	conn    net.Conn
	lines   chan string
	writeMu sync.Mutex
}

// dialRawClient connects and registers as nick.
func dialRawClient(t *testing.T, addr, nick string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial inspircd: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawClient{conn: conn, lines: make(chan string, 1000)}
	go c.read()
	c.send(t, "NICK "+nick, "USER "+nick+" 0 * :raw test client")
	c.expect(t, " 001 ")
	return c
}

func (c *rawClient) read() {
	defer close(c.lines)
	scanner := bufio.NewScanner(c.conn)
	for scanner.Scan() {
		line := strings.TrimSuffix(scanner.Text(), "\r")
		if token, ok := strings.CutPrefix(line, "PING "); ok {
			c.write("PONG " + token)
			continue
		}
		c.lines <- line
	}
}

func (c *rawClient) write(line string) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_, err := c.conn.Write([]byte(line + "\r\n"))
	return err
}

func (c *rawClient) send(t *testing.T, lines ...string) {
	t.Helper()
	for _, line := range lines {
		if err := c.write(line); err != nil {
			t.Fatalf("write %q: %v", line, err)
		}
	}
}

// expect returns the next line that contains part, skipping others.
func (c *rawClient) expect(t *testing.T, part string) string {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("connection closed before a line containing %q", part)
			}
			if strings.Contains(line, part) {
				return line
			}
		case <-deadline:
			t.Fatalf("no line containing %q within %s", part, waitTimeout)
		}
	}
}
