package bluesky

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunFirstStartSetsMarkOnly(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 3)...)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))

	run := startRun(t, l, host)
	waitFor(t, "Ready", func() bool { return host.readyCount() == 1 })
	// Let a few more polls run, so a replay would show.
	waitFor(t, "three more polls", func() bool {
		return f.callCount(methodListNotifications) >= 4
	})
	if err := run.stop(t); err != nil {
		t.Fatalf("Run returned %v, want nil after cancel", err)
	}

	if got := host.delivered(); len(got) != 0 {
		t.Errorf("delivered %d events on first start, want none", len(got))
	}
	m := storedMark(t, kv)
	if want := baseTime.Add(3 * time.Second); !m.Time.Equal(want) {
		t.Errorf("mark time = %v, want %v", m.Time, want)
	}
	if !slices.Equal(m.URIs, []string{postURI(3)}) {
		t.Errorf("mark URIs = %v, want [%s]", m.URIs, postURI(3))
	}
	if got := host.readyCount(); got != 1 {
		t.Errorf("Ready called %d times, want 1", got)
	}
}

func TestFirstStartWithoutNotifications(t *testing.T) {
	f := newFakeServer(t, false)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))

	mustPoll(t, l, host)
	if m := storedMark(t, kv); !m.Time.IsZero() {
		t.Errorf("mark time = %v, want zero", m.Time)
	}

	f.add(mentions(1, 2)...)
	mustPoll(t, l, host)
	want := []string{postURI(1), postURI(2)}
	if got := host.deliveredIDs(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

func TestPollDeliversOldestFirstOnce(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 2)...)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)

	f.add(mentions(3, 5)...)
	mustPoll(t, l, host)
	want := []string{postURI(3), postURI(4), postURI(5)}
	if got := host.deliveredIDs(); !slices.Equal(got, want) {
		t.Fatalf("after second poll delivered %v, want %v", got, want)
	}

	mustPoll(t, l, host)
	if got := host.deliveredIDs(); !slices.Equal(got, want) {
		t.Errorf("after third poll delivered %v, want still %v", got, want)
	}

	f.add(newNotification(6, "mention"))
	mustPoll(t, l, host)
	want = append(want, postURI(6))
	if got := host.deliveredIDs(); !slices.Equal(got, want) {
		t.Errorf("after fourth poll delivered %v, want %v", got, want)
	}
}

func TestRunRestartResumesWithoutLogin(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 2)...)
	kv := newFakeKV()
	cfg := newTestConfig(f)

	first := newFakeHost(t, kv)
	run := startRun(t, newTestListener(t, cfg), first)
	waitFor(t, "first Ready", func() bool { return first.readyCount() == 1 })
	f.add(mentions(3, 4)...)
	waitFor(t, "two events", func() bool { return len(first.delivered()) == 2 })
	if err := run.stop(t); err != nil {
		t.Fatalf("first Run returned %v", err)
	}

	// Notifications that arrive while the daemon is down.
	f.add(mentions(5, 6)...)

	second := newFakeHost(t, kv)
	run = startRun(t, newTestListener(t, cfg), second)
	waitFor(t, "two events after restart", func() bool { return len(second.delivered()) == 2 })
	polls := f.callCount(methodListNotifications)
	waitFor(t, "three more polls", func() bool {
		return f.callCount(methodListNotifications) >= polls+3
	})
	if err := run.stop(t); err != nil {
		t.Fatalf("second Run returned %v", err)
	}

	if got, want := first.deliveredIDs(), []string{postURI(3), postURI(4)}; !slices.Equal(got, want) {
		t.Errorf("first run delivered %v, want %v", got, want)
	}
	if got, want := second.deliveredIDs(), []string{postURI(5), postURI(6)}; !slices.Equal(got, want) {
		t.Errorf("second run delivered %v, want %v", got, want)
	}
	if got := f.callCount(methodCreateSession); got != 1 {
		t.Errorf("createSession called %d times, want 1", got)
	}
}

