package discord

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

func TestRunDeliversFilteredMessages(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	l := newListener(t, testConfig(f, "200", "202"))
	startRun(t, l, host)
	waitReady(t, host)

	identify := receive(t, f.identifies, "IDENTIFY")
	var payload struct {
		Token   string `json:"token"`
		Intents int    `json:"intents"`
	}
	if err := json.Unmarshal(identify, &payload); err != nil {
		t.Fatalf("decode IDENTIFY: %v", err)
	}
	if payload.Token != "Bot "+testToken {
		t.Errorf("IDENTIFY token = %q, want %q", payload.Token, "Bot "+testToken)
	}
	wantIntents := 1<<9 | 1<<12 | 1<<15
	if payload.Intents != wantIntents {
		t.Errorf("IDENTIFY intents = %d, want %d", payload.Intents, wantIntents)
	}

	f.dispatch("MESSAGE_CREATE", messageData("1", "200", testBotID, "agent-bot", "from the bot"))
	f.dispatch("MESSAGE_CREATE", messageData("2", "201", "300", "alice", "other channel"))
	guildMessage := messageData("3", "200", "300", "alice", "hello")
	guildMessage["author"].(map[string]any)["global_name"] = "Alice A."
	f.dispatch("MESSAGE_CREATE", guildMessage)
	directReply := map[string]any{
		"id":                "4",
		"channel_id":        "202",
		"content":           "thanks",
		"timestamp":         "2026-01-02T03:04:06.000000+00:00",
		"type":              19,
		"author":            map[string]any{"id": "301", "username": "bob"},
		"message_reference": map[string]any{"message_id": "999", "channel_id": "202"},
	}
	f.dispatch("MESSAGE_CREATE", directReply)

	// Handlers run in gateway order, so the first event shows that the
	// bot's own message and the other channel's were dropped.
	first := receive(t, host.events, "guild message event")
	want := listeners.Event{
		Listener: "discord-test",
		Kind:     "discord",
		Type:     "message",
		ID:       "3",
		Time:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Channel:  "200",
		User:     "Alice A.",
		UserID:   "300",
		Text:     "hello",
		URI:      f.server.URL + "/channels/900/200/3",
		Fields:   map[string]string{"guild_id": "900"},
	}
	assertEvent(t, first, want)

	second := receive(t, host.events, "direct reply event")
	want = listeners.Event{
		Listener: "discord-test",
		Kind:     "discord",
		Type:     "message",
		ID:       "4",
		Time:     time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC),
		Channel:  "202",
		User:     "bob",
		UserID:   "301",
		Text:     "thanks",
		URI:      f.server.URL + "/channels/@me/202/4",
		Fields:   map[string]string{"reply_to_id": "999"},
	}
	assertEvent(t, second, want)

	select {
	case extra := <-host.events:
		t.Errorf("unexpected extra event %+v", extra)
	case <-time.After(100 * time.Millisecond):
	}
}

func assertEvent(t *testing.T, got, want listeners.Event) {
	t.Helper()
	if !got.Time.Equal(want.Time) {
		t.Errorf("event %s Time = %v, want %v", want.ID, got.Time, want.Time)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("event %s:\n got  %s\n want %s", want.ID, gotJSON, wantJSON)
	}
}

func TestRunSkipsMalformedMessages(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	_, done := startRun(t, newListener(t, testConfig(f)), host)
	waitReady(t, host)

	f.dispatch("MESSAGE_CREATE", nil)
	noAuthor := messageData("1", "200", "300", "alice", "no author")
	delete(noAuthor, "author")
	f.dispatch("MESSAGE_CREATE", noAuthor)
	f.dispatch("MESSAGE_CREATE", messageData("2", "200", "300", "alice", "valid"))

	event := receive(t, host.events, "valid message event")
	if event.ID != "2" {
		t.Errorf("event ID = %q, want 2", event.ID)
	}
	// A recovered panic would end Run after discordgo's 1 s close.
	select {
	case result := <-done:
		t.Errorf("Run returned %v, want it still running", result.err)
	case <-time.After(1500 * time.Millisecond):
	}
}

func TestRunLooksUpGatewayFromAPI(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	cfg := testConfig(f)
	cfg.Discord.GatewayURL = ""
	host := newFakeHost(t)
	startRun(t, newListener(t, cfg), host)
	waitReady(t, host)
	if got := f.lookupCount(); got != 1 {
		t.Errorf("gateway lookups = %d, want 1", got)
	}
}

