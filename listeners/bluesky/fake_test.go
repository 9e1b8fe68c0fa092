package bluesky

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// The account of the scripted server.
const (
	testHandle   = "bot.test"
	testPassword = "s3cret-app-pass"
	testDID      = "did:plc:bot"
)

// baseTime is the indexedAt of notification 0; notification i is
// indexed i seconds later.
var baseTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeServer is a scripted AT Protocol endpoint that speaks the XRPC
// JSON of createSession, refreshSession, listNotifications,
// createRecord and resolveHandle. It serves as the entryway and, when
// started with a PDS, names that PDS in the login's DID document.
type fakeServer struct {
	t     *testing.T
	entry *httptest.Server
	pds   *httptest.Server

	mu            sync.Mutex
	tokenSeq      int
	access        map[string]bool
	refresh       map[string]bool
	currentAccess string
	notifications []notification
	records       []postRecord
	handles       map[string]string
	// rateLimited is how many of the next listNotifications calls
	// respond with 429 and ratelimit-reset at rateReset.
	rateLimited int
	rateReset   time.Time
	// failing is how many of the next listNotifications calls respond
	// with 502.
	failing int
	// oversized makes listNotifications respond with a valid page whose
	// body is longer than maxResponseBody.
	oversized bool
	// staleUnauthorized makes a request with a token the server does
	// not accept get 401 InvalidToken, which PasswordAuth does not
	// refresh, in place of 400 ExpiredToken.
	staleUnauthorized bool
	calls             map[string]int
	// served counts requests per "server method", server being entry or
	// pds.
	served  map[string]int
	queries []url.Values
}

func newFakeServer(t *testing.T, withPDS bool) *fakeServer {
	f := &fakeServer{
		t:       t,
		access:  map[string]bool{},
		refresh: map[string]bool{},
		handles: map[string]string{"alice.test": "did:plc:alice"},
		calls:   map[string]int{},
		served:  map[string]int{},
	}
	f.entry = httptest.NewServer(f.handler("entry"))
	t.Cleanup(f.entry.Close)
	if withPDS {
		f.pds = httptest.NewServer(f.handler("pds"))
		t.Cleanup(f.pds.Close)
	}
	return f
}

func (f *fakeServer) handler(server string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := strings.TrimPrefix(r.URL.Path, "/xrpc/")
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls[method]++
		f.served[server+" "+method]++

		switch method {
		case "com.atproto.server.createSession":
			f.createSession(w, r)
		case "com.atproto.server.refreshSession":
			f.refreshSession(w, r)
		case "app.bsky.notification.listNotifications":
			f.listNotifications(w, r)
		case "com.atproto.repo.createRecord":
			f.createRecord(w, r)
		case "com.atproto.identity.resolveHandle":
			f.resolveHandle(w, r)
		default:
			writeError(w, http.StatusNotImplemented, "MethodNotImplemented", method)
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func writeError(w http.ResponseWriter, status int, name, message string) {
	writeJSON(w, status, map[string]string{"error": name, "message": message})
}

// issueTokens starts a new token pair. The caller holds mu.
func (f *fakeServer) issueTokens() (string, string) {
	f.tokenSeq++
	access := fmt.Sprintf("jwt-access-%d", f.tokenSeq)
	refresh := fmt.Sprintf("jwt-refresh-%d", f.tokenSeq)
	f.access[access] = true
	f.refresh[refresh] = true
	f.currentAccess = access
	return access, refresh
}

func (f *fakeServer) pdsURL() string {
	if f.pds != nil {
		return f.pds.URL
	}
	return f.entry.URL
}

func (f *fakeServer) createSession(w http.ResponseWriter, r *http.Request) {
	var in createSessionInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "invalid JSON body")
		return
	}
	if !strings.EqualFold(in.Identifier, testHandle) || in.Password != testPassword {
		writeError(w, http.StatusUnauthorized, "AuthenticationRequired", "Invalid identifier or password")
		return
	}

	access, refresh := f.issueTokens()
	writeJSON(w, http.StatusOK, map[string]any{
		"accessJwt":  access,
		"refreshJwt": refresh,
		"did":        testDID,
		"handle":     testHandle,
		"active":     true,
		"didDoc": map[string]any{
			"id": testDID,
			"service": []map[string]string{{
				"id":              "#atproto_pds",
				"type":            "AtprotoPersonalDataServer",
				"serviceEndpoint": f.pdsURL(),
			}},
		},
	})
}

