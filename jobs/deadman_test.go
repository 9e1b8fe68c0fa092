package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
	"golang.org/x/sys/unix"
)

func TestExpectFileUpdatedUntouchedFails(t *testing.T) {
	out := filepath.Join(t.TempDir(), "digest.json")
	if err := os.WriteFile(out, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	job := shellJob("digest", "exit 0")
	job.ExpectFileUpdated = out
	r, store := newTestRunner(t, job)

	run := runManual(t, r, "digest", nil)
	if run.Result != state.ResultFailed {
		t.Errorf("result: got %q, want failed", run.Result)
	}
	if run.ExitCode != 0 {
		t.Errorf("exit code: got %d, want 0", run.ExitCode)
	}
	if want := "exited 0 but did not update " + out; run.Error != want {
		t.Errorf("error: got %q, want %q", run.Error, want)
	}
	st, _, _ := store.Job("digest")
	if st.LastResult != state.ResultFailed {
		t.Errorf("stored result: got %q, want failed", st.LastResult)
	}
}

func TestExpectFileUpdatedMissingFails(t *testing.T) {
	job := shellJob("digest", "exit 0")
	job.ExpectFileUpdated = filepath.Join(t.TempDir(), "never-written.json")
	r, _ := newTestRunner(t, job)

	if run := runManual(t, r, "digest", nil); run.Result != state.ResultFailed {
		t.Errorf("result: got %q, want failed", run.Result)
	}
}

func TestExpectFileUpdatedTouchedIsOK(t *testing.T) {
	out := filepath.Join(t.TempDir(), "digest.json")
	if err := os.WriteFile(out, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(out, old, old); err != nil {
		t.Fatal(err)
	}
	job := shellJob("digest", `echo '{"n": 1}' > "$OUT"`)
	job.ExpectFileUpdated = out
	job.Env = map[string]config.Secret{}
	job.InheritEnv = []string{"OUT"}
	t.Setenv("OUT", out)
	r, _ := newTestRunner(t, job)

	run := runManual(t, r, "digest", nil)
	if run.Result != state.ResultOK {
		t.Errorf("result: got %q (%s), want ok", run.Result, run.Error)
	}
}

func TestExpectFileUpdatedKeepsFailure(t *testing.T) {
	job := shellJob("digest", "exit 3")
	job.ExpectFileUpdated = filepath.Join(t.TempDir(), "digest.json")
	r, _ := newTestRunner(t, job)

	run := runManual(t, r, "digest", nil)
	if run.ExitCode != 3 {
		t.Errorf("exit code: got %d, want 3", run.ExitCode)
	}
	if strings.Contains(run.Error, "did not update") {
		t.Errorf("error: got %q, want the exit failure, not the file check", run.Error)
	}
}

func TestStatusOfStaleByMaxAge(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	job := shellJob("digest", "true")
	job.MaxAge = 2 * time.Hour
	tests := []struct {
		name       string
		st         state.JobState
		wantStale  bool
		wantReason string
	}{
		{"recent success", state.JobState{FirstSeen: now.Add(-48 * time.Hour), LastSuccess: now.Add(-time.Hour)}, false, ""},
		{"old success", state.JobState{FirstSeen: now.Add(-48 * time.Hour), LastSuccess: now.Add(-3 * time.Hour)}, true, "no successful run for 3h (max_age 2h)"},
		{"never succeeded, new", state.JobState{FirstSeen: now.Add(-time.Hour)}, false, ""},
		{"never succeeded, old", state.JobState{FirstSeen: now.Add(-150 * time.Minute)}, true, "no successful run for 2h30m (max_age 2h)"},
		{"never seen", state.JobState{}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := StatusOf(job, tt.st, false, time.Time{}, now)
			if status.Stale != tt.wantStale {
				t.Errorf("Stale: got %v, want %v", status.Stale, tt.wantStale)
			}
			if status.StaleReason != tt.wantReason {
				t.Errorf("StaleReason: got %q, want %q", status.StaleReason, tt.wantReason)
			}
		})
	}
}

func TestStatusOfDisabledNeverStale(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	job := shellJob("digest", "true")
	job.MaxAge = time.Hour
	job.Enabled = false
	status := StatusOf(job, state.JobState{FirstSeen: now.Add(-48 * time.Hour)}, false, time.Time{}, now)
	if status.Stale {
		t.Errorf("Stale: got true (%s), want false for a disabled job", status.StaleReason)
	}
}

func TestStatusOfHeartbeat(t *testing.T) {
	// Whole seconds, because the JSON fields below store no fraction.
	now := time.Now().Truncate(time.Second)
	dir := t.TempDir()
	mtimeFile := filepath.Join(dir, "mtime.heartbeat")
	if err := os.WriteFile(mtimeFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	oldFile := filepath.Join(dir, "old.heartbeat")
	if err := os.WriteFile(oldFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	old := now.Add(-time.Hour)
	if err := os.Chtimes(oldFile, old, old); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "beat.json")
	writeJSON := func(text string) {
		t.Helper()
		if err := os.WriteFile(jsonFile, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name       string
		heartbeat  config.Heartbeat
		json       string
		wantReason string
	}{
		{"fresh mtime", config.Heartbeat{File: mtimeFile, MaxAge: 10 * time.Minute}, "", ""},
		{"old mtime", config.Heartbeat{File: oldFile, MaxAge: 10 * time.Minute}, "", "heartbeat file " + oldFile + " is 1h old (max_age 10m)"},
		{"missing file", config.Heartbeat{File: filepath.Join(dir, "none"), MaxAge: time.Minute}, "", "heartbeat file " + filepath.Join(dir, "none") + " is missing"},
		{"fresh unix field", config.Heartbeat{File: jsonFile, MaxAge: 10 * time.Minute, JSONField: "time"}, `{"time": ` + itoa(now.Add(-time.Minute).Unix()) + `}`, ""},
		{"old unix field", config.Heartbeat{File: jsonFile, MaxAge: 10 * time.Minute, JSONField: "time"}, `{"time": ` + itoa(now.Add(-20*time.Minute).Unix()) + `}`, "heartbeat file " + jsonFile + " is 20m old (max_age 10m)"},
		{"old RFC 3339 field", config.Heartbeat{File: jsonFile, MaxAge: 10 * time.Minute, JSONField: "at"}, `{"at": "` + now.Add(-30*time.Minute).UTC().Format(time.RFC3339) + `"}`, "heartbeat file " + jsonFile + " is 30m old (max_age 10m)"},
		{"missing field", config.Heartbeat{File: jsonFile, MaxAge: 10 * time.Minute, JSONField: "time"}, `{"other": 1}`, "read heartbeat: parse " + jsonFile + `: missing field "time"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.json != "" {
				writeJSON(tt.json)
			}
			job := shellJob("digest", "true")
			job.Heartbeat = &tt.heartbeat
			status := StatusOf(job, state.JobState{FirstSeen: now}, false, time.Time{}, now)
			if status.StaleReason != tt.wantReason {
				t.Errorf("StaleReason: got %q, want %q", status.StaleReason, tt.wantReason)
			}
			if status.Stale != (tt.wantReason != "") {
				t.Errorf("Stale: got %v with reason %q", status.Stale, status.StaleReason)
			}
		})
	}
}

func itoa(n int64) string {
	return strconv.FormatInt(n, 10)
}

// TestHeartbeatPipeNotOpened checks that a heartbeat with json_field at
// a path that is no regular file is reported without being opened,
// because opening a device can act on it. inotify reports every open of
// the path.
func TestHeartbeatPipeNotOpened(t *testing.T) {
	now := time.Now()
	pipe := filepath.Join(t.TempDir(), "beat.json")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	watcher, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(watcher)
	if _, err := unix.InotifyAddWatch(watcher, pipe, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	job := shellJob("digest", "true")
	job.Heartbeat = &config.Heartbeat{File: pipe, MaxAge: 10 * time.Minute, JSONField: "time"}

	status := StatusOf(job, state.JobState{FirstSeen: now}, false, time.Time{}, now)
	if want := "not a regular file"; !strings.Contains(status.StaleReason, want) {
		t.Errorf("StaleReason: got %q, want it to contain %q", status.StaleReason, want)
	}
	events := make([]byte, 4096)
	n, err := unix.Read(watcher, events)
	if n > 0 {
		t.Errorf("heartbeat path opened (%d bytes of inotify events); want its type checked before any open", n)
	} else if !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("read inotify events: %v", err)
	}
}
