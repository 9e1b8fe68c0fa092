package bluesky

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agent-runner/agent-runner/listeners"
)

// startedListener returns a listener that has polled once, so it has a
// session and a host.
func startedListener(t *testing.T, f *fakeServer) (*Listener, *fakeHost) {
	t.Helper()
	host := newFakeHost(t, newFakeKV())
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)
	return l, host
}

// onlyRecord returns the single post the server received.
func onlyRecord(t *testing.T, f *fakeServer) postRecord {
	t.Helper()
	records := f.postRecords()
	if len(records) != 1 {
		t.Fatalf("server received %d posts, want 1", len(records))
	}
	return records[0]
}

func TestSendFacetsUseByteOffsets(t *testing.T) {
	f := newFakeServer(t, false)
	l, _ := startedListener(t, f)

	text := "Grüße aus Köln 🇩🇪, @alice.test: lies https://example.com/a?b=1."
	if err := l.Send(context.Background(), "ignored", text); err != nil {
		t.Fatalf("Send: %v", err)
	}

	record := onlyRecord(t, f)
	if record.Text != text {
		t.Errorf("text = %q, want %q", record.Text, text)
	}
	if record.Reply != nil {
		t.Error("Send created a reply")
	}
	if len(record.Facets) != 2 {
		t.Fatalf("got %d facets, want 2: %+v", len(record.Facets), record.Facets)
	}

	mention := record.Facets[0]
	wantStart := strings.Index(text, "@alice.test")
	if mention.Index.ByteStart != wantStart || mention.Index.ByteEnd != wantStart+len("@alice.test") {
		t.Errorf("mention bytes = %d..%d, want %d..%d",
			mention.Index.ByteStart, mention.Index.ByteEnd, wantStart, wantStart+len("@alice.test"))
	}
	if runeStart := utf8.RuneCountInString(text[:wantStart]); runeStart == wantStart {
		t.Fatal("the text before the mention is ASCII, so the test cannot tell bytes from runes")
	}
	if got := mention.Features[0]; got.Type != facetMention || got.DID != "did:plc:alice" {
		t.Errorf("mention feature = %+v, want a mention of did:plc:alice", got)
	}

	link := record.Facets[1]
	wantLink := "https://example.com/a?b=1"
	wantStart = strings.Index(text, wantLink)
	if link.Index.ByteStart != wantStart || link.Index.ByteEnd != wantStart+len(wantLink) {
		t.Errorf("link bytes = %d..%d, want %d..%d",
			link.Index.ByteStart, link.Index.ByteEnd, wantStart, wantStart+len(wantLink))
	}
	if got := link.Features[0]; got.Type != facetLink || got.URI != wantLink {
		t.Errorf("link feature = %+v, want a link to %s", got, wantLink)
	}
	if record.CreatedAt == "" {
		t.Error("record has no createdAt")
	}
}

