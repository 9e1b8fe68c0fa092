package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agent-runner/agent-runner/process"
)

const (
	// execGrace is the time between SIGTERM and SIGKILL for an alert
	// command that overruns its timeout. It is short because shutdown
	// waits for it.
	execGrace = time.Second
	// maxQuotedOutputBytes bounds the command output quoted in an error.
	maxQuotedOutputBytes = 512
)

// Variables every alert command gets, besides the alert on stdin.
const (
	envAlertID    = "AGENT_RUNNER_ALERT_ID"
	envAlertSink  = "AGENT_RUNNER_ALERT_SINK"
	envAlertKey   = "AGENT_RUNNER_ALERT_KEY"
	envAlertEvent = "AGENT_RUNNER_ALERT_EVENT"
)

// execSink runs a command per alert, with the alert as JSON on stdin.
type execSink struct {
	name          string
	command       []string
	reaper        *process.Reaper
	settings      process.Settings
	timeout       time.Duration
	marker        string
	includeOutput bool
	sequence      atomic.Uint64
}

// NewExec returns a sink that runs cfg.Command for each alert under
// reaper, with PATH set to path, in workDir, and the daemon's usual child
// environment with marker, the entry by which a later daemon finds a
// command this one left running. It fails when the command cannot be
// found on path.
func NewExec(cfg SinkConfig, reaper *process.Reaper, path []string, workDir, marker string) (Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Kind != SinkExec {
		return nil, fmt.Errorf("invalid alert sink %q: kind %q is not %q", cfg.Name, cfg.Kind, SinkExec)
	}
	if reaper == nil {
		return nil, errors.New("create exec alert sink: missing process reaper")
	}
	cfg = cfg.withDefaults()
	s := &execSink{
		name:          cfg.Name,
		command:       cfg.Command,
		reaper:        reaper,
		settings:      process.Settings{Path: path, WorkingDir: workDir},
		marker:        marker,
		timeout:       cfg.Timeout,
		includeOutput: cfg.IncludeOutput,
	}
	if _, err := s.resolve(nil); err != nil {
		return nil, fmt.Errorf("invalid alert sink %q: %w", cfg.Name, err)
	}
	return s, nil
}

func (s *execSink) Name() string { return s.name }

// resolve builds the child's environment around vars and finds the
// program on its PATH. Send repeats it, so a program installed after
// startup is found.
func (s *execSink) resolve(vars []string) (process.Spec, error) {
	if s.marker != "" {
		vars = append([]string{s.marker}, vars...)
	}
	// The settings have no env_file or inherit_env, so no secrets.
	env, _, err := process.Environment(s.settings, vars)
	if err != nil {
		return process.Spec{}, err
	}
	path, err := process.Resolve(s.command[0], s.settings.WorkingDir, env)
	if err != nil {
		return process.Spec{}, err
	}
	return process.Spec{
		Path:  path,
		Args:  s.command,
		Dir:   s.settings.WorkingDir,
		Env:   env,
		Grace: execGrace,
	}, nil
}

// Send runs the command once. A non-zero exit, a timeout or a failed start
// is an error, which the dispatcher retries.
func (s *execSink) Send(ctx context.Context, a Alert) error {
	if !s.includeOutput {
		a.Output = ""
	}
	input, err := json.Marshal(a)
	if err != nil {
		return &PermanentError{Err: fmt.Errorf("encode alert for sink %q: %w", s.name, err)}
	}
	marker := envAlertID + "=" + s.name + "-" + strconv.FormatUint(s.sequence.Add(1), 10)
	spec, err := s.resolve([]string{
		marker,
		envAlertSink + "=" + s.name,
		envAlertKey + "=" + a.Key,
		envAlertEvent + "=" + a.Event,
	})
	if err != nil {
		return fmt.Errorf("run alert command for sink %q: %w", s.name, err)
	}
	spec.Stdin = append(input, '\n')
	spec.Marker = marker

	ctx, cancel := context.WithTimeoutCause(ctx, s.timeout,
		fmt.Errorf("alert command timed out after %s", s.timeout))
	defer cancel()
	var output outputTail
	exit, err := s.reaper.Run(ctx, spec, output.add)
	switch {
	case err != nil:
		return fmt.Errorf("run alert command for sink %q: %w", s.name, err)
	case exit.Stopped != nil:
		return fmt.Errorf("run alert command for sink %q: %w%s", s.name, exit.Stopped, output.quote())
	case exit.Err != nil:
		return fmt.Errorf("run alert command for sink %q: %w%s", s.name, exit.Err, output.quote())
	}
	return nil
}

// outputTail keeps the last bytes of a command's output, for the error of
// a failed delivery.
type outputTail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *outputTail) add(line process.Line) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, line.Text...)
	t.buf = append(t.buf, '\n')
	if len(t.buf) > 2*maxQuotedOutputBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-maxQuotedOutputBytes:]...)
	}
}

// quote returns ": output: " and the last output lines on one line, or ""
// when the command printed nothing.
func (t *outputTail) quote() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	text := t.buf
	if len(text) > maxQuotedOutputBytes {
		text = text[len(text)-maxQuotedOutputBytes:]
	}
	joined := strings.Join(strings.Fields(strings.ToValidUTF8(string(text), "")), " ")
	if joined == "" {
		return ""
	}
	return ": output: " + joined
}
