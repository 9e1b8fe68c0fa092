package reliability

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
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

// tickJob appends each slot to the file ticks in the project folder.
const tickJob = `[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> ticks"]
every = "1s"
`

func ticks(p *harness.Project) int { return len(harness.Lines(p.Path("ticks"))) }

// listenerHealth returns one listener's entry of list --json.
func listenerHealth(t *testing.T, p *harness.Project, name string) listeners.Health {
	t.Helper()
	status, _, err := p.Status(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range status.Listeners {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("listener %s is not in list --json", name)
	return listeners.Health{}
}

// TestReadOnlyStateDir makes the state folder read-only under a running
// daemon and before a start. Root ignores mode bits, so the daemon and the
// CLI run as uid 65534, which owns the project.
//
// Held: scheduled and manual runs go on while the folder is read-only,
// because the store, lock files and job folder exist already; SIGTERM
// still stops the daemon. A start against the read-only folder fails
// with a permission error and leaves the store in place, and the next
// start with write access keeps the schedule without repeating a slot.
func TestReadOnlyStateDir(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("runs the daemon as uid 65534, which needs root")
	}
	p := newProject(t, "", tickJob)
	p.Credential = nobody
	chownTree(t, p.Dir, 65534, 65534)
	state := p.Path("state")
	t.Cleanup(func() { os.Chmod(state, 0o700) })

	d := startDaemon(t, p)
	waitFor(t, "two ticks", 10*time.Second, func() bool { return ticks(p) >= 2 })

	if err := os.Chmod(state, 0o500); err != nil {
		t.Fatal(err)
	}
	before := ticks(p)
	time.Sleep(3 * time.Second)
	if after := ticks(p); after < before+2 {
		t.Errorf("ticks went from %d to %d in 3 s with a read-only state folder", before, after)
	}
	if res := p.Run(30*time.Second, "run-job", "tick"); res.Code != 0 {
		t.Errorf("run-job with a read-only state folder = %d %q, want 0", res.Code, res.Stderr)
	}
	if err := d.Stop(15 * time.Second); err != nil {
		t.Errorf("stop with a read-only state folder: %v", err)
	}

	// The socket file stays behind, since the folder cannot lose it.
	second, err := p.StartDaemon()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.Done():
	case <-time.After(20 * time.Second):
		second.Kill()
		t.Fatalf("a start with a read-only state folder neither ran nor exited in 20 s:\n%s", harness.Tail(second.Log(), 10))
	}
	startLog := second.Log()
	t.Logf("start with a read-only state folder: exit %d, log tail:\n%s", second.ExitCode(), harness.Tail(startLog, 3))
	if second.ExitCode() == 0 {
		t.Errorf("a start with a read-only state folder exited 0, want a failure")
	}
	if !strings.Contains(startLog, "permission denied") {
		t.Errorf("the failed start does not name the permission problem:\n%s", harness.Tail(startLog, 5))
	}
	if matches, _ := filepath.Glob(filepath.Join(state, "state.db.corrupt-*")); len(matches) > 0 {
		t.Errorf("a permission problem moved the store aside: %v", matches)
	}

	if err := os.Chmod(state, 0o700); err != nil {
		t.Fatal(err)
	}
	before = ticks(p)
	d = startDaemon(t, p)
	waitFor(t, "ticks after write access returned", 10*time.Second, func() bool { return ticks(p) >= before+2 })
	if err := d.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
	uniqueSlots(t, p.Path("ticks"))
}

