package reliability

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/reliability/harness"
)

// TestControlSocketMode checks the socket's mode and group: 0600 by
// default, 0660 and the group's ID with socket_group.
func TestControlSocketMode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string
		mode  fs.FileMode
		gid   uint32
	}{
		{"default", "", 0o600, 0},
		{"socket_group", `socket_group = "nogroup"`, 0o660, 65534},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProject(t, tc.extra, "")
			startDaemon(t, p)
			info, err := os.Stat(p.Path("state/control.sock"))
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode()&fs.ModeSocket == 0 {
				t.Errorf("control.sock mode %s is not a socket", info.Mode())
			}
			if got := info.Mode().Perm(); got != tc.mode {
				t.Errorf("control.sock mode = %04o, want %04o", got, tc.mode)
			}
			if gid := info.Sys().(*syscall.Stat_t).Gid; gid != tc.gid {
				t.Errorf("control.sock group = %d, want %d", gid, tc.gid)
			}
		})
	}
}

// TestControlSocketRejectsOtherUser runs the CLI as uid 65534 against a
// daemon of root. The socket sits outside the 0700 state folder, so the
// only barriers are its mode and SO_PEERCRED.
//
// Held: with mode 0600 the CLI cannot connect. With the mode opened to
// 0666 by hand, the daemon rejects the peer by its credentials and logs
// it. Neither shows a status or runs the job. A member of socket_group
// (here by primary group) is served.
func TestControlSocketRejectsOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the CLI as uid 65534, which needs root")
	}
	job := `[jobs.touch]
command = ["touch", "ran"]
schedule = "0 0 1 1 *"
`
	p := newProject(t, `socket = "sock/control.sock"`, job)
	if err := os.Mkdir(p.Path("sock"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p)
	socket := p.Path("sock/control.sock")
	other := &harness.Project{Binary: p.Binary, Dir: p.Dir, Config: p.Config, Credential: nobody}

	res := other.Run(30*time.Second, "list", "--json")
	t.Logf("list as uid 65534, socket 0600: exit %d, stderr %q", res.Code, harness.Clip(res.Stderr, 200))
	if res.Code == 0 || strings.Contains(res.Stdout, `"jobs"`) {
		t.Errorf("list as uid 65534 = %d with output %q, want a failure", res.Code, harness.Clip(res.Stdout, 100))
	}

	if err := os.Chmod(socket, 0o666); err != nil {
		t.Fatal(err)
	}
	res = other.Run(30*time.Second, "list", "--json")
	t.Logf("list as uid 65534, socket 0666: exit %d, stderr %q", res.Code, harness.Clip(res.Stderr, 200))
	if res.Code == 0 || strings.Contains(res.Stdout, `"jobs"`) {
		t.Errorf("list as uid 65534 through a 0666 socket = %d with output %q, want a rejection", res.Code, harness.Clip(res.Stdout, 100))
	}
	if !strings.Contains(d.Log(), "control client rejected") {
		t.Errorf("the daemon did not log the rejected client")
	}
	res = other.Run(30*time.Second, "run-job", "touch")
	if res.Code != 125 {
		t.Errorf("run-job as uid 65534 = %d %q, want 125", res.Code, res.Stderr)
	}
	if _, err := os.Stat(p.Path("ran")); err == nil {
		t.Errorf("the job ran for a rejected user")
	}

	group := newProject(t, `socket = "sock/control.sock"`+"\nsocket_group = \"nogroup\"", job)
	if err := os.Mkdir(group.Path("sock"), 0o755); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, group)
	member := &harness.Project{Binary: group.Binary, Dir: group.Dir, Config: group.Config, Credential: nobody}
	status, res, err := member.Status(30 * time.Second)
	if err != nil || status.Daemon == nil {
		t.Errorf("list as a socket_group member: %v (%s)", err, res.Stderr)
	}
}

// listeningAddresses returns the local addresses in LISTEN state on port,
// from /proc/net/tcp and /proc/net/tcp6, as hex as the kernel prints them.
func listeningAddresses(t *testing.T, port int) []string {
	t.Helper()
	var found []string
	hexPort := fmt.Sprintf(":%04X", port)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 3 && fields[3] == "0A" && strings.HasSuffix(fields[1], hexPort) {
				found = append(found, fields[1])
			}
		}
	}
	return found
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestHTTPBindsLoopback sets http = ":PORT" and reads the kernel's socket
// tables: the one listening socket on the port is 127.0.0.1.
func TestHTTPBindsLoopback(t *testing.T) {
	port := freePort(t)
	p := newProject(t, fmt.Sprintf("http = \":%d\"", port), tickJob)
	startDaemon(t, p)
	addrs := listeningAddresses(t, port)
	want := fmt.Sprintf("0100007F:%04X", port)
	if len(addrs) != 1 || addrs[0] != want {
		t.Errorf("listening sockets on port %d = %v, want only %s (127.0.0.1)", port, addrs, want)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// fakePDS is a minimal AT Protocol server for one Bluesky listener: login
// with one app password, notifications newest first, and posts.
type fakePDS struct {
	password string

	mu            sync.Mutex
	notifications []map[string]any
	posts         int
	requests      []string
}

func (f *fakePDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.requests = append(f.requests, r.URL.String()+" "+r.Header.Get("Authorization")+" "+string(body))
	w.Header().Set("Content-Type", "application/json")
	switch strings.TrimPrefix(r.URL.Path, "/xrpc/") {
	case "com.atproto.server.createSession":
		var in struct{ Identifier, Password string }
		json.Unmarshal(body, &in)
		if in.Password != f.password {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": "AuthenticationRequired"})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"accessJwt": "access-jwt-documented-exception", "refreshJwt": "refresh-jwt-documented-exception",
			"did": "did:plc:bot", "handle": "bot.test",
		})
	case "app.bsky.notification.listNotifications":
		list := make([]map[string]any, len(f.notifications))
		for i, n := range f.notifications {
			list[len(list)-1-i] = n
		}
		json.NewEncoder(w).Encode(map[string]any{"notifications": list})
	case "com.atproto.repo.createRecord":
		f.posts++
		json.NewEncoder(w).Encode(map[string]string{"uri": fmt.Sprintf("at://did:plc:bot/app.bsky.feed.post/%d", f.posts), "cid": "bafypost"})
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "MethodNotImplemented"})
	}
}

