package twitch

import (
	"reflect"
	"testing"
	"time"

	irc "github.com/gempir/go-twitch-irc/v4"
)

// chatLineSeeds are PRIVMSG lines in the shapes the fast path must read
// as go-twitch-irc does.
var chatLineSeeds = []string{
	privmsgLine,
	":a!a@a.tmi.twitch.tv PRIVMSG #chan :no tags",
	"@display-name=BigName;user-id=7 PRIVMSG #chan :no source, so the login comes from the display name",
	"@login=carol;display-name=;id=;msgid=m1 :x!y@z PRIVMSG #chan :login tag and msgid",
	"@time=2026-01-02T03:04:05.678Z :a!a@a PRIVMSG #chan :\x01ACTION waves\x01",
	"@tmi-sent-ts=1700000000123;tmi-sent-ts=bad;time=2026-01-02T03:04:05Z :a!b PRIVMSG #chan :two parts in the source",
	"@color=#FFF;color=;mod=1;mod=0 :a@b!c PRIVMSG #chan :repeated tags",
	"@badges=vip/1,subscriber/12 :a!b@c!d PRIVMSG #chan :four parts in the source",
	":a!a@a PRIVMSG #chan extra :three parameters",
	":a!a@a PRIVMSG #chan text",
	":a!a@a PRIVMSG #chan text ",
	":a!a@a PRIVMSG #chan  :two spaces",
	":a!a@a PRIVMSG #chan :",
	":a!a@a PRIVMSG :only text",
	":a!a@a PRIVMSG #chan :\x01ACTION\x01",
	":a!a@a PRIVMSG #chan :\x01ACTIONx\x01",
	"@first-msg=\u00a01\u00a0;subscriber=\u00a01 :a!a@a PRIVMSG #chan :spaces around values",
	":a!a@a PRIVMSG ",
	"@ :a!a@a PRIVMSG #c :empty tags",
	": PRIVMSG #c :empty source",
}

func TestFastPrivmsgEventMatchesParser(t *testing.T) {
	for _, line := range chatLineSeeds {
		if !safePrivmsg([]byte(line)) {
			t.Errorf("safePrivmsg rejects the seed %q", line)
			continue
		}
		checkFastEvent(t, line)
	}
}

func FuzzFastPrivmsgEvent(f *testing.F) {
	for _, seed := range chatLineSeeds {
		f.Add(seed)
	}
	for _, seed := range ircSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if safePrivmsg([]byte(line)) {
			checkFastEvent(t, line)
		}
	})
}

// checkFastEvent compares the fast path's event for line with the one
// made from go-twitch-irc's parse. A line without a time tag gets the
// time of receipt on both paths, so those two times are compared to the
// second.
func checkFastEvent(t *testing.T, line string) {
	t.Helper()
	message, ok := irc.ParseMessage(line).(*irc.PrivateMessage)
	if !ok {
		t.Fatalf("go-twitch-irc does not parse %q as a PRIVMSG", line)
	}
	want := privateMessageEvent("chat", *message)
	got := fastPrivmsgEvent("chat", []byte(line))
	if d := got.Time.Sub(want.Time); d > time.Second || d < -time.Second {
		t.Fatalf("fast path time %v, parser's %v, for %q", got.Time, want.Time, line)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("for %q the fast path made\n%#v\nand the parser's event is\n%#v", line, got, want)
	}
}
