package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

func runManual(t *testing.T, r *Runner, name string, output func(Line)) state.Run {
	t.Helper()
	run, err := r.Run(context.Background(), Request{Job: name, Trigger: state.TriggerManual, Output: output})
	if err != nil {
		t.Fatalf("Run(%s): %v", name, err)
	}
	return run
}

func TestRunRecordsOutputAndResult(t *testing.T) {
	r, store := newTestRunner(t, shellJob("hello", `echo out-line; echo err-line >&2`))
	var mu sync.Mutex
	var lines []Line
	run := runManual(t, r, "hello", func(l Line) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	})

	if run.Result != state.ResultOK {
		t.Fatalf("result = %q, want ok (error %q)", run.Result, run.Error)
	}
	if !strings.Contains(run.Output, "out-line") || !strings.Contains(run.Output, "err-line") {
		t.Errorf("output tail = %q, want both lines", run.Output)
	}
	want := map[Line]bool{{Stream: "stdout", Text: "out-line"}: true, {Stream: "stderr", Text: "err-line"}: true}
	for _, l := range lines {
		delete(want, l)
	}
	if len(want) != 0 {
		t.Errorf("streamed lines = %v, missing %v", lines, want)
	}
	st, _, err := store.Job("hello")
	if err != nil {
		t.Fatal(err)
	}
	if st.LastResult != state.ResultOK || st.Running {
		t.Errorf("stored state = %+v, want ok and not running", st)
	}
	if !st.LastSlot.IsZero() {
		t.Errorf("manual run moved LastSlot to %v", st.LastSlot)
	}
}

func TestRunExitStatus(t *testing.T) {
	r, _ := newTestRunner(t,
		shellJob("exit3", `exit 3`),
		shellJob("killed", `kill -KILL $$`),
	)
	tests := []struct {
		job  string
		code int
	}{
		{"exit3", 3},
		{"killed", 128 + 9},
	}
	for _, tt := range tests {
		run := runManual(t, r, tt.job, nil)
		if run.Result != state.ResultFailed {
			t.Errorf("%s: result = %q, want failed", tt.job, run.Result)
		}
		if run.ExitCode != tt.code {
			t.Errorf("%s: exit code = %d, want %d", tt.job, run.ExitCode, tt.code)
		}
	}
}

func TestRunCommandNotFound(t *testing.T) {
	job := shellJob("missing", "")
	job.Command = []string{"no-such-command-xyz"}
	r, _ := newTestRunner(t, job)
	run := runManual(t, r, "missing", nil)
	if run.Result != state.ResultFailed {
		t.Fatalf("result = %q, want failed", run.Result)
	}
	if !strings.Contains(run.Error, "not found in PATH /usr/local/bin:/usr/bin:/bin") {
		t.Errorf("error = %q, want it to name the PATH searched", run.Error)
	}
}

func TestRunConfigProblemFailsRun(t *testing.T) {
	job := shellJob("broken", "true")
	job.Problem = errors.New("config.toml:3: jobs.broken.command: command \"x\" not found")
	r, _ := newTestRunner(t, job)
	requests := 0
	r.OnLoadProblem(func() { requests++ })
	run := runManual(t, r, "broken", nil)
	if requests != 1 {
		t.Errorf("the run requested %d rechecks of the problem, want 1", requests)
	}
	if run.Result != state.ResultFailed || !strings.Contains(run.Error, "not found") {
		t.Errorf("run = %q %q, want failed with the problem", run.Result, run.Error)
	}
	if want := "agent-runner reload applies a fix at once"; !strings.Contains(run.Error, want) {
		t.Errorf("error = %q, want it to say %q, since the daemon checks the job only at a load", run.Error, want)
	}
}

// A runner without a daemon loaded the config for this run, so the
// error of a load problem names no reload, which would find no daemon.
func TestStandaloneLoadProblemNoReload(t *testing.T) {
	job := shellJob("broken", "true")
	job.Problem = errors.New("config.toml:3: jobs.broken.command: command \"x\" not found")
	r, _ := newTestRunner(t, job)
	r.SetStandalone()
	run := runManual(t, r, "broken", nil)
	if run.Error != job.Problem.Error() {
		t.Errorf("error = %q, want the problem alone: %q", run.Error, job.Problem)
	}
}

