package harness

import (
	"fmt"
	"testing"
)

func TestAppendPrivmsgFormat(t *testing.T) {
	for _, n := range []int64{1, 42, 123456789012, 1234567890123} {
		want := fmt.Sprintf("@badge-info=;badges=;color=#1E90FF;display-name=Alice;emotes=;first-msg=0;flags=;"+
			"id=00000000-0000-4000-8000-%012d;mod=0;room-id=1;subscriber=0;tmi-sent-ts=%d;turbo=0;user-id=4242;user-type= "+
			":alice!alice@alice.tmi.twitch.tv PRIVMSG #%s :%s", n, int64(1700000000123), "chan", "hello")
		if got := string(AppendPrivmsg(nil, "chan", n, 1700000000123, "", "hello")); got != want {
			t.Errorf("AppendPrivmsg(%d) = %q, want %q", n, got, want)
		}
	}
}