func TestSendUnresolvedMentionStaysText(t *testing.T) {
	f := newFakeServer(t, false)
	l, _ := startedListener(t, f)

	if err := l.Send(context.Background(), "", "hi @nobody.test"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if facets := onlyRecord(t, f).Facets; len(facets) != 0 {
		t.Errorf("got facets %+v, want none for an unknown handle", facets)
	}
}

func TestSendRejectsTextOverLimit(t *testing.T) {
	f := newFakeServer(t, false)
	l, _ := startedListener(t, f)

	// "e" plus a combining acute accent is one grapheme of two runes.
	accented := "e\u0301"
	err := l.Send(context.Background(), "", strings.Repeat(accented, 301))
	if err == nil || !strings.Contains(err.Error(), "301 graphemes") {
		t.Fatalf("Send of 301 graphemes returned %v, want a rejection naming the length", err)
	}
	if got := len(f.postRecords()); got != 0 {
		t.Fatalf("server received %d posts after a rejection, want 0", got)
	}

	if err := l.Send(context.Background(), "", strings.Repeat(accented, 300)); err != nil {
		t.Errorf("Send of 300 graphemes (600 runes): %v", err)
	}
}

func TestSendBeforeRunFails(t *testing.T) {
	f := newFakeServer(t, false)
	l := newTestListener(t, newTestConfig(f))

	err := l.Send(context.Background(), "", "hello")
	if !errors.Is(err, errNotStarted) {
		t.Errorf("Send error = %v, want errNotStarted", err)
	}
	if got := f.callCount(methodCreateSession); got != 0 {
		t.Errorf("createSession called %d times, want 0", got)
	}
}

func TestSendRefreshesExpiredToken(t *testing.T) {
	f := newFakeServer(t, false)
	l, _ := startedListener(t, f)
	f.expireAccess()

	if err := l.Send(context.Background(), "", "after expiry"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := onlyRecord(t, f).Text; got != "after expiry" {
		t.Errorf("text = %q, want %q", got, "after expiry")
	}
	if got := f.callCount("com.atproto.server.refreshSession"); got != 1 {
		t.Errorf("refreshSession called %d times, want 1", got)
	}
}

func TestReplyKeepsThreadRoot(t *testing.T) {
	f := newFakeServer(t, false)
	l, host := startedListener(t, f)

	reply := newNotification(1, "reply")
	reply.Record = []byte(`{"$type":"app.bsky.feed.post","text":"and?","createdAt":"2026-03-01T12:00:01Z",
		"reply":{"root":{"uri":"at://did:plc:bot/app.bsky.feed.post/root","cid":"bafyroot"},
		"parent":{"uri":"at://did:plc:bot/app.bsky.feed.post/own1","cid":"bafyown1"}}}`)
	f.add(reply)
	mustPoll(t, l, host)
	events := host.delivered()
	if len(events) != 1 {
		t.Fatalf("delivered %d events, want 1", len(events))
	}

	if err := l.Reply(context.Background(), events[0], "thanks"); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	got := onlyRecord(t, f).Reply
	if got == nil {
		t.Fatal("post has no reply reference")
	}
	if want := (strongRef{URI: "at://did:plc:bot/app.bsky.feed.post/root", CID: "bafyroot"}); got.Root != want {
		t.Errorf("root = %+v, want %+v", got.Root, want)
	}
	if want := (strongRef{URI: reply.URI, CID: reply.CID}); got.Parent != want {
		t.Errorf("parent = %+v, want %+v", got.Parent, want)
	}
}

func TestReplyToTopLevelMention(t *testing.T) {
	f := newFakeServer(t, false)
	l, host := startedListener(t, f)
	f.add(newNotification(1, "mention"))
	mustPoll(t, l, host)

	if err := l.Reply(context.Background(), host.delivered()[0], "hello"); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	got := onlyRecord(t, f).Reply
	want := strongRef{URI: postURI(1), CID: "bafy0001"}
	if got == nil || got.Root != want || got.Parent != want {
		t.Errorf("reply = %+v, want root and parent %+v", got, want)
	}
}

func TestReplyToFollowRejected(t *testing.T) {
	f := newFakeServer(t, false)
	l, host := startedListener(t, f)
	f.add(newNotification(1, "follow"))
	mustPoll(t, l, host)

	err := l.Reply(context.Background(), host.delivered()[0], "welcome")
	if err == nil || !strings.Contains(err.Error(), "not a post") {
		t.Errorf("Reply error = %v, want one saying the record is not a post", err)
	}
	if got := len(f.postRecords()); got != 0 {
		t.Errorf("server received %d posts, want 0", got)
	}
}

func TestReplyWithoutCIDRejected(t *testing.T) {
	l := newTestListener(t, newTestConfig(newFakeServer(t, false)))
	ev := listeners.Event{Kind: "bluesky", ID: postURI(1), URI: postURI(1)}

	err := l.Reply(context.Background(), ev, "hi")
	if err == nil || !strings.Contains(err.Error(), "missing record URI or cid") {
		t.Errorf("Reply error = %v, want a missing cid error", err)
	}
}

func TestCountGraphemes(t *testing.T) {
	tests := []struct {
		name string
		text string
		want int
	}{
		{"ascii", "abc", 3},
		{"combining accent", "e\u0301", 1},
		{"precomposed accent", "é", 1},
		{"family emoji with ZWJ", "👨\u200d👩\u200d👧", 1},
		{"two flags", "🇩🇪🇫🇷", 2},
		{"skin tone", "👍🏽", 1},
		{"keycap", "1\ufe0f\u20e3", 1},
		{"CR LF", "\r\n", 1},
		{"Hangul syllables", "한국어", 3},
		{"Hangul jamo", "\u1100\u1161\u11a8", 1},
		{"CJK", "日本語", 3},
		{"subdivision flag", "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := countGraphemes(tt.text); got != tt.want {
				t.Errorf("countGraphemes(%q) = %d, want %d", tt.text, got, tt.want)
			}
		})
	}
}

func TestFindSpans(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"link in parentheses", "see (https://example.com/x)", []string{"https://example.com/x"}},
		{"link with its own parentheses", "https://en.wikipedia.org/wiki/Go_(game)", []string{"https://en.wikipedia.org/wiki/Go_(game)"}},
		{"sentence end", "at @alice.test.", []string{"@alice.test"}},
		{"email is no mention", "mail bob@example.com", nil},
		{"handle without dot", "hi @alice", nil},
		{"mention inside link", "https://example.com/(@alice.test)", []string{"https://example.com/(@alice.test)"}},
		{"two mentions", "@a.test @b.test", []string{"@a.test", "@b.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range findSpans(tt.text) {
				got = append(got, tt.text[s.start:s.end])
			}
			if strings.Join(got, " | ") != strings.Join(tt.want, " | ") {
				t.Errorf("findSpans(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}
