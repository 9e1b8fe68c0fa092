package twitch

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	irc "github.com/gempir/go-twitch-irc/v4"
)

// ircSeeds are server lines for the fuzz targets: real Twitch lines, and
// the malformed ones that make go-twitch-irc's parser panic (see the
// package comment).
var ircSeeds = []string{
	privmsgLine,
	"@badge-info=;badges=;color=;display-name=bob;emotes=25:0-4,6-10;id=1;mod=0;room-id=1;tmi-sent-ts=1700000000000;user-id=2 :bob!bob@bob.tmi.twitch.tv PRIVMSG #chan :Kappa Kappa",
	"@badge-info=;badges=subscriber/0;display-name=Carol;login=carol;msg-id=sub;msg-param-cumulative-months=3;system-msg=Carol\\ssubscribed;tmi-sent-ts=1700000000000;user-id=3 :tmi.twitch.tv USERNOTICE #chan :great stream",
	"@msg-id=raid;msg-param-viewerCount=10;login=dave;display-name=Dave :tmi.twitch.tv USERNOTICE #chan",
	":tmi.twitch.tv NOTICE * :Login authentication failed",
	":tmi.twitch.tv RECONNECT",
	"PING :tmi.twitch.tv",
	":tmi.twitch.tv 001 bot :Welcome, GLHF!",
	"@time=2026-01-02T03:04:05.678Z;msgid=abc :x!x@x PRIVMSG #chan :\x01ACTION waves\x01",
	"@badges=moderator;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hi",
	":a!a@a.tmi.twitch.tv PRIVMSG",
	"@emotes=25:5-2;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hello world",
	"@emotes=25:0-4;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan",
	"\x01\x02 garbage ;;; @@",
	"@;;;=;= :",
	"",
}

// parseLikeConnect parses line as go-twitch-irc's Connect does and
// recovers a parser panic as session.connect does, which turns it into
// the end of the session. It reports whether the parser panicked.
func parseLikeConnect(line string) (message irc.Message, panicked bool) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	return irc.ParseMessage(line), false
}

// FuzzParseLine sends one server line through go-twitch-irc's parser and
// this package's conversion to an event, as a PRIVMSG or USERNOTICE takes
// from the socket to the router. A parser panic is the documented,
// recovered case. Past the parser nothing may panic, and every event must
// encode to the JSON a hook reads, with the message text unchanged.
func FuzzParseLine(f *testing.F) {
	for _, seed := range ircSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		message, panicked := parseLikeConnect(line)
		if panicked {
			return
		}
		var text string
		var event []byte
		var err error
		switch m := message.(type) {
		case *irc.PrivateMessage:
			ev := privateMessageEvent("chat", *m)
			text = m.Message
			if ev.Text != text {
				t.Fatalf("event text %q, want the message %q", ev.Text, text)
			}
			event, err = json.Marshal(ev)
		case *irc.UserNoticeMessage:
			ev := userNoticeEvent("chat", *m)
			text = m.Message
			if ev.Fields["msg-id"] != m.Tags["msg-id"] {
				t.Fatalf("event msg-id %q, want the tag %q", ev.Fields["msg-id"], m.Tags["msg-id"])
			}
			event, err = json.Marshal(ev)
		default:
			return
		}
		if err != nil {
			t.Fatalf("encode the event of %q: %v", line, err)
		}
		var decoded struct{ Text string }
		if err := json.Unmarshal(event, &decoded); err != nil {
			t.Fatalf("decode the event JSON %s: %v", event, err)
		}
		if utf8.ValidString(text) && decoded.Text != text {
			t.Fatalf("text after JSON = %q, want %q", decoded.Text, text)
		}
	})
}

// FuzzCleanText checks the text path of a hook's reply or a send: what
// reaches Say is one IRC line of at most 500 characters, so hook output
// cannot start a second command on the connection.
func FuzzCleanText(f *testing.F) {
	f.Add("hello")
	f.Add("line one\r\nPRIVMSG #other :injected")
	f.Add("\x00\r\r\n\n")
	f.Add(strings.Repeat("é", 600))
	f.Add("\xff\xfe broken utf-8")
	f.Fuzz(func(t *testing.T, text string) {
		out := cleanText(text)
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("cleanText(%q) = %q keeps a line break or NUL", text, out)
		}
		if n := utf8.RuneCountInString(out); n > maxTextRunes {
			t.Fatalf("cleanText left %d characters, want at most %d", n, maxTextRunes)
		}
	})
}

