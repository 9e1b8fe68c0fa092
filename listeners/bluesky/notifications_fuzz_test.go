package bluesky

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// notificationPageSeeds are listNotifications bodies: a real page, and
// pages with odd times, duplicates, cursors and records.
func notificationPageSeeds() []string {
	good, _ := json.Marshal(listNotificationsOutput{Notifications: []notification{
		newNotification(12, "mention"), newNotification(11, "reply"), newNotification(10, "like"),
	}})
	return []string{
		string(good),
		`{"cursor":"next","notifications":[{"uri":"at://a/b/1","cid":"c","author":{"did":"did:plc:a","handle":"a.test"},"reason":"mention","record":{"$type":"app.bsky.feed.post","text":"hi","reply":{"root":{"uri":"at://r","cid":"rc"},"parent":{"uri":"at://p","cid":"pc"}}},"indexedAt":"2026-03-01T12:00:30Z"}]}`,
		`{"notifications":[{"uri":"at://a/b/1","reason":"mention","indexedAt":"2026-03-01T12:00:30+14:00"},{"uri":"at://a/b/1","reason":"mention","indexedAt":"2026-03-01T12:00:31Z"}]}`,
		`{"notifications":[{"uri":"","reason":"reply","indexedAt":"9999-12-31T23:59:59.999999999Z","record":null}]}`,
		`{"notifications":[{"uri":"x","reason":"mention","indexedAt":"not a time"},{"uri":"y","reason":"quote","indexedAt":"2026-03-01T12:00:00Z","record":{"$type":"app.bsky.feed.post","text":1}}]}`,
		`{"notifications":null}`,
		`{"cursor":"again","notifications":[]}`,
		`[]`, `null`, `{`, ``,
	}
}

// FuzzListNotifications serves one listNotifications body from a local
// XRPC server and runs two polls of a listener that already has a mark,
// which takes the body through the poller's decoding, paging, reason
// filter, mark and event conversion. Nothing may panic, the poller may
// read at most maxPages pages, no delivered event may be older than the
// mark, and the second poll of the same body must deliver nothing again.
func FuzzListNotifications(f *testing.F) {
	for _, seed := range notificationPageSeeds() {
		f.Add([]byte(seed))
	}
	var body atomic.Pointer[[]byte]
	var pages atomic.Int64
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch strings.TrimPrefix(r.URL.Path, "/xrpc/") {
		case methodCreateSession:
			json.NewEncoder(w).Encode(map[string]string{"accessJwt": "a", "refreshJwt": "r", "did": testDID, "handle": testHandle})
		case methodListNotifications:
			pages.Add(1)
			w.Write(*body.Load())
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	f.Cleanup(server.Close)

	f.Fuzz(func(t *testing.T, page []byte) {
		body.Store(&page)
		pages.Store(0)
		password := config.NewSecret(testPassword, "inline")
		l := newTestListener(t, &config.Listener{Name: "bsky", Kind: config.KindBluesky, Enabled: true,
			Bluesky: &config.Bluesky{Handle: testHandle, Password: &password, Host: server.URL, Poll: time.Second}})
		l.maxPages = 3
		kv := newFakeKV()
		if err := saveMark(kv, &mark{Time: baseTime}); err != nil {
			t.Fatal(err)
		}
		host := newFakeHost(t, kv)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		if err := pollStored(ctx, l, host); err != nil {
			return
		}
		if n := pages.Load(); n > int64(l.maxPages) {
			t.Fatalf("one poll read %d pages, want at most %d", n, l.maxPages)
		}
		first := host.delivered()
		for _, ev := range first {
			if ev.Time.Before(baseTime) {
				t.Fatalf("delivered %q indexed at %s, before the mark %s", ev.ID, ev.Time, baseTime)
			}
			if _, err := json.Marshal(ev); err != nil {
				t.Fatalf("encode event %q: %v", ev.ID, err)
			}
			// A hook's reply to the event starts here; it may reject
			// the event but must not panic.
			_, _ = replyTo(ev)
		}
		if err := pollStored(ctx, l, host); err != nil {
			t.Fatalf("second poll of the same body failed: %v", err)
		}
		if again := host.delivered(); len(again) != len(first) {
			t.Fatalf("the second poll of the same body delivered %d more events: %+v", len(again)-len(first), again[len(first):])
		}
	})
}

// FuzzPostText checks the text path of a hook's reply or a send. The
// facets that findSpans marks must lie inside the text, in order and
// without overlap, and cover exactly the link or mention they name. The
// server rejects or misplaces facets with wrong byte offsets.
func FuzzPostText(f *testing.F) {
	f.Add("see https://example.com/a_(b). and @alice.test!")
	f.Add("(https://x.y) @-bad @ok.test. https://")
	f.Add("é @bob.test https://ü.example/ä?q=1,")
	f.Add("\xff@a.b \x00https://a.b")
	f.Fuzz(func(t *testing.T, text string) {
		_ = validatePostText(text)
		end := 0
		for _, s := range findSpans(text) {
			if s.start < end || s.end <= s.start || s.end > len(text) {
				t.Fatalf("span [%d,%d) is out of order or out of range (text of %d bytes, previous end %d)", s.start, s.end, len(text), end)
			}
			covered := text[s.start:s.end]
			if s.link != "" && covered != s.link {
				t.Fatalf("link span covers %q, want %q", covered, s.link)
			}
			if s.handle != "" && !strings.EqualFold(covered, "@"+s.handle) {
				t.Fatalf("mention span covers %q, want @%s", covered, s.handle)
			}
			end = s.end
		}
	})
}
