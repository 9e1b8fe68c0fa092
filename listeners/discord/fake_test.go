package discord

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// Values the fake Discord expects or sends.
const (
	testToken      = "test-token"
	testBotID      = "100"
	testSessionID  = "fake-session"
	testHeartbeat  = 100 // milliseconds
	receiveTimeout = 5 * time.Second
)

// fakeDiscord is a scripted Discord API and gateway on 127.0.0.1. It
// speaks the gateway protocol that discordgo uses: HELLO, IDENTIFY and
// READY, heartbeats and their ACKs, dispatches with sequence numbers, and
// RESUME and RESUMED.
type fakeDiscord struct {
	t      *testing.T
	server *httptest.Server

	mu   sync.Mutex
	conn *fakeConn
	seq  int64
	// rejectCode, when set, is the close code sent in reply to IDENTIFY
	// and RESUME.
	rejectCode int
	// rateLimits is how many POSTs get a 429 before one succeeds.
	rateLimits int
	retryAfter float64 // seconds
	posts      []fakePost
	lookups    int
	// replies, when set for op 2 or 6, is the message sent in reply to
	// IDENTIFY or RESUME instead of READY or RESUMED.
	replies map[int]any
	// before, when set for op 2 or 6, is sent in reply to IDENTIFY or
	// RESUME ahead of the usual reply.
	before map[int]any
	// heartbeat, when set, is the heartbeat interval in milliseconds that
	// HELLO gives instead of testHeartbeat.
	heartbeat int
	// identifyCount and resumeCount count every IDENTIFY and RESUME,
	// including those that the full channels below do not take.
	identifyCount, resumeCount int

	identifies chan json.RawMessage
	resumes    chan fakeResume
	// heartbeats receives a value for each heartbeat while one is not
	// yet taken, which shows that Open has returned and started the
	// heartbeat goroutine.
	heartbeats chan struct{}
	// closed receives the close code that the client sent when a gateway
	// connection ends, or 1006 when it ended without a close frame.
	closed chan int
}

// fakeConn is one gateway connection, with writes serialised.
type fakeConn struct {
	ws *websocket.Conn
	mu sync.Mutex
}

type fakePost struct {
	channelID     string
	authorization string
	body          map[string]any
}

type fakeResume struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

func newFakeDiscord(t *testing.T) *fakeDiscord {
	f := &fakeDiscord{
		t:          t,
		identifies: make(chan json.RawMessage, 10),
		resumes:    make(chan fakeResume, 10),
		heartbeats: make(chan struct{}, 1),
		closed:     make(chan int, 10),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v10/gateway/bot", f.handleGatewayLookup)
	mux.HandleFunc("GET /api/v10/gateway", f.handleGatewayLookup)
	mux.HandleFunc("POST /api/v10/channels/{id}/messages", f.handlePost)
	mux.HandleFunc("/gateway/", f.handleGateway)
	mux.HandleFunc("/silent/", f.handleSilent)
	mux.HandleFunc("/mute/", f.handleMute)
	f.server = httptest.NewServer(mux)
	t.Cleanup(f.server.Close)
	return f
}

func (f *fakeDiscord) apiURL() string { return f.server.URL + "/api/v10/" }

func (f *fakeDiscord) gatewayURL() string {
	return "ws" + strings.TrimPrefix(f.server.URL, "http") + "/gateway"
}

// silentGatewayURL is a gateway that records IDENTIFY and never replies.
func (f *fakeDiscord) silentGatewayURL() string {
	return "ws" + strings.TrimPrefix(f.server.URL, "http") + "/silent"
}

// muteGatewayURL is a gateway that accepts the websocket upgrade and
// never sends HELLO.
func (f *fakeDiscord) muteGatewayURL() string {
	return "ws" + strings.TrimPrefix(f.server.URL, "http") + "/mute"
}

func (f *fakeDiscord) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") == "Bot "+testToken {
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, `{"message": "401: Unauthorized", "code": 0}`)
	return false
}

func (f *fakeDiscord) handleGatewayLookup(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	f.mu.Lock()
	f.lookups++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"url": f.gatewayURL(), "shards": 1})
}

func (f *fakeDiscord) handlePost(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.posts = append(f.posts, fakePost{
		channelID:     r.PathValue("id"),
		authorization: r.Header.Get("Authorization"),
		body:          body,
	})
	limited := f.rateLimits > 0
	if limited {
		f.rateLimits--
	}
	retryAfter := f.retryAfter
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if limited {
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string]any{
			"message": "You are being rate limited.", "retry_after": retryAfter, "global": false,
		})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"id": "999", "channel_id": r.PathValue("id"), "content": body["content"],
	})
}

