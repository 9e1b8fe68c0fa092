package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

// hostileError is a listener error that would add an <img> element to
// the DOM if the page did not escape it.
const hostileError = `401 Unauthorized <img src=x onerror=alert(1)> "quoted" & more`

// pageStatus is a daemon like the shipped config.toml describes, with
// every state the page colours.
func pageStatus(now time.Time) control.Status {
	ok := func(ago time.Duration) func(*jobs.JobStatus) {
		return func(s *jobs.JobStatus) {
			s.LastStart = now.Add(-ago)
			s.LastResult = state.ResultOK
			s.LastSuccess = now.Add(-ago)
			s.NextRun = now.Add(time.Minute)
		}
	}
	return control.Status{
		Jobs: []jobs.JobStatus{
			job("heartbeat", jobs.StateScheduled, ok(30*time.Second)),
			job("collect", jobs.StateRunning, ok(15*time.Minute)),
			job("flaky-upstream", jobs.StateScheduled, func(s *jobs.JobStatus) {
				s.Schedule = "*/10 * * * *"
				s.LastStart = now.Add(-3 * time.Minute)
				s.LastResult = state.ResultFailed
				s.LastExitCode = 1
				s.LastError = "exit status 1"
				s.ConsecutiveFailures = 3
				s.NextRun = now.Add(7 * time.Minute)
			}),
			job("digest", jobs.StateScheduled, func(s *jobs.JobStatus) {
				s.Schedule = "0 8 * * *"
				s.LastStart = now.Add(-4 * time.Hour)
				s.LastResult = state.ResultTimeout
				s.ConsecutiveFailures = 1
				s.LastError = "timed out after 5m0s"
			}),
			job("nightly-cleanup", jobs.StateFailed, func(s *jobs.JobStatus) {
				s.Schedule = "30 3 * * *"
				s.Problem = `command "cleanup.sh" not found on PATH`
			}),
			job("weekly-backup", jobs.StateDisabled, func(s *jobs.JobStatus) { s.Schedule = "0 4 * * sun" }),
		},
		Listeners: []listeners.Health{
			{Name: "outbox-watcher", Kind: "exec", State: listeners.StateRunning, Since: now.Add(-2 * time.Hour), Handled: 12, LastEvent: now.Add(-5 * time.Minute)},
			{Name: "mentions", Kind: "bluesky", State: listeners.StateBackoff, Since: now.Add(-20 * time.Second), Restarts: 4, LastError: "dial tcp 127.0.0.1:1: connect: connection refused"},
			{Name: "discord-bot", Kind: "discord", State: listeners.StateFailed, Since: now.Add(-time.Minute), Restarts: 1, LastError: hostileError},
			{Name: "twitch-chat", Kind: "twitch", State: listeners.StateDisabled, Since: now.Add(-2 * time.Hour)},
		},
	}
}

// fakeRuns returns made-up histories of 25 runs per job, where
// flaky-upstream fails every third run and the newest run of collect is
// still running. nightly-cleanup and weekly-backup have no runs, and
// reading those of digest fails.
func fakeRuns(now time.Time) Runs {
	results := []string{state.ResultOK, state.ResultOK, state.ResultFailed}
	return func(name string, n int) ([]state.Run, error) {
		switch name {
		case "nightly-cleanup", "weekly-backup":
			return nil, nil
		case "digest":
			return nil, errors.New("read runs of job digest: store closed")
		}
		var runs []state.Run
		for i := range 25 {
			run := state.Run{
				ID: strconv.Itoa(100 - i), Job: name, Trigger: state.TriggerSchedule,
				Start: now.Add(-time.Duration(i+1) * 10 * time.Minute), Result: state.ResultOK,
				Duration: time.Duration(i*137) * time.Millisecond,
			}
			if name == "flaky-upstream" {
				run.Result = results[i%3]
				run.ExitCode = 1
			}
			if name == "collect" && i == 0 {
				run.Result = state.ResultRunning
			}
			runs = append(runs, run)
		}
		return runs[:min(n, len(runs))], nil
	}
}

func TestStatusPageHTML(t *testing.T) {
	now := time.Now()
	source := &fakeSource{}
	source.set(pageStatus(now), nil)
	base := startServer(t, source.get, NewMetrics(), WithRuns(fakeRuns(now)))

	resp, body := get(t, base+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	page := string(body)
	if !strings.Contains(page, `<meta http-equiv="refresh" content="10">`) {
		t.Error("page has no 10 s refresh")
	}
	if strings.Contains(page, "<img") {
		t.Error("page contains an unescaped <img> from a listener error")
	}
	if !strings.Contains(page, "&lt;img src=x") {
		t.Error("page does not show the escaped listener error")
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("page refers to an external URL")
	}
	for _, title := range []string{"schedule: failed in 274ms (exit 1)", "schedule: running", "schedule: ok in 137ms"} {
		if !strings.Contains(page, title) {
			t.Errorf("page has no run tooltip containing %q", title)
		}
	}
	if !strings.Contains(page, "Unhealthy: 3 of 6 jobs and 2 of 4 listeners unhealthy") {
		t.Errorf("page has no unhealthy summary line:\n%s", page)
	}
}

func TestStatusPageWithoutRuns(t *testing.T) {
	source := &fakeSource{}
	source.set(pageStatus(time.Now()), nil)
	base := startServer(t, source.get, NewMetrics())

	resp, body := get(t, base+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	if strings.Contains(string(body), `class="run `) {
		t.Error("page draws run cells without a Runs option")
	}
}

// chromium returns the path of Debian's chromium. It skips the test when
// chromium is missing, but fails it under CI, where a skip would hide
// that the browser test never ran.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chromium not found (%v): install Debian's chromium package", err)
	}
	t.Skipf("chromium not found (%v); install Debian's chromium package to run this test", err)
	return ""
}