// TestStateDirDeleted removes the whole state folder under a running
// daemon that has an exec alert sink and an HTTP health server, then
// restarts it.
//
// Held: within a few seconds /healthz turns unhealthy with a state_dir
// problem, list --json shows the state error, and the sink gets one
// failed alert for state_dir. The daemon keeps scheduling, recreates the
// folder and the control socket, so list and run-job go through it, stops
// on SIGTERM, and starts again on a fresh store that is healthy. No slot
// ran twice.
func TestStateDirDeleted(t *testing.T) {
	port := freePort(t)
	p := newProject(t, fmt.Sprintf("http = \"127.0.0.1:%d\"", port), tickJob+`
[alerts.file]
kind = "exec"
command = ["sh", "-c", "cat >> alerts.jsonl; echo >> alerts.jsonl"]
events = ["failed", "recovered"]
`)
	d := startDaemon(t, p)
	waitFor(t, "two ticks", 10*time.Second, func() bool { return ticks(p) >= 2 })
	if code, body := getHealth(t, port); code != http.StatusOK {
		t.Fatalf("/healthz before the deletion: %d %s", code, body)
	}

	if err := os.RemoveAll(p.Path("state")); err != nil {
		t.Fatal(err)
	}
	before := ticks(p)
	var body string
	waitFor(t, "/healthz to report the lost state folder", 20*time.Second, func() bool {
		var code int
		code, body = getHealth(t, port)
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"state_dir"`)
	})
	if !strings.Contains(body, "restart the daemon") {
		t.Errorf("/healthz does not say what to do: %s", body)
	}
	waitFor(t, "the state_dir alert", 20*time.Second, func() bool {
		return strings.Contains(readFile(p.Path("alerts.jsonl")), `"name":"state_dir"`)
	})
	if d.Exited() {
		t.Fatalf("the daemon exited (status %d) after its state folder was deleted:\n%s", d.ExitCode(), harness.Tail(d.Log(), 10))
	}
	if after := ticks(p); after < before+2 {
		t.Errorf("ticks went from %d to %d after the state folder was deleted", before, after)
	}

	status, res, err := p.Status(30 * time.Second)
	switch {
	case err != nil:
		t.Errorf("list --json after the deletion: %v: %s", err, res.Stderr)
	case status.Daemon == nil:
		t.Errorf("list --json after the deletion did not reach the daemon: %s", res.Stderr)
	case !strings.Contains(status.Daemon.StateError, "deleted"):
		t.Errorf("list --json state_error = %q, want the deleted store", status.Daemon.StateError)
	}
	if text := p.Run(30*time.Second, "status"); !strings.Contains(text.Stdout, "state folder failing") {
		t.Errorf("status after the deletion does not show the state folder:\n%s", text.Stdout)
	}
	ranBefore := strings.Count(d.Log(), "trigger=manual")
	manual := p.Run(30*time.Second, "run-job", "tick")
	if manual.Code != 0 {
		t.Errorf("run-job after the deletion: exit %d: %s", manual.Code, manual.Stderr)
	}
	if strings.Count(d.Log(), "trigger=manual") == ranBefore {
		t.Errorf("run-job after the deletion did not run through the daemon")
	}

	// Two more checks pass: the alert is not repeated.
	time.Sleep(11 * time.Second)
	if n := strings.Count(readFile(p.Path("alerts.jsonl")), `"name":"state_dir"`); n != 1 {
		t.Errorf("the sink got %d state_dir alerts, want 1:\n%s", n, readFile(p.Path("alerts.jsonl")))
	}

	start := time.Now()
	if err := d.Stop(15 * time.Second); err != nil {
		t.Errorf("stop after the state folder was deleted: %v", err)
	}
	t.Logf("stop took %s", time.Since(start).Round(time.Millisecond))

	before = ticks(p)
	d = startDaemon(t, p)
	waitFor(t, "ticks after the restart", 10*time.Second, func() bool { return ticks(p) >= before+2 })
	if code, body := getHealth(t, port); code != http.StatusOK {
		t.Errorf("/healthz after the restart: %d %s", code, body)
	}
	if err := d.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
	uniqueSlots(t, p.Path("ticks"))
}

// getHealth returns the status code and body of /healthz.
func getHealth(t *testing.T, port int) (int, string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// readFile returns the content of path, or "" when it cannot be read.
func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// writeScript writes an sh script into the project folder.
func writeScript(t *testing.T, p *harness.Project, name, body string) {
	t.Helper()
	if err := os.WriteFile(p.Path(name), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// pidGone waits up to a second for the pid in file to exit.
func pidGone(t *testing.T, p *harness.Project, file string) bool {
	t.Helper()
	lines := harness.Lines(p.Path(file))
	if len(lines) == 0 {
		t.Fatalf("%s was not written", file)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return harness.WaitFor(time.Second, func() bool { return !harness.Alive(pid, "") })
}

// TestTimeoutKillsJobIgnoringTERM runs a job whose shell and a child in
// its process group ignore SIGTERM, with timeout = 1s and kill_grace = 1s.
//
// Held: run-job exits 124 after about timeout + kill_grace, SIGKILL ends
// both processes, and the run is recorded as a timeout.
func TestTimeoutKillsJobIgnoringTERM(t *testing.T) {
	p := newProject(t, "", `[jobs.stubborn]
command = ["sh", "stubborn.sh"]
schedule = "0 0 1 1 *"
timeout = "1s"
`)
	writeScript(t, p, "stubborn.sh", `trap '' TERM
sh -c 'trap "" TERM; echo $$ > child.pid; while :; do sleep 0.1; done' &
echo $$ > main.pid
while :; do sleep 0.1; done
`)
	startDaemon(t, p)
	res := p.Run(30*time.Second, "run-job", "stubborn")
	t.Logf("run-job stubborn: exit %d after %s", res.Code, res.Duration.Round(time.Millisecond))
	if res.Code != 124 {
		t.Errorf("run-job exit = %d, want 124 (%s)", res.Code, res.Stderr)
	}
	if res.Duration < 1900*time.Millisecond || res.Duration > 6*time.Second {
		t.Errorf("run-job took %s, want about 2 s (timeout + kill_grace)", res.Duration)
	}
	for _, file := range []string{"main.pid", "child.pid"} {
		if !pidGone(t, p, file) {
			t.Errorf("the process in %s survived the timeout", file)
		}
	}
	status, _, err := p.Status(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := status.Jobs[0].LastResult; got != "timeout" {
		t.Errorf("last result = %q, want timeout", got)
	}
}

// TestChildClosesStdout runs children that close their output early.
//
// Held: a run lasts as long as its process, not as long as its pipes. A
// child that closes stdout and stderr and sleeps 2 s is recorded ok after
// 2 s. One that sleeps past its timeout is killed at the timeout. A
// background process that keeps the pipes open after the main process
// exits is stopped with the group and does not hold up the run.
func TestChildClosesStdout(t *testing.T) {
	p := newProject(t, "", `[jobs.closer]
command = ["sh", "-c", "exec >&- 2>&-; sleep 2; touch finished"]
schedule = "0 0 1 1 *"

[jobs.closer-timeout]
command = ["sh", "-c", "exec >&- 2>&-; echo $$ > closer.pid; exec sleep 30"]
schedule = "0 0 1 1 *"
timeout = "1s"

[jobs.holder]
command = ["sh", "-c", "sleep 30 & echo $! > holder.pid; echo main done"]
schedule = "0 0 1 1 *"
`)
	startDaemon(t, p)

	res := p.Run(30*time.Second, "run-job", "closer")
	if res.Code != 0 || res.Duration < 2*time.Second {
		t.Errorf("closer: exit %d after %s, want 0 after at least 2 s", res.Code, res.Duration)
	}
	if _, err := os.Stat(p.Path("finished")); err != nil {
		t.Errorf("closer's run ended before the process did: %v", err)
	}

	res = p.Run(30*time.Second, "run-job", "closer-timeout")
	if res.Code != 124 || res.Duration > 5*time.Second {
		t.Errorf("closer-timeout: exit %d after %s, want 124 within 5 s", res.Code, res.Duration)
	}
	if !pidGone(t, p, "closer.pid") {
		t.Errorf("closer-timeout's process outlived its run")
	}

	res = p.Run(30*time.Second, "run-job", "holder")
	if res.Code != 0 || res.Duration > 5*time.Second {
		t.Errorf("holder: exit %d after %s, want 0 within 5 s", res.Code, res.Duration)
	}
	if !pidGone(t, p, "holder.pid") {
		t.Errorf("holder's background process outlived its run")
	}
	t.Logf("closer %s; holder %s", "ok", res.Duration.Round(time.Millisecond))
}

// TestOutputFloodWithoutNewlines streams 200 MB without a newline through
// a manual run whose client discards it.
//
// Held: the daemon's peak RSS (VmHWM) stays under 64 MiB, the log gets at
// most the 1,000-line limit and one warning, and the run record keeps at
// most the 64 KiB tail.
func TestOutputFloodWithoutNewlines(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 200 MB")
	}
	p := newProject(t, "", `[jobs.flood]
command = ["sh", "-c", "head -c 200000000 /dev/zero | tr '\\0' x"]
schedule = "0 0 1 1 *"
`)
	d := startDaemon(t, p)
	startHWM := vmHWM(t, d)

	cmd := p.Command("run-job", "flood")
	cmd.Stdout = io.Discard
	res := harness.RunCommand(cmd, 2*time.Minute)
	if res.Code != 0 {
		t.Fatalf("run-job flood exit %d: %s", res.Code, res.Stderr)
	}
	peak := vmHWM(t, d)
	t.Logf("200 MB in %s; daemon VmHWM %d KiB at start, %d KiB after", res.Duration.Round(time.Millisecond), startHWM, peak)
	if peak >= 64<<10 {
		t.Errorf("daemon VmHWM = %d KiB after the flood, want under 65536", peak)
	}
	if n := strings.Count(d.Log(), "msg=output"); n > 1000 {
		t.Errorf("the log has %d output lines, want at most 1000", n)
	}
	if n := strings.Count(d.Log(), "output not logged past the line limit"); n != 1 {
		t.Errorf("the line-limit warning appears %d times, want once", n)
	}
	status, _, err := p.Status(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s := status.Jobs[0]; s.LastResult != "ok" {
		t.Errorf("flood last result = %q, want ok", s.LastResult)
	}
}

// TestHookFloodWithSlowHook sends 5,000 chat messages a second for 5 s
// through a Twitch listener (a local fake server) whose hook takes 0.2 s,
// with hook_concurrency 2 and hook_queue 100. Chat kinds are the only
// source of hook events; Twitch is used because its fake server can push
// thousands of lines a second, where a Bluesky poll is at least 5 s apart.
//
// Held: every message is counted as handled, and the overflow is dropped
// and counted rather than queued. The drop warning is rate-limited. During
// the flood list stays fast and a job due every second keeps running. The
// log_to files stay within their rotation bound, and the daemon's peak
// RSS stays bounded.
func TestHookFloodWithSlowHook(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a listener for 5 s")
	}
	irc, err := harness.StartIRCServer()
	if err != nil {
		t.Fatal(err)
	}
	defer irc.Close()
	p := newProject(t, "", tickJob+fmt.Sprintf(`
[listeners.chat]
kind = "twitch"
server = %q
tls = false
channels = ["flood"]
on_event = ["sh", "-c", "cat > /dev/null; sleep 0.2"]
hook_concurrency = 2
hook_queue = 100
log_to = "events.jsonl"
log_max_bytes = 1048576
`, irc.Addr()))
	d := startDaemon(t, p)
	waitFor(t, "the chat listener to join", 15*time.Second, irc.Joined)
	waitFor(t, "the chat listener to run", 15*time.Second, func() bool {
		return listenerHealth(t, p, "chat").State == listeners.StateRunning
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var sent int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent = irc.Flood(ctx, "flood", 5000, 0)
	}()
	ticksBefore := ticks(p)
	var slowest time.Duration
	for ctx.Err() == nil {
		_, res, err := p.Status(15 * time.Second)
		if err != nil {
			t.Errorf("list during the flood: %v", err)
		}
		slowest = max(slowest, res.Duration)
		time.Sleep(500 * time.Millisecond)
	}
	wg.Wait()
	ticksDuring := ticks(p) - ticksBefore

	var h listeners.Health
	harness.WaitFor(15*time.Second, func() bool {
		h = listenerHealth(t, p, "chat")
		return int64(h.Handled) >= sent
	})
	peak := vmHWM(t, d)
	t.Logf("sent %d in 5 s; handled %d, dropped %d; slowest list %s; %d ticks during the flood; VmHWM %d KiB",
		sent, h.Handled, h.Dropped, slowest.Round(time.Millisecond), ticksDuring, peak)
	// The fake server runs in the test process, which the race detector
	// slows down, so the bound is a quarter of the target rate.
	if sent < 6000 {
		t.Errorf("the fake server wrote only %d messages in 5 s, want at least 6000", sent)
	}
	if int64(h.Handled) != sent {
		t.Errorf("handled = %d, want every one of the %d messages", h.Handled, sent)
	}
	if h.Dropped == 0 || h.Dropped >= h.Handled {
		t.Errorf("dropped = %d of %d, want the overflow of a slow hook dropped", h.Dropped, h.Handled)
	}
	if slowest > 3*time.Second {
		t.Errorf("the slowest list during the flood took %s, want under 3 s", slowest)
	}
	if ticksDuring < 3 {
		t.Errorf("only %d ticks of an every-second job during the 5 s flood", ticksDuring)
	}
	if n := strings.Count(d.Log(), "hook queue full"); n > 3 {
		t.Errorf("the drop warning was logged %d times in about 5 s, want it rate-limited", n)
	}
	var journal int64
	for _, name := range []string{"events.jsonl", "events.jsonl.1"} {
		if info, err := os.Stat(p.Path(name)); err == nil {
			journal += info.Size()
		}
	}
	if journal > 2<<20+4096 {
		t.Errorf("log_to files hold %d bytes, want at most twice log_max_bytes", journal)
	}
	if peak >= 128<<10 {
		t.Errorf("daemon VmHWM = %d KiB during the flood, want under 131072", peak)
	}
}

// hangingServer accepts TCP connections and never writes, like a peer
// that stalls. It returns the address.
func hangingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			go io.Copy(io.Discard, conn)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// garbageServer calls reply on every connection, then closes it.
func garbageServer(t *testing.T, reply func(conn net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				reply(conn)
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// TestExecProbeBadPeer points exec listeners' HTTP probes at a server
// that accepts and never responds, and at one that responds with bytes
// that are not HTTP.
//
// Held: each probe fails (the hanging one at its 5 s client timeout), the
// child is stopped and restarted, the stopped child's process is gone, the
// every-second job keeps running, and SIGTERM stops the daemon quickly
// while a probe hangs.
func TestExecProbeBadPeer(t *testing.T) {
	hang := hangingServer(t)
	garbage := garbageServer(t, func(conn net.Conn) {
		io.WriteString(conn, "\x00\x01\x02 garbage\r\n\r\n")
	})
	child := func(name string) string {
		return fmt.Sprintf("%q", "echo \"$PPID $$ $(cut -d' ' -f22 /proc/$$/stat)\" >> "+name+".pids; exec sleep 300")
	}
	p := newProject(t, "", tickJob+fmt.Sprintf(`
[listeners.hang]
kind = "exec"
command = ["sh", "-c", %s]
probe = { http = "http://%s/", interval = "1s", grace = "1s" }

[listeners.garbage]
kind = "exec"
command = ["sh", "-c", %s]
probe = { http = "http://%s/", interval = "1s", grace = "1s" }
`, child("hang"), hang, child("garbage"), garbage))
	d := startDaemon(t, p)

	for _, name := range []string{"hang", "garbage"} {
		waitFor(t, name+" to restart after a failed probe", 30*time.Second, func() bool {
			return listenerHealth(t, p, name).Restarts >= 1 && len(harness.ReadPidRecords(p.Path(name+".pids"))) >= 2
		})
		h := listenerHealth(t, p, name)
		t.Logf("%s: state %s, restarts %d, last error %q", name, h.State, h.Restarts, h.LastError)
		if !strings.Contains(h.LastError, "probe") {
			t.Errorf("%s last error = %q, want the probe named", name, h.LastError)
		}
		records := harness.ReadPidRecords(p.Path(name + ".pids"))
		for _, r := range records[:len(records)-1] {
			if !harness.WaitFor(2*time.Second, func() bool { return !harness.Alive(r.Pid, r.StartTime) }) {
				t.Errorf("%s: the child %d stopped after a failed probe still runs", name, r.Pid)
			}
		}
	}
	before := ticks(p)
	time.Sleep(2 * time.Second)
	if after := ticks(p); after < before+1 {
		t.Errorf("ticks went from %d to %d in 2 s while probes failed", before, after)
	}

	start := time.Now()
	if err := d.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("stop took %s while a probe hung, want under 8 s", took)
	}
	for _, name := range []string{"hang", "garbage"} {
		for _, r := range harness.ReadPidRecords(p.Path(name + ".pids")) {
			if harness.Alive(r.Pid, r.StartTime) {
				t.Errorf("%s child %d outlived the daemon", name, r.Pid)
			}
		}
	}
}

// TestTwitchBadPeer points Twitch listeners at a server that accepts and
// never responds, and at one that welcomes the client and then sends
// binary garbage and a line that makes go-twitch-irc's parser panic.
//
// Held: the daemon and its every-second job are unaffected. The relay
// drops the line that would make the parser panic, and the garbage peer's
// listener restarts when that peer closes the connection.
// SIGTERM stops the daemon within a few seconds, even with the login to
// the stalled peer pending. The stalled listener fails at the 30 s
// connect timeout with an error that names the peer and the missing
// welcome, and waits out a backoff, which list shows.
func TestTwitchBadPeer(t *testing.T) {
	stall := hangingServer(t)
	garbage := garbageServer(t, func(conn net.Conn) {
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		conn.Read(buf)
		io.WriteString(conn, ":tmi.twitch.tv 001 justinfan :Welcome, GLHF!\r\n")
		io.WriteString(conn, "\xff\xfe\x00garbage\r\n@@@ ;;; :\r\n")
		io.WriteString(conn, "@badges=moderator;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :hi\r\n")
		time.Sleep(time.Second)
	})
	p := newProject(t, "", tickJob+fmt.Sprintf(`
[listeners.stalled]
kind = "twitch"
server = %q
tls = false
channels = ["chan"]

[listeners.garbage]
kind = "twitch"
server = %q
tls = false
channels = ["chan"]
`, stall, garbage))
	d := startDaemon(t, p)
	waitFor(t, "the garbage peer's listener to restart", 20*time.Second, func() bool {
		return listenerHealth(t, p, "garbage").Restarts >= 1
	})
	g := listenerHealth(t, p, "garbage")
	t.Logf("garbage: state %s, restarts %d, last error %q", g.State, g.Restarts, g.LastError)
	if !strings.Contains(g.LastError, "closed") && !strings.Contains(g.LastError, "reset") {
		t.Errorf("garbage last error = %q, want the closed connection", g.LastError)
	}
	s := listenerHealth(t, p, "stalled")
	t.Logf("stalled after %s: state %s, restarts %d, last error %q", time.Since(d.Started).Round(time.Second), s.State, s.Restarts, s.LastError)
	if s.State == listeners.StateRunning {
		t.Errorf("the listener of a peer that never answered reports running")
	}
	waitFor(t, "the stalled listener to fail at the connect timeout", listeners.DefaultConnectTimeout+15*time.Second, func() bool {
		return listenerHealth(t, p, "stalled").LastError != ""
	})
	s = listenerHealth(t, p, "stalled")
	t.Logf("stalled after %s: state %s, last error %q", time.Since(d.Started).Round(time.Second), s.State, s.LastError)
	if !strings.Contains(s.LastError, "no welcome") || !strings.Contains(s.LastError, stall) {
		t.Errorf("stalled last error = %q, want the missing welcome from %s", s.LastError, stall)
	}

	before := ticks(p)
	time.Sleep(2 * time.Second)
	if after := ticks(p); after < before+1 {
		t.Errorf("ticks went from %d to %d in 2 s with misbehaving chat peers", before, after)
	}
	start := time.Now()
	if err := d.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("stop took %s with a stalled login pending, want under 8 s", took)
	}
}

// TestTwitchBufferedLinesLeak points a Twitch listener at a server that,
// on every connection, sends the welcome and then one burst: a line that
// makes go-twitch-irc's parser panic, 100 chat lines, RECONNECT and 200
// more chat lines. Before the relay dropped such lines and stopped at
// RECONNECT, go-twitch-irc's reader goroutine then blocked for ever on its
// full line channel of 64, so Connect never returned. The test counts
// what the sessions leave in the daemon: descriptors and goroutines from
// /metrics, and readers still blocked in a SIGQUIT dump.
//
// Held: the daemon stays up, the listener restarts after each RECONNECT,
// and neither descriptors nor go-twitch-irc readers accumulate.
func TestTwitchBufferedLinesLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for five listener restarts")
	}
	burst := "@badges=moderator;id=1 :a!a@a.tmi.twitch.tv PRIVMSG #chan :panic\r\n"
	for i := range 100 {
		burst += harness.PrivmsgLine("chan", int64(i), "after the panic") + "\r\n"
	}
	burst += ":tmi.twitch.tv RECONNECT\r\n"
	for i := range 200 {
		burst += harness.PrivmsgLine("chan", int64(100+i), "after RECONNECT") + "\r\n"
	}
	addr := garbageServer(t, func(conn net.Conn) {
		reader := bufio.NewReader(conn)
		for {
			line, err := reader.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "NICK ") {
				break
			}
		}
		io.WriteString(conn, ":tmi.twitch.tv 001 justinfan :Welcome, GLHF!\r\n")
		time.Sleep(100 * time.Millisecond)
		io.WriteString(conn, burst)
		io.Copy(io.Discard, conn)
	})
	port := freePort(t)
	// No job runs, so that its pipes do not blur the descriptor count.
	p := newProject(t, fmt.Sprintf("http = \"127.0.0.1:%d\"", port), fmt.Sprintf(`
[listeners.chat]
kind = "twitch"
server = %q
tls = false
channels = ["chan"]
`, addr))
	d := startDaemon(t, p)
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	sample := func(restarts int) (harness.ProcSample, int) {
		waitFor(t, fmt.Sprintf("restart %d of the chat listener", restarts), 60*time.Second, func() bool {
			return listenerHealth(t, p, "chat").Restarts >= restarts
		})
		s, err := harness.SampleProc(d.Pid())
		if err != nil {
			t.Fatal(err)
		}
		goroutines, err := harness.Goroutines(metrics)
		if err != nil {
			t.Fatal(err)
		}
		return s, goroutines
	}
	first, firstGoroutines := sample(1)
	last, lastGoroutines := sample(5)
	h := listenerHealth(t, p, "chat")
	t.Logf("after restart 1: %d fds, %d goroutines; after restart %d: %d fds, %d goroutines; last error %q",
		first.FDs, firstGoroutines, h.Restarts, last.FDs, lastGoroutines, h.LastError)
	if d.Exited() {
		t.Fatalf("the daemon exited")
	}
	// SIGQUIT makes the Go runtime print every goroutine's stack, which
	// shows the readers still blocked.
	_ = d.Cmd.Process.Signal(syscall.SIGQUIT)
	<-d.Done()
	blocked := strings.Count(d.Log(), "go-twitch-irc/v4.(*Client).startReader(")
	t.Logf("go-twitch-irc reader goroutines alive at exit: %d", blocked)
	sessions := h.Restarts - 1
	// A descriptor or two may belong to a session that is starting or
	// ending at the sample; a leak adds at least one per session.
	if leaked := last.FDs - first.FDs; leaked >= sessions || blocked > 1 {
		t.Errorf("%d descriptors and %d goroutines more after %d sessions that ended with lines buffered; %d readers blocked at exit",
			leaked, lastGoroutines-firstGoroutines, sessions, blocked)
	}
}

// TestIdleControlConnections opens 300 connections to the control socket
// and sends nothing, more than the server's cap of 256.
//
// Held: jobs keep running, the surplus is closed at once, the idle ones
// are dropped after the 10 s request timeout so list works again, and
// SIGTERM with idle clients connected stops the daemon at once.
func TestIdleControlConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 10 s request timeout")
	}
	p := newProject(t, "", tickJob)
	d := startDaemon(t, p)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 300 {
		c, err := net.Dial("unix", p.Path("state/control.sock"))
		if err != nil {
			t.Fatalf("connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, c)
	}

	before := ticks(p)
	time.Sleep(3 * time.Second)
	if after := ticks(p); after < before+2 {
		t.Errorf("ticks went from %d to %d in 3 s with 300 idle clients", before, after)
	}

	var recovered time.Duration
	start := time.Now()
	waitFor(t, "list to work again", 30*time.Second, func() bool {
		_, _, err := p.Status(15 * time.Second)
		recovered = time.Since(start)
		return err == nil
	})
	t.Logf("list worked again %s after 300 idle connections were opened", recovered.Round(100*time.Millisecond))

	for range 50 {
		c, err := net.Dial("unix", p.Path("state/control.sock"))
		if err == nil {
			conns = append(conns, c)
		}
	}
	start = time.Now()
	if err := d.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("stop took %s with idle clients connected", took)
	}
}

// TestStoppedDaemonCLITimeout stops the daemon with SIGSTOP, as a hung
// process would look, and runs list and run-job.
//
// Held: both give up on their own after the client's 30 s reply timeout
// and exit non-zero (run-job with 125), instead of hanging or running the
// job a second time in-process.
func TestStoppedDaemonCLITimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the CLI's 30 s reply timeout")
	}
	p := newProject(t, "", `[jobs.touch]
command = ["touch", "ran"]
schedule = "0 0 1 1 *"
`)
	d := startDaemon(t, p)
	if err := d.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer d.Cmd.Process.Signal(syscall.SIGCONT)
	results := make(chan harness.Result, 2)
	for _, args := range [][]string{{"list", "--json"}, {"run-job", "touch"}} {
		go func() { results <- p.Run(90*time.Second, args...) }()
	}
	for range 2 {
		res := <-results
		t.Logf("exit %d after %s: %s", res.Code, res.Duration.Round(100*time.Millisecond), harness.Clip(strings.TrimSpace(res.Stderr), 200))
		if res.Code == 0 || res.Code == -1 {
			t.Errorf("a CLI command against a stopped daemon exited %d after %s, want a failure on its own", res.Code, res.Duration)
		}
		if res.Duration > 45*time.Second {
			t.Errorf("a CLI command against a stopped daemon took %s", res.Duration)
		}
	}
	if _, err := os.Stat(p.Path("ran")); err == nil {
		t.Errorf("run-job ran the job in-process while the daemon held the store")
	}
}

// TestEverySlotsAfterRestarts restarts a daemon with an every = "1s" job
// five times at different offsets within the second, and looks for slots
// that were neither run nor merged into a catch-up run.
//
// Held or failed: logged per restart. A slot after the first run of a
// start must follow the slot before it by exactly 1 s.
func TestEverySlotsAfterRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts the daemon five times")
	}
	p := newProject(t, "", `[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT $AGENT_RUNNER_TRIGGER >> ticks"]
every = "1s"
`)
	for i := range 5 {
		// Start at a different point of the second each time.
		time.Sleep(time.Duration(200*i+150) * time.Millisecond)
		before := ticks(p)
		d := startDaemon(t, p)
		waitFor(t, "four runs after a start", 15*time.Second, func() bool { return ticks(p) >= before+4 })
		if err := d.Stop(15 * time.Second); err != nil {
			t.Fatal(err)
		}
		lines := harness.Lines(p.Path("ticks"))[before:]
		var previous time.Time
		for j, line := range lines {
			slot, err := time.Parse(time.RFC3339, strings.Fields(line)[0])
			if err != nil {
				t.Fatal(err)
			}
			if j > 0 && slot.Sub(previous) != time.Second {
				t.Errorf("start %d: slot %s follows %s; the slots between were lost (runs: %q)", i+1, slot.Format(time.TimeOnly), previous.Format(time.TimeOnly), lines)
			}
			previous = slot
		}
	}
	uniqueSlots(t, p.Path("ticks"))
}

// TestListWithManyJobs loads 5,000 jobs, whose status reply the attack
// run found larger than the client once accepted.
//
// Held: the daemon starts, and list --json through it returns every job.
func TestListWithManyJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon with 5,000 jobs")
	}
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "[jobs.j%d]\ncommand = [\"true\"]\nschedule = \"0 0 1 1 *\"\n\n", i)
	}
	p := newProject(t, "", b.String())
	startDaemon(t, p)
	status, res, err := p.Status(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("list --json of 5000 jobs: %d bytes in %s", len(res.Stdout), res.Duration.Round(time.Millisecond))
	if status.Daemon == nil || len(status.Jobs) != 5000 {
		t.Errorf("list --json shows %d jobs (daemon reply: %v), want 5000 from the daemon", len(status.Jobs), status.Daemon != nil)
	}
}

// TestReloadBareTimeZoneSchedule edits the config of a running daemon
// to schedule = "CRON_TZ=UTC", a time zone prefix with no fields, and
// sends SIGHUP. robfig/cron v3.0.1 panics on that expression (see
// parseCronKnownPanic in schedule), so config loading panicked and the
// daemon exited.
//
// Held since schedule.ParseCron rejects the bare prefix before robfig's
// parser sees it: the reload is rejected and the daemon keeps running.
func TestReloadBareTimeZoneSchedule(t *testing.T) {
	p := newProject(t, "", tickJob)
	d := startDaemon(t, p)
	waitFor(t, "a tick", 10*time.Second, func() bool { return ticks(p) >= 1 })
	bad := runnerTable + "\n[jobs.tick]\ncommand = [\"true\"]\nschedule = \"CRON_TZ=UTC\"\n"
	if err := os.WriteFile(p.Config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
		message := fmt.Sprintf("the daemon exited with status %d on reloading schedule = \"CRON_TZ=UTC\": %s",
			d.ExitCode(), firstLineWith(d.Log(), "panic: "))
		t.Error(message)
	case <-time.After(3 * time.Second):
		if !strings.Contains(d.Log(), "reload") {
			t.Errorf("the daemon neither exited nor logged the reload")
		}
	}
	check := p.Run(30*time.Second, "check")
	t.Logf("check of that config: exit %d, %s", check.Code, firstLineWith(check.Stderr, "panic: "))
	if check.Code == 0 {
		t.Errorf("check accepted schedule = \"CRON_TZ=UTC\"")
	}
}

// firstLineWith returns the first line of text that contains substring.
func firstLineWith(text, substring string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substring) {
			return line
		}
	}
	return ""
}

// TestKillDuringLeftoverCleanup kills the daemon a second time while its
// start is stopping what the first killed daemon left. The job ignores
// SIGTERM, so the start's wait before SIGKILL lasts the whole kill_grace
// of 3 s, and the second SIGKILL lands inside it. The start stops the
// processes before it marks their runs interrupted, so the runs are
// still "running" in the store and the third start stops the job.
func TestKillDuringLeftoverCleanup(t *testing.T) {
	p := newProject(t, `kill_grace = "3s"`, `[jobs.stubborn]
command = ["sh", "-c", "trap '' TERM; echo $$ >> stubborn.pids; while :; do sleep 0.2; done"]
schedule = "0 0 1 1 *"
`)
	t.Cleanup(func() {
		for _, line := range harness.Lines(p.Path("stubborn.pids")) {
			if pid, err := strconv.Atoi(line); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	first := startDaemon(t, p)
	client := p.Command("run-job", "stubborn")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer client.Wait()
	waitFor(t, "the job to start", 10*time.Second, func() bool { return len(harness.Lines(p.Path("stubborn.pids"))) == 1 })
	pid, err := strconv.Atoi(harness.Lines(p.Path("stubborn.pids"))[0])
	if err != nil {
		t.Fatal(err)
	}
	first.Kill()

	second, err := p.StartDaemon()
	if err != nil {
		t.Fatal(err)
	}
	// Inside the start's 3 s wait between SIGTERM and SIGKILL.
	time.Sleep(time.Second)
	second.Kill()
	if !harness.Alive(pid, "") {
		t.Fatalf("the job died before the second kill; the window was missed")
	}

	third := startDaemon(t, p)
	if err := third.WaitLog("run was interrupted by a previous stop", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if harness.Alive(pid, "") {
		t.Errorf("the job's process %d still runs after a third start", pid)
	}
	// A new run of the same job starts while the leftover still runs.
	again := p.Command("run-job", "stubborn")
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	overlapped := harness.WaitFor(5*time.Second, func() bool { return len(harness.Lines(p.Path("stubborn.pids"))) >= 2 })
	again.Process.Kill()
	again.Wait()
	t.Logf("a new run of the job started beside the leftover: %t", overlapped)
}