// FuzzSessionLine sends the lines of one input from a fake server to a
// running listener after the welcome, then a normal PRIVMSG. The session
// must either deliver that message or end within a few seconds: a hostile
// line may end it, but must not leave it connected and deaf, or crash the
// process from a goroutine no recover covers.
func FuzzSessionLine(f *testing.F) {
	for _, seed := range ircSeeds {
		f.Add(seed)
	}
	f.Add(":tmi.twitch.tv 001 x :again\r\n" + privmsgLine)
	f.Add(strings.Repeat("@a=b;", 2000) + " :x PRIVMSG #chan :long tags")
	f.Fuzz(func(t *testing.T, input string) {
		lines := strings.FieldsFunc(input, func(r rune) bool { return r == '\n' || r == '\r' })
		if len(lines) > 20 {
			lines = lines[:20]
		}
		server := newFakeServer(t)
		host := newFakeHost(t)
		l := newTestListener(t, testConfig(server.addr(), "s3cret", "chan"))
		r := startRun(t, l, host)
		conn := server.accept(t)
		conn.welcome(t)
		host.waitReady(t)

		for _, line := range lines {
			if conn.write(line) != nil {
				break
			}
		}
		const sentinel = "sentinel after the fuzzed lines"
		_ = conn.write(strings.Replace(privmsgLine, ":hello there", ":"+sentinel, 1))
		deadline := time.After(4 * time.Second)
		for {
			select {
			case ev := <-host.events:
				if ev.Text == sentinel {
					return
				}
			case err := <-r.done:
				// The session ended, which is an allowed outcome. The
				// result goes back for startRun's cleanup.
				r.done <- err
				return
			case <-deadline:
				t.Fatalf("after %q the session neither delivered the next message nor ended within 4 s", input)
			}
		}
	})
}

// FuzzSafePrivmsg checks the relay's scan against go-twitch-irc's parser:
// a line that the scan passes without parsing must parse, without a
// panic, into a PRIVMSG, which never ends the session.
func FuzzSafePrivmsg(f *testing.F) {
	for _, seed := range ircSeeds {
		f.Add(seed)
	}
	for _, seed := range safePrivmsgCases {
		f.Add(seed.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if !safePrivmsg([]byte(line)) {
			return
		}
		message, panicked := parseLikeConnect(line)
		if panicked {
			t.Fatalf("safePrivmsg passed %q, which makes go-twitch-irc's parser panic", line)
		}
		if _, ok := message.(*irc.PrivateMessage); !ok {
			t.Fatalf("safePrivmsg passed %q, which parses to %T, not a PRIVMSG", line, message)
		}
	})
}

var safePrivmsgCases = []struct {
	line string
	safe bool
}{
	{privmsgLine, true},
	{"@badges=;emotes= :a!a@a.tmi.twitch.tv PRIVMSG #chan :hi", true},
	{":a!a@a.tmi.twitch.tv PRIVMSG #chan :no tags", true},
	{"PRIVMSG #chan", true},
	{"@badges=moderator/1,vip;id=1 :a!a@a PRIVMSG #chan :badge without a version", false},
	{"@badges=moderator/1;badges=vip :a!a@a PRIVMSG #chan :the last badges tag wins", false},
	{"@badges=vip;badges=moderator/1 :a!a@a PRIVMSG #chan :the last badges tag wins", true},
	{"@badges=\u00a0 :a!a@a PRIVMSG #chan :a badge of spaces trims to none", true},
	{"@emotes=25:0-4 :a!a@a PRIVMSG #chan :Kappa", false},
	{"@display-name=a\\sb :a!a@a PRIVMSG #chan :an escape in the tags", false},
	{":a!a@a.tmi.twitch.tv PRIVMSG", false},
	{"@badges= :a!a@a.tmi.twitch.tv PRIVMSG", false},
	{"@badges=  :a!a@a PRIVMSG #chan :an empty source token", false},
	{"@id=1", false},
	{":tmi.twitch.tv NOTICE * :Login authentication failed", false},
	{":tmi.twitch.tv RECONNECT", false},
	{"@id=1 :a!a@a USERNOTICE #chan :not a PRIVMSG", false},
}

func TestSafePrivmsgScan(t *testing.T) {
	for _, c := range safePrivmsgCases {
		if got := safePrivmsg([]byte(c.line)); got != c.safe {
			t.Errorf("safePrivmsg(%q) = %t, want %t", c.line, got, c.safe)
		}
	}
}