// runChromium runs headless chromium with args and returns its standard
// output. Chromium gets a fresh profile and home folder, and its host
// resolver fails every name except 127.0.0.1, so it loads nothing but the
// test server.
func runChromium(t *testing.T, browser string, args ...string) []byte {
	t.Helper()
	home := t.TempDir()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage",
		"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
		"--user-data-dir=" + filepath.Join(home, "profile"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"), "XDG_CACHE_HOME="+filepath.Join(home, "cache"))
	// Chromium starts helper processes, so a timeout kills its whole
	// process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

var (
	rowPattern   = regexp.MustCompile(`<tr\b[^>]*\bdata-(job|listener)="([^"]*)"[^>]*\bdata-state="([^"]*)"`)
	runPattern   = regexp.MustCompile(`<span class="run (\w+)" data-result="(\w+)"`)
	imagePattern = regexp.MustCompile(`(?i)<img\b`)
)

// domRow is one job or listener row of the rendered page.
type domRow struct {
	state string
	// results are the data-result values of the row's timeline, oldest
	// first.
	results []string
}

// parseRows finds the job and listener rows in a DOM dump, keyed by
// "job NAME" or "listener NAME".
func parseRows(dom string) map[string]domRow {
	rows := make(map[string]domRow)
	for chunk := range strings.SplitSeq(dom, "<tr") {
		chunk = "<tr" + chunk
		match := rowPattern.FindStringSubmatch(chunk)
		if match == nil {
			continue
		}
		row := domRow{state: match[3]}
		for _, run := range runPattern.FindAllStringSubmatch(chunk, -1) {
			row.results = append(row.results, run[2])
		}
		rows[match[1]+" "+match[2]] = row
	}
	return rows
}

func TestStatusPageInChromium(t *testing.T) {
	browser := chromium(t)
	now := time.Now()
	source := &fakeSource{}
	source.set(pageStatus(now), nil)
	base := startServer(t, source.get, NewMetrics(), WithRuns(fakeRuns(now)))
	url := base + "/"

	dom := string(runChromium(t, browser, "--dump-dom", url))
	rows := parseRows(dom)
	wantStates := map[string]string{
		"job heartbeat":           jobs.StateScheduled,
		"job collect":             jobs.StateRunning,
		"job flaky-upstream":      jobs.StateScheduled,
		"job digest":              jobs.StateScheduled,
		"job nightly-cleanup":     jobs.StateFailed,
		"job weekly-backup":       jobs.StateDisabled,
		"listener outbox-watcher": listeners.StateRunning,
		"listener mentions":       listeners.StateBackoff,
		"listener discord-bot":    listeners.StateFailed,
		"listener twitch-chat":    listeners.StateDisabled,
	}
	if len(rows) != len(wantStates) {
		t.Errorf("DOM has %d rows, want %d:\n%s", len(rows), len(wantStates), dom)
	}
	for key, want := range wantStates {
		row, ok := rows[key]
		if !ok {
			t.Errorf("DOM has no row for %s", key)
			continue
		}
		if row.state != want {
			t.Errorf("%s has data-state %q, want %q", key, row.state, want)
		}
	}

	if got := len(rows["job heartbeat"].results); got != timelineRuns {
		t.Errorf("heartbeat timeline has %d runs, want %d", got, timelineRuns)
	}
	collect := rows["job collect"].results
	if len(collect) == 0 || collect[len(collect)-1] != state.ResultRunning {
		t.Errorf("collect timeline = %v, want the running run last", collect)
	}
	if got := len(rows["job weekly-backup"].results); got != 0 {
		t.Errorf("weekly-backup timeline has %d runs, want none", got)
	}
	if !strings.Contains(dom, "history unavailable") {
		t.Error("DOM does not say that the digest history is unavailable")
	}
	if imagePattern.MatchString(dom) {
		t.Error("DOM contains an <img> element from an unescaped listener error")
	}
	if !strings.Contains(dom, `data-healthy="false"`) {
		t.Error("DOM summary is not marked unhealthy")
	}

	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	runChromium(t, browser, "--screenshot="+shot, "--window-size=1280,900", url)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("read screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot %s is not a PNG", shot)
	}
	t.Logf("screenshot: %s (%s)", shot, fmt.Sprintf("%d bytes", len(png)))
}