func TestPollEqualIndexedAtDeduplicatedByURI(t *testing.T) {
	f := newFakeServer(t, false)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))

	// a and b share the mark's time; c joins them later, d is newer.
	a := newNotification(10, "mention")
	b := newNotification(11, "mention")
	b.IndexedAt = a.IndexedAt
	f.add(newNotification(9, "mention"), a, b)
	mustPoll(t, l, host)
	m := storedMark(t, kv)
	if len(m.URIs) != 2 {
		t.Fatalf("mark URIs = %v, want both notifications at the newest time", m.URIs)
	}

	c := newNotification(12, "mention")
	c.IndexedAt = a.IndexedAt
	d := newNotification(13, "mention")
	f.add(c, d)
	mustPoll(t, l, host)
	want := []string{c.URI, d.URI}
	if got := host.deliveredIDs(); !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}

	e := newNotification(14, "mention")
	e.IndexedAt = d.IndexedAt
	f.add(e)
	mustPoll(t, l, host)
	want = append(want, e.URI)
	if got := host.deliveredIDs(); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if m := storedMark(t, kv); !slices.Equal(m.URIs, []string{d.URI, e.URI}) {
		t.Errorf("mark URIs = %v, want [%s %s]", m.URIs, d.URI, e.URI)
	}
}

func TestPollPagesBackToMark(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 3)...)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)

	f.add(mentions(4, 253)...)
	before := f.callCount(methodListNotifications)
	mustPoll(t, l, host)

	got := host.deliveredIDs()
	if len(got) != 250 {
		t.Fatalf("delivered %d events, want 250", len(got))
	}
	for i, id := range got {
		if want := postURI(i + 4); id != want {
			t.Fatalf("event %d is %s, want %s", i, id, want)
		}
	}
	// 250 new ones need three pages of 100, and the third reaches the mark.
	if pages := f.callCount(methodListNotifications) - before; pages != 3 {
		t.Errorf("poll read %d pages, want 3", pages)
	}
	if cursor := f.lastQuery().Get("cursor"); cursor == "" {
		t.Error("last page was requested without a cursor")
	}
}

func TestPollStopsAfterMaxPages(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 1)...)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	l.pageLimit = 10
	l.maxPages = 2
	mustPoll(t, l, host)

	f.add(mentions(2, 36)...)
	mustPoll(t, l, host)

	// Only the newest 20 fit in two pages of 10.
	got := host.deliveredIDs()
	if len(got) != 20 {
		t.Fatalf("delivered %d events, want 20", len(got))
	}
	if got[0] != postURI(17) || got[19] != postURI(36) {
		t.Errorf("delivered %s..%s, want %s..%s", got[0], got[19], postURI(17), postURI(36))
	}
	if !strings.Contains(host.logs.String(), "skipping older ones") {
		t.Error("no warning logged about skipped notifications")
	}

	mustPoll(t, l, host)
	if n := len(host.delivered()); n != 20 {
		t.Errorf("next poll delivered %d more events, want none", n-20)
	}
}

func TestPollFiltersReasons(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 1)...)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)

	reasons := []string{"like", "mention", "repost", "follow", "reply", "quote", "like"}
	for i, reason := range reasons {
		f.add(newNotification(i+2, reason))
	}
	mustPoll(t, l, host)

	var got []string
	for _, ev := range host.delivered() {
		got = append(got, ev.Type)
	}
	if want := []string{"mention", "follow", "reply", "quote"}; !slices.Equal(got, want) {
		t.Errorf("delivered reasons %v, want %v", got, want)
	}
	if got := f.lastQuery()["reasons"]; !slices.Equal(got, defaultReasons) {
		t.Errorf("reasons parameter = %v, want %v", got, defaultReasons)
	}
	// The newest notification is a filtered like; the mark still passes it.
	newest := newNotification(len(reasons)+1, "like")
	if m := storedMark(t, kv); !slices.Equal(m.URIs, []string{newest.URI}) {
		t.Errorf("mark URIs = %v, want [%s]", m.URIs, newest.URI)
	}
}

