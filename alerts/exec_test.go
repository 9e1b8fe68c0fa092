package alerts

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func execConfig(command ...string) SinkConfig {
	return SinkConfig{Name: "script", Kind: SinkExec, Command: command, Timeout: 5 * time.Second}
}

func newExec(t *testing.T, cfg SinkConfig, dir string) Sink {
	t.Helper()
	sink, err := NewExec(cfg, testReaper, testPath, dir, "")
	if err != nil {
		t.Fatalf("NewExec: %v", err)
	}
	return sink
}

func TestExecSinkReceivesAlertJSON(t *testing.T) {
	for _, includeOutput := range []bool{false, true} {
		dir := t.TempDir()
		cfg := execConfig("sh", "-c", `cat > alert.json && printf %s "$AGENT_RUNNER_ALERT_EVENT" > event.txt`)
		cfg.IncludeOutput = includeOutput
		a := failedAlert("digest", base)
		a.Output = "Error: disk full"

		if err := newExec(t, cfg, dir).Send(context.Background(), a); err != nil {
			t.Fatalf("include_output=%v: Send: %v", includeOutput, err)
		}
		data, err := os.ReadFile(filepath.Join(dir, "alert.json"))
		if err != nil {
			t.Fatalf("read alert the command got: %v", err)
		}
		var got Alert
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("stdin is not one JSON object: %v\n%s", err, data)
		}
		if got.Key != a.Key || got.Event != a.Event || got.Summary != a.Summary {
			t.Errorf("alert: got %+v, want key, event and summary of %+v", got, a)
		}
		if got.RunID != "42" || got.ExitCode != 3 || !got.Time.Equal(base) {
			t.Errorf("alert: got run %q, exit %d, time %s, want run 42, exit 3, time %s", got.RunID, got.ExitCode, got.Time, base)
		}
		wantOutput := ""
		if includeOutput {
			wantOutput = a.Output
		}
		if got.Output != wantOutput {
			t.Errorf("include_output=%v: output: got %q, want %q", includeOutput, got.Output, wantOutput)
		}
		event, _ := os.ReadFile(filepath.Join(dir, "event.txt"))
		if string(event) != EventFailed {
			t.Errorf("AGENT_RUNNER_ALERT_EVENT: got %q, want %q", event, EventFailed)
		}
	}
}

func TestExecSinkFailureRetried(t *testing.T) {
	dir := t.TempDir()
	// The script counts its runs and fails the first two.
	cfg := execConfig("sh", "-c", `n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ "$n" -ge 3 ]`)

	attempts, err, _ := deliverOnce(t, newExec(t, cfg, dir), cfg)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if attempts != 3 {
		t.Errorf("attempts: got %d, want 3", attempts)
	}
	count, _ := os.ReadFile(filepath.Join(dir, "count"))
	if strings.TrimSpace(string(count)) != "3" {
		t.Errorf("runs of the command: got %q, want 3", count)
	}
}

func TestExecSinkErrorQuotesOutput(t *testing.T) {
	cfg := execConfig("sh", "-c", `echo "curl: could not resolve host" >&2; exit 6`)
	err := newExec(t, cfg, t.TempDir()).Send(context.Background(), failedAlert("digest", base))
	if err == nil {
		t.Fatal("Send: got nil error, want exit status 6")
	}
	for _, want := range []string{`"script"`, "exit status 6", "could not resolve host"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error: got %q, want it to contain %q", err, want)
		}
	}
}

func TestExecSinkTimeout(t *testing.T) {
	cfg := execConfig("sleep", "30")
	cfg.Timeout = 200 * time.Millisecond
	start := time.Now()
	err := newExec(t, cfg, t.TempDir()).Send(context.Background(), failedAlert("digest", base))
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Errorf("error: got %v, want a timeout", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Send took %s, want about the 200ms timeout", took)
	}
}

func TestExecSinkMissingCommand(t *testing.T) {
	_, err := NewExec(execConfig("no-such-alert-program"), testReaper, testPath, t.TempDir(), "")
	if err == nil {
		t.Fatal("NewExec: got nil error, want command not found")
	}
	if !strings.Contains(err.Error(), "no-such-alert-program") || !strings.Contains(err.Error(), `"script"`) {
		t.Errorf("error: got %q, want it to name the sink and the program", err)
	}
}