func (f *fakeDiscord) handleGateway(w http.ResponseWriter, r *http.Request) {
	var upgrader websocket.Upgrader
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	conn := &fakeConn{ws: ws}
	f.mu.Lock()
	f.conn = conn
	heartbeat := cmp.Or(f.heartbeat, testHeartbeat)
	f.mu.Unlock()

	conn.send(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": heartbeat}})
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			code := websocket.CloseAbnormalClosure
			var closeErr *websocket.CloseError
			if errors.As(err, &closeErr) {
				code = closeErr.Code
			}
			f.closed <- code
			return
		}
		f.handleFrame(conn, data)
	}
}

func (f *fakeDiscord) handleSilent(w http.ResponseWriter, r *http.Request) {
	var upgrader websocket.Upgrader
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	conn := &fakeConn{ws: ws}
	conn.send(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": testHeartbeat}})
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var frame struct {
			Op int             `json:"op"`
			D  json.RawMessage `json:"d"`
		}
		if json.Unmarshal(data, &frame) == nil && frame.Op == 2 {
			f.identifies <- frame.D
		}
	}
}

func (f *fakeDiscord) handleMute(w http.ResponseWriter, r *http.Request) {
	var upgrader websocket.Upgrader
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
	}
}

func (f *fakeDiscord) handleFrame(conn *fakeConn, data []byte) {
	var frame struct {
		Op int             `json:"op"`
		D  json.RawMessage `json:"d"`
	}
	if err := json.Unmarshal(data, &frame); err != nil {
		f.t.Errorf("fake gateway: invalid frame %s: %v", data, err)
		return
	}
	switch frame.Op {
	case 1:
		conn.send(map[string]any{"op": 11})
		select {
		case f.heartbeats <- struct{}{}:
		default:
		}
	case 2:
		f.mu.Lock()
		f.identifyCount++
		f.mu.Unlock()
		select {
		case f.identifies <- frame.D:
		default:
		}
		if !f.reject(conn) && !f.replyInstead(conn, 2) {
			f.dispatchOn(conn, "READY", map[string]any{
				"v":                  9,
				"session_id":         testSessionID,
				"resume_gateway_url": f.gatewayURL(),
				"user":               map[string]any{"id": testBotID, "username": "agent-bot", "bot": true},
				"guilds":             []any{},
			})
		}
	case 6:
		var resume fakeResume
		if err := json.Unmarshal(frame.D, &resume); err != nil {
			f.t.Errorf("fake gateway: invalid RESUME %s: %v", frame.D, err)
		}
		f.mu.Lock()
		f.resumeCount++
		f.mu.Unlock()
		select {
		case f.resumes <- resume:
		default:
		}
		if !f.reject(conn) && !f.replyInstead(conn, 6) {
			f.dispatchOn(conn, "RESUMED", map[string]any{})
		}
	}
}

// reject closes conn with rejectCode, if one is set.
func (f *fakeDiscord) reject(conn *fakeConn) bool {
	f.mu.Lock()
	code := f.rejectCode
	f.mu.Unlock()
	if code == 0 {
		return false
	}
	conn.close(code)
	return true
}

// replyInstead sends what setBefore set for op, and then the reply that
// setReply set, if one is.
func (f *fakeDiscord) replyInstead(conn *fakeConn, op int) bool {
	f.mu.Lock()
	before, hasBefore := f.before[op]
	reply, ok := f.replies[op]
	f.mu.Unlock()
	if hasBefore {
		conn.send(before)
	}
	if ok {
		conn.send(reply)
	}
	return ok
}

// setBefore makes the gateway send message in reply to op 2 IDENTIFY or
// op 6 RESUME ahead of the usual reply.
func (f *fakeDiscord) setBefore(op int, message any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.before == nil {
		f.before = make(map[int]any)
	}
	f.before[op] = message
}

// setReply makes the gateway reply to op 2 IDENTIFY or op 6 RESUME with
// reply instead of READY or RESUMED.
func (f *fakeDiscord) setReply(op int, reply any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replies == nil {
		f.replies = make(map[int]any)
	}
	f.replies[op] = reply
}

// counts returns how many IDENTIFY and RESUME messages arrived.
func (f *fakeDiscord) counts() (identifies, resumes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.identifyCount, f.resumeCount
}

func (f *fakeDiscord) setReject(code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejectCode = code
}

func (f *fakeDiscord) setRateLimits(count int, retryAfter float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rateLimits = count
	f.retryAfter = retryAfter
}

func (f *fakeDiscord) recordedPosts() []fakePost {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakePost(nil), f.posts...)
}

func (f *fakeDiscord) lookupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

func (f *fakeDiscord) current() *fakeConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conn
}

// dispatch sends an op 0 event on the current connection with the next
// sequence number.
func (f *fakeDiscord) dispatch(event string, data any) {
	f.dispatchOn(f.current(), event, data)
}

