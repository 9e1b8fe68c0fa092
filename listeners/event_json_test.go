package listeners

import (
	"encoding/json"
	"testing"
	"time"
)

var eventSeeds = []Event{
	{},
	{Listener: "chat", Kind: "twitch", Type: "message", ID: "b34c", Time: time.Date(2026, 12, 5, 9, 30, 0, 123000000, time.UTC),
		Channel: "chan", User: "Alice", UserID: "4242", Text: "hello <b>&</b> 😀",
		Fields: map[string]string{"login": "alice", "badges": "moderator/1", "color": "#1E90FF", "mod": "1"}},
	{Listener: "mentions", Kind: "bluesky", Type: "mention", ID: "at://did:plc:x/app.bsky.feed.post/1",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)), URI: "at://did:plc:x/app.bsky.feed.post/1",
		Text: "line\nbreak\u2028and \xff invalid", Fields: map[string]string{}},
	{Listener: "hook", Kind: "exec", Type: "line", Text: "\x00\x1f\"\\", Fields: map[string]string{"": "empty key", "z": "", "a\u2029": "x"}},
}

func TestAppendEventMatchesMarshal(t *testing.T) {
	for _, ev := range eventSeeds {
		checkEvent(t, ev)
	}
}

func TestAppendEventRejectsWhatMarshalRejects(t *testing.T) {
	ev := Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := json.Marshal(ev); err == nil {
		t.Fatal("json.Marshal accepted the year 10000; this test needs a time it rejects")
	}
	if got, err := appendEvent(nil, ev); err == nil {
		t.Errorf("appendEvent = %s, want the error json.Marshal returns", got)
	}
}

func FuzzAppendEventMatchesMarshal(f *testing.F) {
	f.Add("chat", "message", "hello", "login", "alice", "badges", "a/1", int64(1700000000123))
	f.Add("x", "", "\xff<&>\u2028", "", "", "k", "\x00", int64(0))
	f.Fuzz(func(t *testing.T, listener, typ, text, key1, value1, key2, value2 string, unixMilli int64) {
		ev := Event{Listener: listener, Kind: "twitch", Type: typ, ID: key1 + value2, Time: time.UnixMilli(unixMilli).UTC(),
			Channel: value1, User: key2, Text: text}
		if key1 != "" || key2 != "" {
			ev.Fields = map[string]string{key1: value1, key2: value2}
		}
		checkEvent(t, ev)
	})
}

func checkEvent(t *testing.T, ev Event) {
	t.Helper()
	want, wantErr := json.Marshal(ev)
	got, err := appendEvent([]byte("prefix"), ev)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("appendEvent(%+v) = %s, want json.Marshal's error %v", ev, got, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("appendEvent(%+v): %v", ev, err)
	}
	if string(got) != "prefix"+string(want) {
		t.Fatalf("appendEvent(%+v) =\n%s\nwant\n%s", ev, got[len("prefix"):], want)
	}
}