func TestRunEnvironment(t *testing.T) {
	t.Setenv("AR_TEST_PRIVATE", "must-not-pass")
	t.Setenv("AR_TEST_INHERITED", "passed")
	job := shellJob("env", `env`)
	job.InheritEnv = []string{"AR_TEST_INHERITED"}
	job.Env = map[string]config.Secret{"OWN": config.NewSecret("own-value", "inline")}
	r, _ := newTestRunner(t, job)
	run := runManual(t, r, "env", nil)

	for _, want := range []string{
		"AGENT_RUNNER_JOB=env",
		"AGENT_RUNNER_RUN_ID=" + run.ID,
		"AGENT_RUNNER_TRIGGER=manual",
		"AGENT_RUNNER_JOB_DIR=" + filepath.Join(r.settings.StateDir, "jobs", "env"),
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"AR_TEST_INHERITED=passed",
		"OWN=own-value",
	} {
		if !strings.Contains(run.Output, want+"\n") {
			t.Errorf("environment lacks %s", want)
		}
	}
	if strings.Contains(run.Output, "AR_TEST_PRIVATE") {
		t.Errorf("environment has a daemon variable that was not inherited")
	}
}

func TestRunTimeoutKillsGroupAndEscapee(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	// One grandchild stays in the job's process group; the other leaves
	// it with setsid, as a daemonizing script does.
	job := shellJob("slow", fmt.Sprintf(`
		sleep 300 & echo $! >> %[1]s
		setsid sh -c 'echo $$ >> %[1]s; exec sleep 301' &
		sleep 300`, pidFile))
	job.Timeout = 500 * time.Millisecond
	r, store := newTestRunner(t, job)

	start := time.Now()
	run := runManual(t, r, "slow", nil)
	if run.Result != state.ResultTimeout {
		t.Errorf("result = %q, want timeout", run.Result)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("run took %v; the timeout is 500ms", elapsed)
	}
	pids := readPids(t, pidFile, 2)
	waitDead(t, pids...)

	st, _, _ := store.Job("slow")
	if st.LastResult != state.ResultTimeout || st.ConsecutiveFailures != 1 {
		t.Errorf("stored state = %+v, want timeout counted as a failure", st)
	}
}

func TestRunKillsEscapeeAfterNormalExit(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	job := shellJob("forker", fmt.Sprintf(`setsid sh -c 'echo $$ >> %s; exec sleep 300' & sleep 0.2; exit 0`, pidFile))
	r, _ := newTestRunner(t, job)
	run := runManual(t, r, "forker", nil)
	if run.Result != state.ResultOK {
		t.Errorf("result = %q, want ok", run.Result)
	}
	waitDead(t, readPids(t, pidFile, 1)...)
}

func TestRunTermIgnoredGetsKill(t *testing.T) {
	job := shellJob("stubborn", `trap '' TERM; sleep 300 & while :; do sleep 1; done`)
	job.Timeout = 300 * time.Millisecond
	r, _ := newTestRunner(t, job)
	start := time.Now()
	run := runManual(t, r, "stubborn", nil)
	if run.Result != state.ResultTimeout {
		t.Errorf("result = %q, want timeout", run.Result)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("run took %v, want SIGKILL after the 300ms grace", elapsed)
	}
}

func TestRunLongLineWithoutNewline(t *testing.T) {
	job := shellJob("flood", `head -c 1048576 /dev/zero | tr '\0' a`)
	r, _ := newTestRunner(t, job)
	var count, longest int
	run := runManual(t, r, "flood", func(l Line) {
		count++
		longest = max(longest, len(l.Text))
	})
	if run.Result != state.ResultOK {
		t.Fatalf("result = %q (%s), want ok", run.Result, run.Error)
	}
	if longest > process.MaxLineBytes {
		t.Errorf("longest line = %d bytes, want at most %d", longest, process.MaxLineBytes)
	}
	if count != 1<<20/process.MaxLineBytes {
		t.Errorf("line count = %d, want %d chunks", count, 1<<20/process.MaxLineBytes)
	}
	if len(run.Output) > tailBytes {
		t.Errorf("stored output = %d bytes, want at most %d", len(run.Output), tailBytes)
	}
}