func TestRunRejectedTokenOnLookup(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	cfg := testConfig(f)
	cfg.Discord.GatewayURL = ""
	wrong := config.NewSecret("wrong-token", "inline")
	cfg.Discord.Token = &wrong
	_, done := startRun(t, newListener(t, cfg), newFakeHost(t))

	result := receive(t, done, "Run to return")
	if !errors.Is(result.err, listeners.ErrAuth) {
		t.Errorf("Run error = %v, want one wrapping ErrAuth", result.err)
	}
}

func TestRunResumesAfterDrop(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	startRun(t, newListener(t, testConfig(f)), host)
	waitReady(t, host)
	receive(t, f.identifies, "IDENTIFY")

	f.dispatch("MESSAGE_CREATE", messageData("1", "200", "300", "alice", "before"))
	receive(t, host.events, "event before the drop")
	seqBeforeDrop := f.lastSeq()
	f.current().drop()

	resume := receive(t, f.resumes, "RESUME")
	if resume.SessionID != testSessionID {
		t.Errorf("RESUME session_id = %q, want %q", resume.SessionID, testSessionID)
	}
	if resume.Seq != seqBeforeDrop {
		t.Errorf("RESUME seq = %d, want %d", resume.Seq, seqBeforeDrop)
	}
	if resume.Token != "Bot "+testToken {
		t.Errorf("RESUME token = %q, want %q", resume.Token, "Bot "+testToken)
	}

	// Under load the resumed session may not be reading yet; a heartbeat
	// on the new connection shows that it is.
	select {
	case <-f.heartbeats:
	default:
	}
	receive(t, f.heartbeats, "a heartbeat on the resumed connection")
	f.dispatch("MESSAGE_CREATE", messageData("2", "200", "300", "alice", "after"))
	after := receive(t, host.events, "event after the resume")
	if after.ID != "2" {
		t.Errorf("event after resume ID = %q, want 2", after.ID)
	}
	select {
	case <-f.identifies:
		t.Error("listener sent a second IDENTIFY instead of resuming")
	default:
	}
}

// A lost connection shows as connecting again until the session is
// resumed. The supervisor once showed the listener as running and
// healthy through every failed resume, for up to about 3 minutes.
func TestRunResumeMarksReconnecting(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	startRun(t, newListener(t, testConfig(f)), host)
	waitReady(t, host)
	receive(t, f.identifies, "IDENTIFY")

	f.current().drop()

	cause := receive(t, host.reconnecting, "Reconnecting after the drop")
	if cause == nil || !strings.Contains(cause.Error(), "gateway connection") {
		t.Errorf("Reconnecting cause = %v, want the lost gateway connection", cause)
	}
	receive(t, f.resumes, "RESUME")
	waitReady(t, host)
}

func TestRunFatalCloseCodes(t *testing.T) {
	t.Parallel()
	for _, code := range []int{4004, 4010, 4011, 4012, 4013, 4014} {
		f := newFakeDiscord(t)
		f.setReject(code)
		start := time.Now()
		_, done := startRun(t, newListener(t, testConfig(f)), newFakeHost(t))

		result := runEnds(t, done, start, 2*time.Second)
		if !errors.Is(result.err, listeners.ErrAuth) {
			t.Errorf("close code %d: Run error = %v, want one wrapping ErrAuth", code, result.err)
		}
	}
}

func TestRunOtherCloseCodeIsNotAuth(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	f.setReject(4000)
	_, done := startRun(t, newListener(t, testConfig(f)), newFakeHost(t))

	result := receive(t, done, "Run to return")
	if result.err == nil {
		t.Fatal("Run returned nil, want an error")
	}
	if errors.Is(result.err, listeners.ErrAuth) {
		t.Errorf("Run error = %v, want one not wrapping ErrAuth", result.err)
	}
}