func (f *fakeServer) refreshSession(w http.ResponseWriter, r *http.Request) {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !f.refresh[token] {
		writeError(w, http.StatusBadRequest, "ExpiredToken", "Token has been revoked")
		return
	}
	// Refresh tokens rotate, as on a real PDS.
	delete(f.refresh, token)
	delete(f.access, f.currentAccess)
	access, refresh := f.issueTokens()
	writeJSON(w, http.StatusOK, map[string]any{
		"accessJwt":  access,
		"refreshJwt": refresh,
		"did":        testDID,
		"handle":     testHandle,
	})
}

// authorize writes an error response to an unauthenticated request and
// returns false. A token the server does not accept gets 400
// ExpiredToken, which makes PasswordAuth refresh, unless
// staleUnauthorized is set. The caller holds mu.
func (f *fakeServer) authorize(w http.ResponseWriter, r *http.Request) bool {
	header := r.Header.Get("Authorization")
	if !strings.HasPrefix(header, "Bearer ") {
		writeError(w, http.StatusUnauthorized, "AuthenticationRequired", "Authentication Required")
		return false
	}
	if !f.access[strings.TrimPrefix(header, "Bearer ")] && f.staleUnauthorized {
		writeError(w, http.StatusUnauthorized, "InvalidToken", "Token could not be verified")
		return false
	}
	if !f.access[strings.TrimPrefix(header, "Bearer ")] {
		writeError(w, http.StatusBadRequest, "ExpiredToken", "Token has expired")
		return false
	}
	return true
}

// listNotifications serves notifications newest first, ties broken by
// URI. The cursor names the last notification of the previous page, so
// later pages go backwards in time and do not shift when new
// notifications arrive.
func (f *fakeServer) listNotifications(w http.ResponseWriter, r *http.Request) {
	if !f.authorize(w, r) {
		return
	}
	if f.rateLimited > 0 {
		f.rateLimited--
		w.Header().Set("Ratelimit-Limit", "3000")
		w.Header().Set("Ratelimit-Remaining", "0")
		w.Header().Set("Ratelimit-Reset", strconv.FormatInt(f.rateReset.Unix(), 10))
		writeError(w, http.StatusTooManyRequests, "RateLimitExceeded", "Rate Limit Exceeded")
		return
	}
	if f.failing > 0 {
		f.failing--
		writeError(w, http.StatusBadGateway, "UpstreamFailure", "appview unavailable")
		return
	}

	if f.oversized {
		cursor := strings.Repeat("c", maxResponseBody)
		writeJSON(w, http.StatusOK, listNotificationsOutput{Notifications: []notification{}, Cursor: cursor})
		return
	}

	query := r.URL.Query()
	f.queries = append(f.queries, query)
	limit := 50
	if n, err := strconv.Atoi(query.Get("limit")); err == nil {
		limit = min(max(n, 1), 100)
	}

	sorted := f.sortedNotifications()
	start := 0
	if cursor := query.Get("cursor"); cursor != "" {
		start = len(sorted)
		for i, n := range sorted {
			if notificationCursor(n) == cursor {
				start = i + 1
				break
			}
		}
	}
	page := sorted[start:min(start+limit, len(sorted))]

	out := listNotificationsOutput{Notifications: page}
	if len(page) > 0 {
		out.Cursor = notificationCursor(page[len(page)-1])
	}
	writeJSON(w, http.StatusOK, out)
}

func notificationCursor(n notification) string {
	return n.IndexedAt + "|" + n.URI
}

// sortedNotifications returns the notifications newest first. The caller
// holds mu.
func (f *fakeServer) sortedNotifications() []notification {
	sorted := slices.Clone(f.notifications)
	slices.SortFunc(sorted, func(a, b notification) int {
		ta, _ := time.Parse(time.RFC3339Nano, a.IndexedAt)
		tb, _ := time.Parse(time.RFC3339Nano, b.IndexedAt)
		if c := tb.Compare(ta); c != 0 {
			return c
		}
		return cmp.Compare(b.URI, a.URI)
	})
	return sorted
}

