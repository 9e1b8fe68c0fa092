package jobs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// Variables every child gets, describing its run.
const (
	envRunID   = "AGENT_RUNNER_RUN_ID"
	envJob     = "AGENT_RUNNER_JOB"
	envTrigger = "AGENT_RUNNER_TRIGGER"
	envSlot    = "AGENT_RUNNER_SLOT"
	envJobDir  = "AGENT_RUNNER_JOB_DIR"
)

// passedEnv names the daemon's variables every child gets when they are
// set, so locale and home-relative tools work without inherit_env.
var passedEnv = []string{"HOME", "USER", "LANG", "TZ"}

const (
	// maxLineBytes splits longer lines, so a child that never prints a
	// newline cannot grow a buffer without bound.
	maxLineBytes = 64 << 10
	// maxLoggedLines caps how many output lines of one run reach the log;
	// the run record keeps the tail and a manual run streams everything.
	maxLoggedLines = 1000
	// maxLoggedLineBytes caps one output line in the log.
	maxLoggedLineBytes = 2048
	// tailBytes is how much of a run's output the run record keeps.
	tailBytes = 64 << 10
	// pipeDrainTimeout bounds the wait for output after every process of
	// the run is gone, in case an unknown process still holds a pipe.
	pipeDrainTimeout = 2 * time.Second
)

// Line is one line of a child's output.
type Line struct {
	Stream string `json:"stream"`
	Text   string `json:"text"`
}

// stopCause is the cancellation cause of a run's context: why it was
// stopped and how long its process group gets between SIGTERM and SIGKILL.
type stopCause struct {
	result string
	reason string
	grace  time.Duration
}

func (c *stopCause) Error() string { return c.reason }

// execOutcome is what running a child produced.
type execOutcome struct {
	result   string
	exitCode int
	err      error
}

// process is one started child with its output readers.
type process struct {
	cmd     *exec.Cmd
	readers sync.WaitGroup
	pipes   []*os.File
}

// runCommand runs the job's command for run and reports each output line
// to emit. It returns when the child and every process it left behind are
// gone, or were killed.
func (r *Runner) runCommand(ctx context.Context, job *config.Job, run state.Run, emit func(Line)) execOutcome {
	cmd, err := r.buildCommand(job, run)
	if err != nil {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: err}
	}
	proc, err := r.start(cmd, emit)
	if err != nil {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: fmt.Errorf("start command: %w", err)}
	}
	waitErr := r.wait(ctx, proc)
	r.cleanup(proc, run.ID)
	proc.drain()
	return outcomeOf(ctx, waitErr, cmd)
}

func (r *Runner) buildCommand(job *config.Job, run state.Run) (*exec.Cmd, error) {
	env, err := r.environment(job, run)
	if err != nil {
		return nil, err
	}
	path, err := config.LookPath(job.Command[0], job.WorkingDir, searchPath(env))
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        job.Command,
		Env:         env,
		Dir:         job.WorkingDir,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	return cmd, nil
}

// environment builds the child's variables: the run's own first (so the
// leftover scan finds its marker quickly), then PATH, the passed-through
// daemon variables, env_file and finally the job's env.
func (r *Runner) environment(job *config.Job, run state.Run) ([]string, error) {
	jobDir := filepath.Join(r.settings.StateDir, "jobs", job.Name)
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		return nil, fmt.Errorf("create job folder: %w", err)
	}
	env := []string{
		envRunID + "=" + run.ID,
		envJob + "=" + job.Name,
		envTrigger + "=" + run.Trigger,
		envJobDir + "=" + jobDir,
		"PATH=" + strings.Join(r.settings.Path, ":"),
	}
	if !run.Slot.IsZero() {
		env = append(env, envSlot+"="+run.Slot.UTC().Format(time.RFC3339))
	}
	for _, name := range append(passedEnv, job.InheritEnv...) {
		if value, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+value)
		}
	}
	if job.EnvFile != "" {
		fileEnv, err := config.ReadEnvFile(job.EnvFile)
		if err != nil {
			return nil, err
		}
		for _, name := range sortedKeys(fileEnv) {
			env = append(env, name+"="+fileEnv[name])
		}
	}
	for _, name := range sortedKeys(job.Env) {
		env = append(env, name+"="+job.Env[name].Reveal())
	}
	// exec.Cmd keeps the last of duplicate names, so later sources win.
	return env, nil
}

// searchPath returns the PATH in env, which the job's own env may have
// replaced.
func searchPath(env []string) []string {
	path := ""
	for _, kv := range env {
		if value, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = value
		}
	}
	return filepath.SplitList(path)
}