func (f *fakePDS) mention(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	f.notifications = append(f.notifications, map[string]any{
		"uri":       fmt.Sprintf("at://did:plc:alice/app.bsky.feed.post/m%d", n),
		"cid":       "bafymention" + strconv.Itoa(n),
		"author":    map[string]string{"did": "did:plc:alice", "handle": "alice.test"},
		"reason":    "mention",
		"record":    map[string]any{"$type": "app.bsky.feed.post", "text": "@bot.test hello", "createdAt": now.Format(time.RFC3339)},
		"indexedAt": now.Add(time.Duration(n) * time.Millisecond).Format(time.RFC3339Nano),
	})
}

func (f *fakePDS) postCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts
}

// Secret values of TestSecretsStayOutOfOutputs. Each is long and unusual,
// so a match is a leak and not a coincidence.
const (
	jobSecret    = "job-secret-5f2c9a71e0"
	pathSecret   = "/nonexistent/path-secret-7d1e42"
	appPassword  = "app-password-9b3e71c4"
	twitchToken  = "twitch-secret-41aa8c0d"
	hookSecret   = "hook-secret-0c55d2e9"
	listenSecret = "exec-secret-6e90b3f1"
)

// TestSecretsStayOutOfOutputs runs a daemon whose jobs and listeners get
// secrets from files. A job prints its env secret to stdout and stderr,
// and another prints it across the 64 KiB line limit. A job has a secret
// PATH and a missing command. A Bluesky listener logs in to a fake PDS
// with an app password, a Twitch listener to a fake chat server with a
// token, and a hook and an exec listener print their env secrets. The
// test exercises scheduled and manual runs, a hook reply, send, check,
// list, list --json, /metrics, /healthz and the status page, and stops
// the daemon. Then it searches every output, the log, the store and
// every file under the project for each value.
//
// The Bluesky session tokens in the store are the documented exception;
// the fake server's tokens are not secrets of this test.
func TestSecretsStayOutOfOutputs(t *testing.T) {
	pds := &fakePDS{password: appPassword}
	srv := httptest.NewServer(pds)
	defer srv.Close()
	irc, err := harness.StartIRCServer()
	if err != nil {
		t.Fatal(err)
	}
	defer irc.Close()
	port := freePort(t)

	p := newProject(t, fmt.Sprintf("http = \"127.0.0.1:%d\"", port), fmt.Sprintf(`
[jobs.leak]
command = ["sh", "-c", "echo token is $TOKEN; echo stderr $TOKEN >&2; exit 3"]
every = "1s"
env = { TOKEN = { file = "secrets/job" } }

[jobs.split]
command = ["sh", "-c", "head -c 65530 /dev/zero | tr '\\0' a; echo $TOKEN"]
schedule = "0 0 1 1 *"
env = { TOKEN = { file = "secrets/job" } }

[jobs.secret-path]
command = ["missing-command-xyz"]
schedule = "0 0 1 1 *"
env = { PATH = { file = "secrets/path" } }

[listeners.mentions]
kind = "bluesky"
handle = "bot.test"
password = { file = "secrets/app-password" }
host = %q
poll = "5s"
on_event = ["sh", "-c", "cat > /dev/null; echo hook stderr $HOOK_TOKEN >&2; echo thanks"]
env = { HOOK_TOKEN = { file = "secrets/hook" } }
log_to = "events.jsonl"

[listeners.chat]
kind = "twitch"
server = %q
tls = false
channels = ["chan"]
username = "bot"
token = { file = "secrets/twitch" }

[listeners.svc]
kind = "exec"
command = ["sh", "-c", "echo svc output $SVC_TOKEN; exec sleep 300"]
env = { SVC_TOKEN = { file = "secrets/svc" } }
`, srv.URL, irc.Addr()))
	secretFiles := map[string]string{
		"job": jobSecret, "path": pathSecret, "app-password": appPassword,
		"twitch": twitchToken, "hook": hookSecret, "svc": listenSecret,
	}
	if err := os.Mkdir(p.Path("secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, value := range secretFiles {
		if err := os.WriteFile(p.Path("secrets/"+name), []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	outputs := map[string]string{}
	record := func(name string, res harness.Result) {
		outputs[name+" stdout"] = res.Stdout
		outputs[name+" stderr"] = res.Stderr
	}
	record("check", p.Run(30*time.Second, "check"))

	d := startDaemon(t, p)
	waitFor(t, "two scheduled runs of leak", 15*time.Second, func() bool {
		return strings.Count(d.Log(), "job=leak") >= 4
	})
	waitFor(t, "the Bluesky listener to run", 20*time.Second, func() bool {
		return listenerHealth(t, p, "mentions").State == listeners.StateRunning
	})
	pds.mention(1)
	waitFor(t, "the hook's reply post", 20*time.Second, func() bool { return pds.postCount() >= 1 })
	waitFor(t, "the chat listener to join", 15*time.Second, irc.Joined)

	record("run-job leak", p.Run(30*time.Second, "run-job", "--wait", "leak"))
	record("run-job split", p.Run(30*time.Second, "run-job", "--wait", "split"))
	record("run-job secret-path", p.Run(30*time.Second, "run-job", "--wait", "secret-path"))
	record("send", p.Run(30*time.Second, "send", "mentions", "a post from a test"))
	record("list", p.Run(30*time.Second, "list"))
	record("list --json", p.Run(30*time.Second, "list", "--json"))
	for _, path := range []string{"/metrics", "/healthz", "/"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		outputs["GET "+path] = string(body)
	}
	if err := d.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
	outputs["daemon log"] = d.Log()
	record("list --json without a daemon", p.Run(30*time.Second, "list", "--json"))

	// Every file under the project, the store included, but not the
	// secret files themselves.
	err = filepath.WalkDir(p.Dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() || entry.Type()&fs.ModeSocket != 0 {
			return err
		}
		if strings.HasPrefix(path, p.Path("secrets")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p.Dir, path)
		outputs["file "+rel] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if got := strings.Count(outputs["run-job leak stdout"], "[redacted]"); got != 1 {
		t.Errorf("run-job leak stdout = %q, want the token redacted", outputs["run-job leak stdout"])
	}
	for place, text := range outputs {
		for name, value := range secretFiles {
			if strings.Contains(text, value) {
				t.Errorf("the %s secret appears in %s: %s", name, place, around(text, value))
			}
		}
		// The job secret cut in two by the 64 KiB line limit, as raw
		// output or JSON-encoded in the store.
		for _, sep := range []string{"\n", `\n`} {
			if strings.Contains(text, jobSecret[:6]+sep+jobSecret[6:]) {
				t.Errorf("the job secret appears split across two output lines in %s", place)
			}
		}
	}
}

// around returns the text around the first match of value.
func around(text, value string) string {
	i := strings.Index(text, value)
	start, end := max(i-80, 0), min(i+len(value)+40, len(text))
	return fmt.Sprintf("%q", text[start:end])
}

// TestJobCannotReadDaemonMemory runs a job as the daemon's own user that
// reads the daemon's environment through /proc, as a compromised script
// would to take what systemd's Environment= or EnvironmentFile= gave the
// service. The variable is not in the config, so no redaction hides it:
// only the daemon being non-dumpable keeps it from the job. As root, the
// daemon and the job run as uid 65534, since root may read any process.
func TestJobCannotReadDaemonMemory(t *testing.T) {
	const secret = "daemon-environment-secret-4f1c9a"
	p := newProject(t, "", `
[jobs.peek]
command = ["sh", "-c", "echo parent=$PPID; tr '\\0' '\\n' < /proc/$PPID/environ; ls /proc/$PPID/fd"]
schedule = "0 0 1 1 *"
`)
	if os.Getuid() == 0 {
		p.Credential = nobody
		chownTree(t, p.Dir, 65534, 65534)
	}
	t.Setenv("AGENT_RUNNER_TEST_SECRET", secret)
	d := startDaemon(t, p)

	res := p.Run(30*time.Second, "run-job", "peek")
	t.Logf("run-job peek: exit %d, stdout %q, stderr %q", res.Code, harness.Clip(res.Stdout, 300), harness.Clip(res.Stderr, 300))
	if !strings.Contains(res.Stdout, fmt.Sprintf("parent=%d\n", d.Pid())) {
		t.Fatalf("the job's parent is not the daemon (pid %d): %q", d.Pid(), harness.Clip(res.Stdout, 200))
	}
	if strings.Contains(res.Stdout, secret) {
		t.Errorf("a job read the daemon's environment: %s", around(res.Stdout, secret))
	}
	if !strings.Contains(res.Stderr+res.Stdout, "Permission denied") {
		t.Errorf("reading the daemon's /proc entries did not fail with permission denied: %q", harness.Clip(res.Stderr, 300))
	}
	if res.Code == 0 {
		t.Errorf("run-job peek exit 0, want the reads to fail")
	}
}
