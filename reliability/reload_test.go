package reliability

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/reliability/harness"
)

// chatListenerConfig returns a Twitch listener for the chat server at
// addr that joins channel, replies to !hi with reply, runs a hook with four
// workers and logs events to events.jsonl.
func chatListenerConfig(addr, channel, reply string) string {
	return fmt.Sprintf(`
[listeners.chat]
kind = "twitch"
server = %q
tls = false
channels = [%q]
username = "bot"
token = { file = "twitch-token" }
on_event = ["sh", "-c", "cat > /dev/null"]
hook_concurrency = 4
log_to = "events.jsonl"

[listeners.chat.commands."!hi"]
reply = %q
cooldown = "0s"
`, addr, channel, reply)
}

// rewriteConfig replaces the config of p as newProject writes it.
func rewriteConfig(t *testing.T, p *harness.Project, extraRunner, body string) {
	t.Helper()
	config := runnerTable + extraRunner + "\nkill_grace = \"1s\"\n" + body
	if err := os.WriteFile(p.Config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
}

// reloadConfig runs agent-runner reload and returns its output.
func reloadConfig(t *testing.T, p *harness.Project) string {
	t.Helper()
	res := p.Run(15*time.Second, "reload")
	if res.Code != 0 {
		t.Fatalf("reload exit %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// TestReloadUpdatesChatListenerInPlace runs a Twitch listener against
// the scripted chat server. A reload that changes a command's reply
// updates it in place: the listener sends the new reply on the first
// connection, the event log goes on in the same file, and twenty more
// such reloads leave no goroutine behind. A reload that changes the
// channel restarts the listener on a second connection.
func TestReloadUpdatesChatListenerInPlace(t *testing.T) {
	irc, err := harness.StartIRCServer()
	if err != nil {
		t.Fatal(err)
	}
	defer irc.Close()
	port := freePort(t)
	runner := fmt.Sprintf("http = \"127.0.0.1:%d\"", port)
	p := newProject(t, runner, chatListenerConfig(irc.Addr(), "chan", "old reply"))
	if err := os.WriteFile(p.Path("twitch-token"), []byte("oauth:reload-test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p)
	waitFor(t, "the chat listener to join", 15*time.Second, irc.Joined)

	var sent atomic.Int64
	ask := func(channel, want string) {
		t.Helper()
		irc.SendAll(harness.PrivmsgLine(channel, sent.Add(1), "!hi"))
		waitFor(t, "the reply "+want, 15*time.Second, func() bool {
			return slices.Contains(irc.Received(), "PRIVMSG #"+channel+" :"+want)
		})
	}
	ask("chan", "old reply")

	rewriteConfig(t, p, runner, chatListenerConfig(irc.Addr(), "chan", "new reply"))
	out := reloadConfig(t, p)
	if want := "0 restarted, 1 updated in place (chat)"; !strings.Contains(out, want) {
		t.Errorf("reload output %q lacks %q", out, want)
	}
	ask("chan", "new reply")
	if n := irc.Connections(); n != 1 {
		t.Errorf("%d connections after a reload that changed a reply, want 1", n)
	}
	if !strings.Contains(d.Log(), "updated in place (chat)") {
		t.Error("the daemon's log does not name the listener updated in place")
	}
	waitFor(t, "both events in the event log", 5*time.Second, func() bool {
		return len(harness.Lines(p.Path("events.jsonl"))) == 2
	})

	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	before, err := harness.Goroutines(metrics)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		rewriteConfig(t, p, runner, chatListenerConfig(irc.Addr(), "chan", fmt.Sprintf("reply %d", i)))
		reloadConfig(t, p)
	}
	ask("chan", "reply 19")
	// Each reload leaves an old router with four hook workers, so a
	// leak adds at least 80 goroutines. The drains end in the
	// background, hence the wait.
	var after int
	settled := harness.WaitFor(10*time.Second, func() bool {
		after, err = harness.Goroutines(metrics)
		return err == nil && after <= before+5
	})
	if !settled {
		t.Errorf("%d goroutines after 20 in-place reloads, %d before (err %v)", after, before, err)
	}
	if n := irc.Connections(); n != 1 {
		t.Errorf("%d connections after 21 reloads that changed only a reply, want 1", n)
	}
	if h := listenerHealth(t, p, "chat"); h.Handled != 3 {
		t.Errorf("handled = %d, want 3: the count goes on across the reloads", h.Handled)
	}

	rewriteConfig(t, p, runner, chatListenerConfig(irc.Addr(), "other", "reply 19"))
	out = reloadConfig(t, p)
	if want := "1 restarted (chat), 0 updated in place"; !strings.Contains(out, want) {
		t.Errorf("reload output %q lacks %q", out, want)
	}
	waitFor(t, "a second connection", 15*time.Second, func() bool { return irc.Connections() == 2 })
	waitFor(t, "the join of the new channel", 15*time.Second, func() bool {
		return slices.Contains(irc.Received(), "JOIN #other")
	})
	waitFor(t, "the restarted listener to run", 15*time.Second, func() bool {
		return listenerHealth(t, p, "chat").State == listeners.StateRunning
	})
	ask("other", "reply 19")
	if err := d.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
}
