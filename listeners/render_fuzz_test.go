package listeners

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// placeholder is what Render treats as a name: a "{", then everything up
// to the first "}".
var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// renderReference is an independent statement of Render's contract: one
// pass, known names replaced with their value with line breaks made
// spaces, unknown names kept as written.
func renderReference(template string, fields map[string]string) string {
	return placeholder.ReplaceAllStringFunc(template, func(match string) string {
		value, ok := fields[match[1:len(match)-1]]
		if !ok {
			return match
		}
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(value)
	})
}

// FuzzRender checks Render against renderReference with values taken
// from chat, which may themselves hold placeholders, braces and line
// breaks. A value is never expanded again, and a template without line
// breaks yields a single line.
func FuzzRender(f *testing.F) {
	f.Add("{user}: up for {uptime}", "alice", "{args}{user}", "x\r\ny")
	f.Add("{user", "a}", "{", "}")
	f.Add("{{user}}{}{unknown}{text}", "\n", "{text}", "")
	f.Add("plain", "", "", "")
	f.Add("{a{user}b}", "u", "t", "args")
	f.Fuzz(func(t *testing.T, template, user, text, args string) {
		fields := map[string]string{"user": user, "text": text, "args": args, "channel": "#chan"}
		got := Render(template, fields)
		if want := renderReference(template, fields); got != want {
			t.Fatalf("Render(%q) = %q, want %q", template, got, want)
		}
		if !strings.ContainsAny(template, "\r\n") && strings.ContainsAny(got, "\r\n") {
			t.Fatalf("Render(%q) = %q has a line break the template does not", template, got)
		}
	})
}

// replyRecorder is a Replier that passes each reply to a channel.
type replyRecorder chan string

func (r replyRecorder) Reply(_ context.Context, _ Event, text string) error {
	r <- text
	return nil
}

// FuzzChatCommand delivers one chat message to a Router with a command
// whose reply template quotes the sender and the arguments, as a chat
// listener does. A message with the trigger gets exactly one reply of
// one line; Deliver never blocks or panics.
func FuzzChatCommand(f *testing.F) {
	f.Add("alice", "!echo hello there")
	f.Add("{args}", "!ECHO {user}\r\nPRIVMSG #other :injected")
	f.Add("bob", "  !echo")
	f.Add("", "!echoes not a trigger")
	f.Fuzz(func(t *testing.T, user, text string) {
		replies := make(replyRecorder, 4)
		cfg := &config.Listener{Name: "chat", Kind: config.KindTwitch, HookQueue: 1,
			Commands: []config.ChatCommand{{Trigger: "!echo", Reply: "{user} said: {args}"}}}
		router := NewRouter(cfg, nil, nil, replies, slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer router.Close()
		router.Deliver(Event{Type: "message", Channel: "chan", User: user, Text: text})

		word, _, _ := strings.Cut(strings.TrimSpace(text), " ")
		if !strings.EqualFold(word, "!echo") {
			return
		}
		select {
		case reply := <-replies:
			if strings.ContainsAny(reply, "\r\n") {
				t.Fatalf("reply %q to %q spans more than one line", reply, text)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no reply to %q within 2 s", text)
		}
	})
}