func TestOverlapSkipsScheduledRun(t *testing.T) {
	dir := t.TempDir()
	release := filepath.Join(dir, "release")
	job := shellJob("long", fmt.Sprintf(`while [ ! -e %s ]; do sleep 0.05; done`, release))
	r, store := newTestRunner(t, job)

	done := make(chan state.Run)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerManual})
		done <- run
	}()
	waitRunning(t, r, "long")

	slot := time.Now().Truncate(time.Minute)
	skipped, err := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerSchedule, Slot: slot})
	if err != nil {
		t.Fatalf("scheduled Run: %v", err)
	}
	if skipped.Result != state.ResultSkipped {
		t.Errorf("scheduled run result = %q, want skipped", skipped.Result)
	}
	st, _, _ := store.Job("long")
	if !st.LastSlot.Equal(slot) {
		t.Errorf("LastSlot = %v, want the skipped slot %v", st.LastSlot, slot)
	}

	_, err = r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerManual})
	if !errors.Is(err, ErrBusy) {
		t.Errorf("second manual Run error = %v, want ErrBusy", err)
	}

	waited := make(chan state.Run)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "long", Trigger: state.TriggerManual, Wait: true})
		waited <- run
	}()
	os.WriteFile(release, nil, 0o600)
	if run := <-done; run.Result != state.ResultOK {
		t.Errorf("first run result = %q, want ok", run.Result)
	}
	if run := <-waited; run.Result != state.ResultOK {
		t.Errorf("waiting run result = %q, want ok", run.Result)
	}
}

func TestPanicIsRecovered(t *testing.T) {
	r, store := newTestRunner(t, shellJob("boom", "true"))
	r.execute = func(context.Context, *config.Job, state.Run, func(Line)) execOutcome {
		panic("kaboom")
	}
	run := runManual(t, r, "boom", nil)
	if run.Result != state.ResultPanic {
		t.Errorf("result = %q, want panic", run.Result)
	}
	if !strings.Contains(run.Error, "kaboom") || !strings.Contains(run.Error, "runner_test.go") {
		t.Errorf("error = %q, want the panic value and a stack", run.Error)
	}
	st, _, _ := store.Job("boom")
	if st.Running || st.LastResult != state.ResultPanic {
		t.Errorf("stored state = %+v, want panic recorded and not running", st)
	}

	r.execute = r.runCommand
	if run := runManual(t, r, "boom", nil); run.Result != state.ResultOK {
		t.Errorf("run after panic: result = %q, want ok", run.Result)
	}
}

func TestOutputHandlerPanicFailsRun(t *testing.T) {
	r, _ := newTestRunner(t, shellJob("chatty", "echo one; echo two"))
	run := runManual(t, r, "chatty", func(Line) { panic("handler broke") })
	if run.Result != state.ResultPanic || !strings.Contains(run.Error, "handler broke") {
		t.Errorf("run = %q %q, want panic from the handler", run.Result, run.Error)
	}
}

func TestShutdownInterruptsRun(t *testing.T) {
	r, store := newTestRunner(t, shellJob("sleeper", "sleep 300"))
	done := make(chan state.Run)
	go func() {
		run, _ := r.Run(context.Background(), Request{Job: "sleeper", Trigger: state.TriggerManual})
		done <- run
	}()
	waitRunning(t, r, "sleeper")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r.Shutdown(ctx)
	run := <-done
	if run.Result != state.ResultInterrupted {
		t.Errorf("result = %q, want interrupted", run.Result)
	}
	st, _, _ := store.Job("sleeper")
	if st.ConsecutiveFailures != 0 {
		t.Errorf("interrupted run counted as failure: %+v", st)
	}
	if _, err := r.Run(context.Background(), Request{Job: "sleeper", Trigger: state.TriggerManual}); !errors.Is(err, ErrStopping) {
		t.Errorf("Run after Shutdown error = %v, want ErrStopping", err)
	}
}

func TestCancelInterruptsRun(t *testing.T) {
	r, _ := newTestRunner(t, shellJob("sleeper", "sleep 300"))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitRunning(t, r, "sleeper")
		cancel()
	}()
	run, err := r.Run(ctx, Request{Job: "sleeper", Trigger: state.TriggerManual})
	if err != nil {
		t.Fatal(err)
	}
	if run.Result != state.ResultInterrupted {
		t.Errorf("result = %q, want interrupted", run.Result)
	}
}