// start starts cmd with a pipe per stream and a reader for each.
func (r *Runner) start(cmd *exec.Cmd, emit func(Line)) (*process, error) {
	proc := &process{cmd: cmd}
	var writers []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		pr, pw, err := os.Pipe()
		if err != nil {
			proc.closePipes(writers)
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		proc.pipes = append(proc.pipes, pr)
		writers = append(writers, pw)
		proc.readers.Add(1)
		go proc.read(pr, stream, emit)
	}
	cmd.Stdout, cmd.Stderr = writers[0], writers[1]
	err := r.reaper.Start(cmd)
	// The child holds its own copies; the parent's must close, or the
	// readers would never see end of file.
	for _, w := range writers {
		w.Close()
	}
	if err != nil {
		proc.closePipes(nil)
		proc.readers.Wait()
		return nil, err
	}
	return proc, nil
}

func (p *process) read(pipe *os.File, stream string, emit func(Line)) {
	defer p.readers.Done()
	reader := bufio.NewReaderSize(pipe, maxLineBytes)
	for {
		chunk, err := reader.ReadSlice('\n')
		if len(chunk) > 0 {
			text := strings.TrimSuffix(string(chunk), "\n")
			emit(Line{Stream: stream, Text: strings.TrimSuffix(text, "\r")})
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (p *process) closePipes(extra []*os.File) {
	for _, f := range append(p.pipes, extra...) {
		f.Close()
	}
}

// drain waits for the readers to reach end of file, and cuts them off when
// a process nobody could find still holds a pipe open.
func (p *process) drain() {
	done := make(chan struct{})
	go func() {
		p.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(pipeDrainTimeout):
		p.closePipes(nil)
		<-done
	}
	p.closePipes(nil)
}

// wait waits for the child, and on cancellation sends SIGTERM to its
// process group, then SIGKILL once the cause's grace period is over.
func (r *Runner) wait(ctx context.Context, proc *process) error {
	exited := make(chan error, 1)
	go func() { exited <- proc.cmd.Wait() }()
	defer r.reaper.Untrack(proc.cmd.Process.Pid)

	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
	}
	pgid := proc.cmd.Process.Pid
	_ = unix.Kill(-pgid, unix.SIGTERM)
	grace := r.settings.KillGrace
	var cause *stopCause
	if errors.As(context.Cause(ctx), &cause) {
		grace = cause.grace
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case err := <-exited:
		return err
	case <-timer.C:
	case <-r.killNow:
	}
	_ = unix.Kill(-pgid, unix.SIGKILL)
	return <-exited
}

// cleanup stops whatever the run left behind: members of its process
// group, then escapees that left the group but carry its run ID.
func (r *Runner) cleanup(proc *process, runID string) {
	pgid := proc.cmd.Process.Pid
	if unix.Kill(-pgid, 0) == nil {
		_ = unix.Kill(-pgid, unix.SIGTERM)
		if !waitGroupGone(pgid, r.settings.KillGrace) {
			_ = unix.Kill(-pgid, unix.SIGKILL)
			waitGroupGone(pgid, time.Second)
		}
	}
	if n := r.reaper.KillLeftovers(runID, r.settings.KillGrace); n > 0 {
		r.log.Warn("killed processes left by a run", "run", runID, "count", n)
	}
}

// waitGroupGone polls until the process group is empty. Exited members
// that are still zombies count as gone.
func waitGroupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !groupHasLiveMember(pgid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func groupHasLiveMember(pgid int) bool {
	if unix.Kill(-pgid, 0) != nil {
		return false
	}
	for _, pid := range groupMembers(pgid) {
		if !isZombie(pid) {
			return true
		}
	}
	return false
}

// groupMembers lists the processes of a process group from /proc.
func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		fields := statFields(pid)
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// outcomeOf classifies how the child ended.
func outcomeOf(ctx context.Context, waitErr error, cmd *exec.Cmd) execOutcome {
	code := exitCode(cmd.ProcessState)
	if ctx.Err() != nil {
		var cause *stopCause
		if errors.As(context.Cause(ctx), &cause) {
			return execOutcome{result: cause.result, exitCode: code, err: cause}
		}
		// A caller that cancels without a cause, such as a control client
		// that hung up, interrupted the run.
		return execOutcome{result: state.ResultInterrupted, exitCode: code, err: context.Cause(ctx)}
	}
	if waitErr == nil {
		return execOutcome{result: state.ResultOK, exitCode: 0}
	}
	var exitErr *exec.ExitError
	if !errors.As(waitErr, &exitErr) {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: fmt.Errorf("wait for command: %w", waitErr)}
	}
	return execOutcome{result: state.ResultFailed, exitCode: code, err: exitReason(cmd.ProcessState)}
}

// exitCode follows the shell's convention: the child's status, or 128+N
// when signal N killed it.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if status, ok := ps.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return 128 + int(status.Signal())
	}
	return ps.ExitCode()
}

func exitReason(ps *os.ProcessState) error {
	if status, ok := ps.Sys().(syscall.WaitStatus); ok && status.Signaled() {
		return fmt.Errorf("killed by signal %s", status.Signal())
	}
	return fmt.Errorf("exit status %d", ps.ExitCode())
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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