func (f *fakeServer) createRecord(w http.ResponseWriter, r *http.Request) {
	if !f.authorize(w, r) {
		return
	}
	var in createRecordInput
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "invalid JSON body")
		return
	}
	if in.Repo != testDID || in.Collection != collectionPost || in.Record.Type != collectionPost {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "unexpected repo or collection")
		return
	}
	f.records = append(f.records, in.Record)
	n := len(f.records)
	writeJSON(w, http.StatusOK, createRecordOutput{
		URI: fmt.Sprintf("at://%s/app.bsky.feed.post/own%d", testDID, n),
		CID: fmt.Sprintf("bafyown%d", n),
	})
}

func (f *fakeServer) resolveHandle(w http.ResponseWriter, r *http.Request) {
	did, ok := f.handles[r.URL.Query().Get("handle")]
	if !ok {
		writeError(w, http.StatusBadRequest, "InvalidRequest", "Unable to resolve handle")
		return
	}
	writeJSON(w, http.StatusOK, resolveHandleOutput{DID: did})
}

// add appends notifications to the account.
func (f *fakeServer) add(notifications ...notification) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notifications = append(f.notifications, notifications...)
}

// expireAccess makes requests with the current access token fail with
// ExpiredToken.
func (f *fakeServer) expireAccess() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.access)
}

// revokeSession makes every access and refresh token invalid, so only a
// new login works.
func (f *fakeServer) revokeSession() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.access)
	clear(f.refresh)
}

// serveOversized makes listNotifications respond with a body longer than
// maxResponseBody.
func (f *fakeServer) serveOversized() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.oversized = true
}

// rejectStaleWith401 makes requests with a token the server does not
// accept get 401 InvalidToken.
func (f *fakeServer) rejectStaleWith401() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.staleUnauthorized = true
}

func (f *fakeServer) rateLimit(count int, reset time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rateLimited = count
	f.rateReset = reset
}

func (f *fakeServer) fail(count int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = count
}

func (f *fakeServer) callCount(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fakeServer) servedCount(server, method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.served[server+" "+method]
}

func (f *fakeServer) postRecords() []postRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.records)
}

func (f *fakeServer) lastQuery() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queries) == 0 {
		return nil
	}
	return f.queries[len(f.queries)-1]
}

func (f *fakeServer) currentAccessToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.currentAccess
}

// postURI is the URI of test post i by alice.
func postURI(i int) string {
	return fmt.Sprintf("at://did:plc:alice/app.bsky.feed.post/p%04d", i)
}

// newNotification returns a notification indexed i seconds after
// baseTime. Post reasons carry a post record, others a record of their
// own collection.
func newNotification(i int, reason string) notification {
	uri := postURI(i)
	record := map[string]any{
		"$type":     collectionPost,
		"text":      fmt.Sprintf("post %d", i),
		"createdAt": baseTime.Add(time.Duration(i) * time.Second).Format(time.RFC3339),
	}
	switch reason {
	case "follow", "like", "repost":
		collection := "app.bsky.graph.follow"
		if reason != "follow" {
			collection = "app.bsky.feed." + reason
		}
		uri = fmt.Sprintf("at://did:plc:alice/%s/r%04d", collection, i)
		record = map[string]any{"$type": collection, "createdAt": record["createdAt"]}
	}

	raw, err := json.Marshal(record)
	if err != nil {
		panic(err)
	}
	return notification{
		URI:       uri,
		CID:       fmt.Sprintf("bafy%04d", i),
		Author:    profileView{DID: "did:plc:alice", Handle: "alice.test"},
		Reason:    reason,
		Record:    raw,
		IndexedAt: baseTime.Add(time.Duration(i) * time.Second).Format("2006-01-02T15:04:05.000Z"),
	}
}

// mentions returns mention notifications from..to, inclusive.
func mentions(from, to int) []notification {
	var out []notification
	for i := from; i <= to; i++ {
		out = append(out, newNotification(i, "mention"))
	}
	return out
}