func waitRunning(t *testing.T, r *Runner, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, running := range r.Running() {
			if running == name {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s never started running", name)
}

func readPids(t *testing.T, path string, want int) []int {
	t.Helper()
	var pids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(pids) < want && time.Now().Before(deadline) {
		pids = pids[:0]
		data, _ := os.ReadFile(path)
		for _, field := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(field); err == nil {
				pids = append(pids, pid)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(pids) < want {
		t.Fatalf("read %d pids from %s, want %d", len(pids), path, want)
	}
	return pids
}

// recordingPoster records the text of each post.
type recordingPoster struct {
	mu    sync.Mutex
	texts []string
}

func (p *recordingPoster) Post(_ context.Context, via, _, text string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.texts = append(p.texts, text)
	return via, nil
}

func TestPostTextRedactsSecrets(t *testing.T) {
	job := shellJob("post", "")
	job.Command = nil
	job.Post = &config.Post{Via: "chat", TextCommand: []string{"sh", "-c", `echo "key is $TOKEN"`}}
	job.Env = map[string]config.Secret{"TOKEN": config.NewSecret("S3CRET-value-xyz", "file /run/keys/token")}
	_, texts := runPostJob(t, job)
	if len(texts) != 1 {
		t.Fatalf("posts = %q, want one", texts)
	}
	if got, want := texts[0], "key is [redacted]"; got != want {
		t.Errorf("posted text = %q, want %q", got, want)
	}
}

// runPostJob runs the post job by hand with a recording poster and
// returns the run and the texts it posted.
func runPostJob(t *testing.T, job *config.Job) (state.Run, []string) {
	t.Helper()
	r, _ := newTestRunner(t, job)
	poster := &recordingPoster{}
	r.SetPoster(poster)

	run := runManual(t, r, job.Name, nil)
	if run.Result != state.ResultOK {
		t.Fatalf("result = %s (%s), want ok", run.Result, run.Error)
	}
	poster.mu.Lock()
	defer poster.mu.Unlock()
	return run, slices.Clone(poster.texts)
}

// A post job's text_command that prints a token from its env_file posts
// and logs it redacted.
func TestPostTextRedactsEnvFileSecrets(t *testing.T) {
	job := shellJob("post", "")
	job.Command = nil
	job.Post = &config.Post{Via: "chat", TextCommand: []string{"sh", "-c", `echo "key is $BOT_TOKEN"`}}
	job.EnvFile = filepath.Join(t.TempDir(), "post.env")
	if err := os.WriteFile(job.EnvFile, []byte("BOT_TOKEN=env-file-token-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run, texts := runPostJob(t, job)
	if len(texts) != 1 || texts[0] != "key is [redacted]" {
		t.Errorf("posts = %q, want the token redacted", texts)
	}
	if strings.Contains(run.Output, "env-file-token-value") {
		t.Errorf("stored output %q holds the token", run.Output)
	}
}

func TestSecretValuesAreRedactedFromOutput(t *testing.T) {
	job := shellJob("leaky", `echo "token is $TOKEN"; echo "$TOKEN" >&2`)
	job.Env = map[string]config.Secret{
		"TOKEN": config.NewSecret("S3CRET-value-xyz", "file /run/keys/token"),
		"PLAIN": config.NewSecret("visible", "inline"),
		"TINY":  config.NewSecret("ab", "env TINY"),
	}
	r, _ := newTestRunner(t, job)
	var mu sync.Mutex
	var streamed []string
	run := runManual(t, r, "leaky", func(l Line) {
		mu.Lock()
		defer mu.Unlock()
		streamed = append(streamed, l.Text)
	})
	if strings.Contains(run.Output, "S3CRET") {
		t.Errorf("stored output %q holds the secret", run.Output)
	}
	if !strings.Contains(run.Output, "token is [redacted]") {
		t.Errorf("stored output = %q, want the secret replaced", run.Output)
	}
	for _, line := range streamed {
		if strings.Contains(line, "S3CRET") {
			t.Errorf("streamed line %q holds the secret", line)
		}
	}
}