func (f *fakeDiscord) dispatchOn(conn *fakeConn, event string, data any) {
	f.mu.Lock()
	f.seq++
	seq := f.seq
	f.mu.Unlock()
	conn.send(map[string]any{"op": 0, "t": event, "s": seq, "d": data})
}

func (f *fakeDiscord) lastSeq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

func (c *fakeConn) send(frame any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A write fails only when the client has gone, which the test
	// notices on its own.
	c.ws.WriteJSON(frame)
}

// sendBinary sends data as one binary message, as Discord sends
// zlib-compressed messages.
func (c *fakeConn) sendBinary(data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ws.WriteMessage(websocket.BinaryMessage, data)
}

// close sends a close frame with code and closes the connection.
func (c *fakeConn) close(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	message := websocket.FormatCloseMessage(code, "closed by fake gateway")
	c.ws.WriteControl(websocket.CloseMessage, message, time.Now().Add(time.Second))
	c.ws.Close()
}

// drop closes the TCP connection without a close frame, as a network
// failure would.
func (c *fakeConn) drop() {
	c.ws.NetConn().Close()
}

// fakeHost records what a listener hands to its supervisor.
type fakeHost struct {
	logger *slog.Logger
	ready  chan struct{}
	// reconnecting receives the cause of each Reconnecting call while
	// it has room.
	reconnecting chan error
	events       chan listeners.Event
	// deliver, when set, replaces recording the event.
	deliver func(listeners.Event)
	// onReady, when set, runs at the start of Ready.
	onReady func()
}

func newFakeHost(t *testing.T) *fakeHost {
	return &fakeHost{
		logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		ready:        make(chan struct{}, 10),
		reconnecting: make(chan error, 10),
		events:       make(chan listeners.Event, 100),
	}
}

func (h *fakeHost) Ready() {
	if h.onReady != nil {
		h.onReady()
	}
	select {
	case h.ready <- struct{}{}:
	default:
	}
}

func (h *fakeHost) Reconnecting(cause error) {
	select {
	case h.reconnecting <- cause:
	default:
	}
}

func (h *fakeHost) Deliver(event listeners.Event) {
	if h.deliver != nil {
		h.deliver(event)
		return
	}
	h.events <- event
}

func (h *fakeHost) Log() *slog.Logger   { return h.logger }
func (h *fakeHost) State() listeners.KV { return emptyKV{} }

// emptyKV is a key-value space that stores nothing, because the Discord
// listener keeps no state.
type emptyKV struct{}

func (emptyKV) Get(string) ([]byte, bool, error) { return nil, false, nil }
func (emptyKV) Put(string, []byte) error         { return nil }

// testConfig returns a listener config aimed at f.
func testConfig(f *fakeDiscord, channels ...string) *config.Listener {
	token := config.NewSecret(testToken, "inline")
	return &config.Listener{
		Name:    "discord-test",
		Kind:    config.KindDiscord,
		Enabled: true,
		Discord: &config.Discord{
			Token:      &token,
			Channels:   channels,
			APIURL:     f.apiURL(),
			GatewayURL: f.gatewayURL(),
		},
	}
}

// runResult is what a Run started by startRun returned, and when.
type runResult struct {
	err error
	at  time.Time
}

// startRun runs l in the background. The returned cancel ends the Run,
// and the channel receives its result.
func startRun(t *testing.T, l *Listener, host *fakeHost) (context.CancelFunc, <-chan runResult) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan runResult, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		err := l.Run(ctx, host)
		done <- runResult{err: err, at: time.Now()}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(receiveTimeout):
			t.Error("Run did not return after its context ended")
		}
	})
	return cancel, done
}

func newListener(t *testing.T, cfg *config.Listener) *Listener {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

func waitReady(t *testing.T, host *fakeHost) {
	t.Helper()
	select {
	case <-host.ready:
	case <-time.After(receiveTimeout):
		t.Fatal("host.Ready was not called")
	}
}

// runEnds waits for Run to return on done, and checks that it returned
// within limit after start.
func runEnds(t *testing.T, done <-chan runResult, start time.Time, limit time.Duration) runResult {
	t.Helper()
	result := receive(t, done, "Run to return")
	if elapsed := result.at.Sub(start); elapsed > limit {
		t.Errorf("Run returned after %v, want within %v", elapsed, limit)
	}
	return result
}

func receive[T any](t *testing.T, ch <-chan T, description string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(receiveTimeout):
		t.Fatalf("timed out waiting for %s", description)
		var zero T
		return zero
	}
}

// messageData returns a MESSAGE_CREATE payload from a guild channel.
func messageData(id, channelID, authorID, username, content string) map[string]any {
	return map[string]any{
		"id":         id,
		"channel_id": channelID,
		"guild_id":   "900",
		"content":    content,
		"timestamp":  "2026-01-02T03:04:05.000000+00:00",
		"type":       0,
		"author":     map[string]any{"id": authorID, "username": username},
	}
}