// fakeKV is an in-memory listeners.KV.
type fakeKV struct {
	mu     sync.Mutex
	values map[string][]byte
}

func newFakeKV() *fakeKV { return &fakeKV{values: map[string][]byte{}} }

func (kv *fakeKV) Get(key string) ([]byte, bool, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	value, ok := kv.values[key]
	return slices.Clone(value), ok, nil
}

func (kv *fakeKV) Put(key string, value []byte) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.values[key] = slices.Clone(value)
	return nil
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeHost records what a listener hands its supervisor.
type fakeHost struct {
	kv   *fakeKV
	logs *syncBuffer
	log  *slog.Logger

	mu     sync.Mutex
	events []listeners.Event
	ready  int
}

func newFakeHost(t *testing.T, kv *fakeKV) *fakeHost {
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener log:\n%s", logs.String())
		}
	})
	return &fakeHost{
		kv:   kv,
		logs: logs,
		log:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (h *fakeHost) Ready() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready++
}

// Reconnecting is unused: the Bluesky listener ends Run on a failure.
func (h *fakeHost) Reconnecting(error) {}

func (h *fakeHost) Deliver(ev listeners.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
}

func (h *fakeHost) Log() *slog.Logger   { return h.log }
func (h *fakeHost) State() listeners.KV { return h.kv }

func (h *fakeHost) delivered() []listeners.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

func (h *fakeHost) readyCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready
}

// deliveredIDs returns the IDs of the delivered events, in order.
func (h *fakeHost) deliveredIDs() []string {
	var ids []string
	for _, ev := range h.delivered() {
		ids = append(ids, ev.ID)
	}
	return ids
}

// newTestConfig returns a listener config aimed at f with a short poll.
func newTestConfig(f *fakeServer) *config.Listener {
	password := config.NewSecret(testPassword, "inline")
	return &config.Listener{
		Name:    "bsky",
		Kind:    config.KindBluesky,
		Enabled: true,
		Bluesky: &config.Bluesky{
			Handle:   testHandle,
			Password: &password,
			Host:     f.entry.URL,
			Poll:     10 * time.Millisecond,
		},
	}
}

// newTestListener returns a listener for cfg with rate-limit waits short
// enough for tests.
func newTestListener(t *testing.T, cfg *config.Listener) *Listener {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	l.minRateWait = 10 * time.Millisecond
	l.fallbackRateWait = 10 * time.Millisecond
	return l
}

// pollStored runs one poll the way Run does, from the stored mark.
func pollStored(ctx context.Context, l *Listener, host *fakeHost) error {
	l.attach(host)
	m, err := l.loadMark(host.State())
	if err != nil {
		return err
	}
	_, err = l.pollOnce(ctx, host, m)
	return err
}

// mustPoll runs pollStored and fails the test on an error.
func mustPoll(t *testing.T, l *Listener, host *fakeHost) {
	t.Helper()
	if err := pollStored(context.Background(), l, host); err != nil {
		t.Fatalf("poll: %v", err)
	}
}

// storedMark returns the mark in kv, failing the test when there is none.
func storedMark(t *testing.T, kv *fakeKV) *mark {
	t.Helper()
	data, ok, _ := kv.Get(markKey)
	if !ok {
		t.Fatal("no mark stored")
	}
	var m mark
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decode stored mark: %v", err)
	}
	return &m
}

// storedTestSession returns the session in kv.
func storedTestSession(t *testing.T, kv *fakeKV) storedSession {
	t.Helper()
	data, ok, _ := kv.Get(sessionKey)
	if !ok {
		t.Fatal("no session stored")
	}
	var stored storedSession
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatalf("decode stored session: %v", err)
	}
	return stored
}

// running is a Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func startRun(t *testing.T, l *Listener, host *fakeHost) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- l.Run(ctx, host) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// stop cancels the Run and returns its error, failing the test when Run
// does not return within a second.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of cancel")
		return nil
	}
}

// waitFor polls condition until it holds, failing the test after 5s.
func waitFor(t *testing.T, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