func TestRunAuthFailureMidSession(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	_, done := startRun(t, newListener(t, testConfig(f)), host)
	waitReady(t, host)

	f.setReject(4004)
	start := time.Now()
	f.current().close(4004)

	// discordgo's Close sleeps 1 s before the session can be resumed.
	result := runEnds(t, done, start, 3*time.Second)
	if !errors.Is(result.err, listeners.ErrAuth) {
		t.Errorf("Run error = %v, want one wrapping ErrAuth", result.err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	cancel, done := startRun(t, newListener(t, testConfig(f)), host)
	waitReady(t, host)
	// READY arrives inside discordgo's Open. Cancelling before Open
	// returns aborts the connection, which closes it without a frame.
	receive(t, f.heartbeats, "first heartbeat")

	start := time.Now()
	cancel()
	// discordgo's Close sleeps 1 s after sending the close frame.
	result := runEnds(t, done, start, 3*time.Second)
	if result.err != nil {
		t.Errorf("Run error = %v, want nil after cancel", result.err)
	}
	code := receive(t, f.closed, "gateway connection to close")
	if code != 1000 {
		t.Errorf("close code = %d, want 1000", code)
	}
}

func TestRunStopsOnCancelDuringHandshake(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	// A gateway that never sends READY leaves discordgo's Open reading
	// without a deadline.
	cfg := testConfig(f)
	cfg.Discord.GatewayURL = f.silentGatewayURL()
	cancel, done := startRun(t, newListener(t, cfg), newFakeHost(t))

	receive(t, f.identifies, "IDENTIFY")
	start := time.Now()
	cancel()
	result := runEnds(t, done, start, time.Second)
	if result.err != nil {
		t.Errorf("Run error = %v, want nil after cancel", result.err)
	}
}

func TestRunHandlerPanicEndsRun(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	host := newFakeHost(t)
	host.deliver = func(listeners.Event) { panic("deliver failed") }
	_, done := startRun(t, newListener(t, testConfig(f)), host)
	waitReady(t, host)

	f.dispatch("MESSAGE_CREATE", messageData("1", "200", "300", "alice", "boom"))
	result := receive(t, done, "Run to return")
	if result.err == nil {
		t.Fatal("Run returned nil, want the recovered panic")
	}
	if !strings.Contains(result.err.Error(), "deliver failed") {
		t.Errorf("Run error = %v, want it to contain the panic value", result.err)
	}
	if errors.Is(result.err, listeners.ErrAuth) {
		t.Errorf("Run error = %v, want one not wrapping ErrAuth", result.err)
	}
}

func TestSendPostsMessage(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	l := newListener(t, testConfig(f))

	if err := l.Send(context.Background(), "200", "hello"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	posts := f.recordedPosts()
	if len(posts) != 1 {
		t.Fatalf("posts = %d, want 1", len(posts))
	}
	if posts[0].channelID != "200" {
		t.Errorf("channel = %q, want 200", posts[0].channelID)
	}
	if posts[0].authorization != "Bot "+testToken {
		t.Errorf("Authorization = %q, want %q", posts[0].authorization, "Bot "+testToken)
	}
	if posts[0].body["content"] != "hello" {
		t.Errorf("content = %v, want hello", posts[0].body["content"])
	}
	if _, ok := posts[0].body["message_reference"]; ok {
		t.Errorf("body has message_reference, want none: %v", posts[0].body)
	}
}

func TestReplyPostsReference(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	l := newListener(t, testConfig(f))
	to := listeners.Event{
		Kind:    "discord",
		ID:      "3",
		Channel: "200",
		Fields:  map[string]string{"guild_id": "900"},
	}

	if err := l.Reply(context.Background(), to, "hi"); err != nil {
		t.Fatalf("Reply: %v", err)
	}
	posts := f.recordedPosts()
	if len(posts) != 1 {
		t.Fatalf("posts = %d, want 1", len(posts))
	}
	if posts[0].channelID != "200" {
		t.Errorf("channel = %q, want 200", posts[0].channelID)
	}
	if posts[0].body["content"] != "hi" {
		t.Errorf("content = %v, want hi", posts[0].body["content"])
	}
	reference, _ := posts[0].body["message_reference"].(map[string]any)
	wantReference := map[string]any{
		"message_id": "3", "channel_id": "200", "guild_id": "900", "fail_if_not_exists": false,
	}
	for key, want := range wantReference {
		if reference[key] != want {
			t.Errorf("message_reference.%s = %v, want %v", key, reference[key], want)
		}
	}
}

func TestReplyRejectsOtherKind(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	l := newListener(t, testConfig(f))
	to := listeners.Event{Kind: "twitch", ID: "3", Channel: "200"}

	if err := l.Reply(context.Background(), to, "hi"); err == nil {
		t.Error("Reply to a twitch event returned nil, want an error")
	}
	if posts := f.recordedPosts(); len(posts) != 0 {
		t.Errorf("posts = %d, want 0", len(posts))
	}
}

func TestSendRejectsInvalidTarget(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	l := newListener(t, testConfig(f))

	for _, target := range []string{"", "general", "200/../../users/@me", "200?x=1"} {
		if err := l.Send(context.Background(), target, "hi"); err == nil {
			t.Errorf("Send to %q returned nil, want an error", target)
		}
	}
	if posts := f.recordedPosts(); len(posts) != 0 {
		t.Errorf("posts = %d, want 0", len(posts))
	}
}

func TestSendWaitsOutRateLimit(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	f.setRateLimits(1, 0.2)
	l := newListener(t, testConfig(f))

	start := time.Now()
	if err := l.Send(context.Background(), "200", "hello"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
		t.Errorf("Send returned after %v, want at least the 200ms retry_after", elapsed)
	}
	if posts := f.recordedPosts(); len(posts) != 2 {
		t.Errorf("posts = %d, want 2", len(posts))
	}
}

func TestSendRateLimitHonoursContext(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	f.setRateLimits(1, 30)
	l := newListener(t, testConfig(f))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	start := time.Now()
	err := l.Send(ctx, "200", "hello")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send error = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Send returned after %v, want under 2s", elapsed)
	}
}

func TestSendGivesUpAfterRepeatedRateLimits(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	f.setRateLimits(100, 0.001)
	l := newListener(t, testConfig(f))

	err := l.Send(context.Background(), "200", "hello")
	var limited *discordgo.RateLimitError
	if !errors.As(err, &limited) {
		t.Errorf("Send error = %v, want a *discordgo.RateLimitError", err)
	}
	if posts := f.recordedPosts(); len(posts) != maxRateLimitWaits+1 {
		t.Errorf("posts = %d, want %d", len(posts), maxRateLimitWaits+1)
	}
}

func TestSendTruncatesLongText(t *testing.T) {
	t.Parallel()
	f := newFakeDiscord(t)
	l := newListener(t, testConfig(f))

	if err := l.Send(context.Background(), "200", strings.Repeat("é", 2500)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	posts := f.recordedPosts()
	if len(posts) != 1 {
		t.Fatalf("posts = %d, want 1", len(posts))
	}
	content, _ := posts[0].body["content"].(string)
	if got := utf8.RuneCountInString(content); got != maxMessageLength {
		t.Errorf("content length = %d characters, want %d", got, maxMessageLength)
	}
	if !utf8.ValidString(content) {
		t.Error("truncated content is not valid UTF-8")
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	t.Parallel()
	token := config.NewSecret(testToken, "inline")
	empty := config.NewSecret("", "inline")
	tests := []struct {
		name    string
		discord *config.Discord
	}{
		{"missing settings", nil},
		{"missing token", &config.Discord{}},
		{"empty token", &config.Discord{Token: &empty}},
		{"non-numeric channel", &config.Discord{Token: &token, Channels: []string{"general"}}},
		{"API URL without scheme", &config.Discord{Token: &token, APIURL: "discord.com/api/v10"}},
		{"API URL with query", &config.Discord{Token: &token, APIURL: "https://discord.com/api/v10/?x=1"}},
		{"gateway URL over http", &config.Discord{Token: &token, GatewayURL: "https://gateway.discord.gg"}},
		{"gateway URL with query", &config.Discord{Token: &token, GatewayURL: "wss://gateway.discord.gg/?v=10"}},
	}
	for _, test := range tests {
		cfg := &config.Listener{Name: "bot", Kind: config.KindDiscord, Discord: test.discord}
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New returned nil, want an error", test.name)
		}
	}
}

func TestNewDefaultsToDiscord(t *testing.T) {
	t.Parallel()
	token := config.NewSecret("Bot "+testToken, "inline")
	cfg := &config.Listener{Name: "bot", Kind: config.KindDiscord, Discord: &config.Discord{Token: &token}}

	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if l.apiURL != defaultAPIURL {
		t.Errorf("API URL = %q, want %q", l.apiURL, defaultAPIURL)
	}
	if l.linkBase != "https://discord.com" {
		t.Errorf("link base = %q, want https://discord.com", l.linkBase)
	}
	if l.token != "Bot "+testToken {
		t.Errorf("token = %q, want one Bot prefix", l.token)
	}
}