func TestPollConfiguredReasons(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 1)...)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	cfg := newTestConfig(f)
	cfg.Bluesky.Reasons = []string{"like"}
	l := newTestListener(t, cfg)
	mustPoll(t, l, host)

	f.add(newNotification(2, "mention"), newNotification(3, "like"))
	mustPoll(t, l, host)
	if got := host.delivered(); len(got) != 1 || got[0].Type != "like" {
		t.Errorf("delivered %v, want one like", host.deliveredIDs())
	}
}

func TestEventFieldsOfReply(t *testing.T) {
	f := newFakeServer(t, false)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)

	reply := newNotification(5, "reply")
	reply.ReasonSubject = "at://did:plc:bot/app.bsky.feed.post/own1"
	reply.Record = []byte(`{"$type":"app.bsky.feed.post","text":"good point ✓","createdAt":"2026-03-01T12:00:05Z",
		"reply":{"root":{"uri":"at://did:plc:bot/app.bsky.feed.post/root","cid":"bafyroot"},
		"parent":{"uri":"at://did:plc:bot/app.bsky.feed.post/own1","cid":"bafyown1"}}}`)
	f.add(reply)
	mustPoll(t, l, host)

	events := host.delivered()
	if len(events) != 1 {
		t.Fatalf("delivered %d events, want 1", len(events))
	}
	ev := events[0]
	checks := []struct{ name, got, want string }{
		{"Listener", ev.Listener, "bsky"},
		{"Kind", ev.Kind, "bluesky"},
		{"Type", ev.Type, "reply"},
		{"ID", ev.ID, reply.URI},
		{"URI", ev.URI, reply.URI},
		{"User", ev.User, "alice.test"},
		{"UserID", ev.UserID, "did:plc:alice"},
		{"Text", ev.Text, "good point ✓"},
		{"cid", ev.Fields["cid"], reply.CID},
		{"reason_subject", ev.Fields["reason_subject"], reply.ReasonSubject},
		{"root_uri", ev.Fields["root_uri"], "at://did:plc:bot/app.bsky.feed.post/root"},
		{"root_cid", ev.Fields["root_cid"], "bafyroot"},
		{"parent_uri", ev.Fields["parent_uri"], "at://did:plc:bot/app.bsky.feed.post/own1"},
		{"parent_cid", ev.Fields["parent_cid"], "bafyown1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if want := baseTime.Add(5 * time.Second); !ev.Time.Equal(want) {
		t.Errorf("Time = %v, want %v", ev.Time, want)
	}
}

func TestEventOfFollowHasNoText(t *testing.T) {
	f := newFakeServer(t, false)
	kv := newFakeKV()
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))
	mustPoll(t, l, host)

	f.add(newNotification(1, "follow"))
	mustPoll(t, l, host)
	events := host.delivered()
	if len(events) != 1 {
		t.Fatalf("delivered %d events, want 1", len(events))
	}
	if events[0].Text != "" {
		t.Errorf("Text = %q, want empty for a follow", events[0].Text)
	}
	if _, ok := events[0].Fields["root_uri"]; ok {
		t.Error("follow event has a root_uri field")
	}
}

func TestPollUnreadableMarkStartsOver(t *testing.T) {
	f := newFakeServer(t, false)
	f.add(mentions(1, 2)...)
	kv := newFakeKV()
	if err := kv.Put(markKey, []byte("not json")); err != nil {
		t.Fatal(err)
	}
	host := newFakeHost(t, kv)
	l := newTestListener(t, newTestConfig(f))

	mustPoll(t, l, host)
	if got := len(host.delivered()); got != 0 {
		t.Errorf("delivered %d events, want none after an unreadable mark", got)
	}
	if m := storedMark(t, kv); !m.Time.Equal(baseTime.Add(2 * time.Second)) {
		t.Errorf("mark time = %v, want the newest notification", m.Time)
	}
}
