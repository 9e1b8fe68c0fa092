package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// Variables every child of a job gets, describing its run.
const (
	envRunID = "AGENT_RUNNER_RUN_ID"
	// envRunMarker carries RunMarker.
	envRunMarker = "AGENT_RUNNER_RUN"
	envJob       = "AGENT_RUNNER_JOB"
	envTrigger   = "AGENT_RUNNER_TRIGGER"
	envSlot      = "AGENT_RUNNER_SLOT"
	envJobDir    = "AGENT_RUNNER_JOB_DIR"
)

const (
	// maxLoggedLines caps how many output lines of one run reach the log;
	// the run record keeps the tail and a manual run streams everything.
	maxLoggedLines = 1000
	// maxLoggedLineBytes caps one output line in the log.
	maxLoggedLineBytes = 2048
	// tailBytes is how much of a run's output the run record keeps.
	tailBytes = 64 << 10
)

// Line is one line of a job's output.
type Line = process.Line

// stopCause is the cancellation cause of a run's context: why it was
// stopped and how long its process group gets between SIGTERM and SIGKILL.
type stopCause struct {
	result string
	reason string
	grace  time.Duration
}

func (c *stopCause) Error() string        { return c.reason }
func (c *stopCause) Grace() time.Duration { return c.grace }

// execOutcome is what running a job's work produced.
type execOutcome struct {
	result   string
	exitCode int
	err      error
}

// runCommand runs the job's command for run and reports each output line
// to emit. It returns when the child and every process it left behind are
// gone, or were killed.
func (r *Runner) runCommand(ctx context.Context, job *config.Job, run state.Run, emit func(Line)) execOutcome {
	if job.Post != nil {
		return r.runPost(ctx, job, run, emit)
	}
	spec, redactor, err := r.commandSpec(job, job.Command, run)
	if err != nil {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: err}
	}
	lines := redactor.Lines(emit)
	exit, err := r.reaper.Run(ctx, spec, lines.Emit)
	lines.Flush()
	if err != nil {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: err}
	}
	return outcomeOf(exit)
}

// commandSpec describes argv run for one run of job, and returns the
// redactor of its output. The redactor is built from the environment the
// child gets, since the values of its env_file and inherit_env whose
// names are secrets are known only once the file is read for this run.
func (r *Runner) commandSpec(job *config.Job, argv []string, run state.Run) (process.Spec, *process.Redactor, error) {
	settings := r.currentSettings()
	jobDir := filepath.Join(settings.StateDir, "jobs", job.Name)
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		return process.Spec{}, nil, fmt.Errorf("create job folder: %w", err)
	}
	if id := job.Identity; id.Set && os.Geteuid() == 0 {
		// NOTE: the user reaches the folder only when it may also pass
		// through state_dir, which doctor wants closed to other users.
		if err := os.Chown(jobDir, int(id.UID), int(id.GID)); err != nil {
			return process.Spec{}, nil, fmt.Errorf("chown job folder: %w", err)
		}
	}
	marker := RunMarker(settings.StateDir, run.ID)
	vars := []string{
		marker,
		envRunID + "=" + run.ID,
		envJob + "=" + job.Name,
		envTrigger + "=" + run.Trigger,
		envJobDir + "=" + jobDir,
	}
	if !run.Slot.IsZero() {
		vars = append(vars, envSlot+"="+run.Slot.UTC().Format(time.RFC3339))
	}
	env, secrets, err := process.Environment(process.Settings{
		Path:       settings.Path,
		WorkingDir: job.WorkingDir,
		Env:        job.Env,
		EnvFile:    job.EnvFile,
		InheritEnv: job.InheritEnv,
		Identity:   job.Identity,
	}, vars)
	if err != nil {
		return process.Spec{}, nil, err
	}
	path, err := process.Resolve(argv[0], job.WorkingDir, env)
	if err != nil {
		if secretPath, ok := job.Env["PATH"]; ok && secretPath.Source != "inline" {
			// A PATH read from a secret source is a secret too.
			return process.Spec{}, nil, fmt.Errorf("command %q not found in the job's PATH from %s", argv[0], secretPath.Source)
		}
		return process.Spec{}, nil, err
	}
	spec := process.Spec{
		Path:     path,
		Args:     argv,
		Dir:      job.WorkingDir,
		Env:      env,
		Marker:   marker,
		Grace:    settings.KillGrace,
		Kill:     r.killNow,
		Identity: job.Identity,
		Limits:   job.Limits,
	}
	return spec, process.NewRedactor(job.Env, secrets...), nil
}

// loadProblemError is a job's problem found when the config was loaded.
// Runs after the user fixed the script or folder still fail with it until
// the daemon checks again. The message, which status, runs and alerts
// show, tells when that is.
type loadProblemError struct{ err error }

func (e loadProblemError) Error() string {
	return e.err.Error() + " (found when the config was loaded; while the config files stay the same, the daemon looks again at the job's runs, at most every 5 s, and agent-runner reload applies a fix at once)"
}

func (e loadProblemError) Unwrap() error { return e.err }

// RunMarker is the environment entry that identifies the processes of a
// run, including ones that left its process group. Run IDs repeat across
// stores, so it also names the state folder, through process.ResolvedDir,
// and a search for it never finds another daemon's runs.
func RunMarker(stateDir, runID string) string {
	return envRunMarker + "=" + runID + "@" + resolvedStateDir(stateDir)
}

// resolvedStateDirs caches process.ResolvedDir of each state folder, which
// costs an lstat per path element, off the path of every run. The state
// folder changes only with a restart.
var resolvedStateDirs sync.Map

func resolvedStateDir(stateDir string) string {
	if resolved, ok := resolvedStateDirs.Load(stateDir); ok {
		return resolved.(string)
	}
	resolved := process.ResolvedDir(stateDir)
	resolvedStateDirs.Store(stateDir, resolved)
	return resolved
}

// RunMarkers returns the entries a search for a run's processes matches:
// RunMarker, and the state folder as given when it differs.
//
// NOTE: processes of runs that a release before AGENT_RUNNER_RUN started
// carry only AGENT_RUNNER_RUN_ID, so a start after an upgrade does not
// find what such a run left behind.
func RunMarkers(stateDir, runID string) []string {
	markers := []string{RunMarker(stateDir, runID)}
	if asWritten := envRunMarker + "=" + runID + "@" + stateDir; asWritten != markers[0] {
		markers = append(markers, asWritten)
	}
	return markers
}

// outcomeOf classifies how the child ended.
func outcomeOf(exit process.Exit) execOutcome {
	if exit.Stopped != nil {
		var cause *stopCause
		if errors.As(exit.Stopped, &cause) {
			return execOutcome{result: cause.result, exitCode: exit.Code, err: cause}
		}
		// A caller that cancels without a stopCause, such as a control
		// client that hung up, interrupted the run.
		return execOutcome{result: state.ResultInterrupted, exitCode: exit.Code, err: exit.Stopped}
	}
	if exit.Err != nil {
		return execOutcome{result: state.ResultFailed, exitCode: exit.Code, err: exit.Err}
	}
	return execOutcome{result: state.ResultOK, exitCode: 0}
}

// tail keeps the last tailBytes of a run's output.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) add(line Line) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, line.Text...)
	t.buf = append(t.buf, '\n')
	if len(t.buf) > 2*tailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBytes:]...)
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) > tailBytes {
		return string(t.buf[len(t.buf)-tailBytes:])
	}
	return string(t.buf)
}
