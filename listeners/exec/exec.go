// Package exec is the listener kind that supervises a long-running child
// process, such as a small web server or a legacy bot, under the same
// process rules as jobs. The supervisor restarts the child when it exits
// or when its probe fails.
package exec

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/process"
)

// probeTimeout bounds one HTTP probe request.
const probeTimeout = 5 * time.Second

// startupProbeInterval is the longest wait between probes until the first
// one passes, so that a child that comes up in a second is not reported
// as starting for a whole probe interval.
const startupProbeInterval = time.Second

// Listener runs one child until it exits, its probe fails, or the context
// ends.
type Listener struct {
	cfg    *config.Listener
	reaper *process.Reaper
	owner  string
	path   []string
	grace  time.Duration
	client *http.Client
}

// New returns the exec listener of cfg. owner is the daemon's
// process.DaemonMarker, path the runner's PATH and grace the default time
// between SIGTERM and SIGKILL.
func New(cfg *config.Listener, reaper *process.Reaper, owner string, path []string, grace time.Duration) (*Listener, error) {
	if cfg.Exec == nil || len(cfg.Exec.Command) == 0 {
		return nil, errors.New("create exec listener: no command configured")
	}
	if cfg.Exec.StopGrace > 0 {
		grace = cfg.Exec.StopGrace
	}
	return &Listener{cfg: cfg, reaper: reaper, owner: owner, path: path, grace: grace, client: &http.Client{Timeout: probeTimeout}}, nil
}

// errProbeFailed is the cause that stops a child whose probe failed.
var errProbeFailed = errors.New("probe failed")

// Run starts the child and waits for it. The child's output goes to the
// listener's log, line by line.
func (l *Listener) Run(ctx context.Context, host listeners.Host) error {
	spec, redactor, err := l.spec()
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	// The probe ends before Run returns. Run's end is the attempt's end,
	// and a probe that passed or failed later would mark the listener
	// running during its backoff, or log that it stopped a child that
	// had already exited.
	var probing sync.WaitGroup
	defer probing.Wait()
	defer stop(nil)

	log := host.Log()
	previous := heartbeatTime(l.cfg.Exec.Probe)
	spec.Started = func(pid int) {
		log.Info("child started", "pid", pid)
		if l.cfg.Exec.Probe == nil {
			host.Ready()
			return
		}
		probing.Go(func() { l.probe(ctx, host, stop, previous) })
	}
	budget := newOutputBudget(time.Now, logDropped(log))
	output := redactor.Lines(func(line process.Line) {
		if budget.take(loggedSize(line.Text)) {
			log.Info("output", "stream", line.Stream, "line", line.Text)
		}
	})
	exit, err := l.reaper.Run(ctx, spec, output.Emit)
	output.Flush()
	budget.flush()
	switch {
	case err != nil:
		return err
	case exit.Stopped != nil && !errors.Is(exit.Stopped, context.Canceled):
		return fmt.Errorf("child stopped: %w", exit.Stopped)
	case exit.Stopped != nil:
		return nil
	case exit.Err != nil:
		return fmt.Errorf("child exited: %w", exit.Err)
	default:
		return errors.New("child exited with status 0")
	}
}

// spec describes the child of one attempt, and returns the redactor of
// its output, built from the env_file as read for this child.
func (l *Listener) spec() (process.Spec, *process.Redactor, error) {
	marker := "AGENT_RUNNER_LISTENER_ID=" + l.cfg.Name + "-" + fmt.Sprint(time.Now().UnixNano())
	env, secrets, err := process.Environment(process.Settings{
		Path: l.path, WorkingDir: l.cfg.WorkingDir, Env: l.cfg.Env,
		EnvFile: l.cfg.EnvFile, InheritEnv: l.cfg.InheritEnv,
		Identity: l.cfg.Exec.Identity,
	}, []string{marker, l.owner, "AGENT_RUNNER_LISTENER=" + l.cfg.Name})
	if err != nil {
		return process.Spec{}, nil, err
	}
	path, err := process.Resolve(l.cfg.Exec.Command[0], l.cfg.WorkingDir, env)
	if err != nil {
		return process.Spec{}, nil, err
	}
	spec := process.Spec{
		Path: path, Args: l.cfg.Exec.Command, Dir: l.cfg.WorkingDir,
		Env: env, Marker: marker, Grace: l.grace,
		Identity: l.cfg.Exec.Identity, Limits: l.cfg.Exec.Limits,
	}
	return spec, process.NewRedactor(l.cfg.Env, secrets...), nil
}

// heartbeatTime returns the modification time of the probe's heartbeat
// file, or the zero time when there is none, the probe is an HTTP one, or
// the file cannot be read.
func heartbeatTime(probe *config.Probe) time.Time {
	if probe == nil || probe.Heartbeat == "" {
		return time.Time{}
	}
	info, err := os.Stat(probe.Heartbeat)
	if err != nil {
		return time.Time{}
	}
	return info.ModTime()
}

// probe checks the child every interval, and at least every second until
// the first success, which marks the listener ready. A failure once the
// grace period is over stops the child, which makes Run return and the
// supervisor restart it.
//
// previous is the heartbeat's time from before the child started. A file
// that the child before touched may still be within max_age, but it is
// no sign that this child works, so it does not make the listener ready.
func (l *Listener) probe(ctx context.Context, host listeners.Host, stop context.CancelCauseFunc, previous time.Time) {
	probe := l.cfg.Exec.Probe
	ready := false
	timer := time.NewTimer(0)
	defer timer.Stop()
	started := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := l.check(ctx, probe)
		if ctx.Err() != nil {
			// The child is stopping or gone, so the result is not reported.
			return
		}
		switch {
		case err == nil && !ready && !previous.IsZero() && heartbeatTime(probe).Equal(previous):
			// Still the previous child's heartbeat: wait for this one's.
		case err == nil && !ready:
			ready = true
			host.Ready()
		case err != nil && time.Since(started) >= probe.Grace:
			host.Log().Warn("probe failed; stopping the child", "err", err)
			stop(fmt.Errorf("%w: %w", errProbeFailed, err))
			return
		}
		next := probe.Interval
		if !ready {
			next = min(next, startupProbeInterval)
		}
		timer.Reset(next)
	}
}

// check runs one probe.
func (l *Listener) check(ctx context.Context, probe *config.Probe) error {
	if probe.Heartbeat != "" {
		info, err := os.Stat(probe.Heartbeat)
		if err != nil {
			return fmt.Errorf("read heartbeat: %w", err)
		}
		if age := time.Since(info.ModTime()); age > probe.MaxAge {
			return fmt.Errorf("heartbeat %s is %s old, more than %s", probe.Heartbeat, age.Round(time.Second), probe.MaxAge)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, probe.HTTP, nil)
	if err != nil {
		return fmt.Errorf("build probe request: %w", err)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("request %s: %w", probe.HTTP, err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("request %s: status %s", probe.HTTP, resp.Status)
	}
	return nil
}
