// Package process starts and stops child processes the way jobs, hooks and
// exec listeners need: in their own process group, with only the
// configured environment, output split into bounded lines, SIGTERM then
// SIGKILL on stop, and nothing left running afterwards.
package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"golang.org/x/sys/unix"
)

const (
	// MaxLineBytes splits longer lines, so a child that never prints a
	// newline cannot grow a buffer without bound.
	MaxLineBytes = 64 << 10
	// pipeDrainTimeout bounds the wait for output after every process of
	// the child is gone, in case an unknown process still holds a pipe.
	pipeDrainTimeout = 2 * time.Second
	// readBufferBytes is the size of each stream's read buffer.
	readBufferBytes = 8 << 10
)

// Line is one line of a child's output.
type Line struct {
	Stream string `json:"stream"`
	Text   string `json:"text"`
}

// Spec describes one child to run.
type Spec struct {
	// Path is the resolved executable; Args[0] is the name it sees.
	Path string
	Args []string
	Dir  string
	Env  []string
	// Stdin is the child's standard input; nil means /dev/null.
	Stdin []byte
	// Marker is a NAME=VALUE entry of Env unique to this child, by which
	// processes that left its group are found after it exits.
	Marker string
	// Grace is the time between SIGTERM and SIGKILL, for a stop and for
	// leftovers. A context cause implementing Graced overrides it for a
	// stop.
	Grace time.Duration
	// Kill, when closed, cuts any grace period short.
	Kill <-chan struct{}
	// Started, when set, gets the child's pid once it runs.
	Started func(pid int)
	// Identity, when set, is the user and groups the child runs as,
	// which needs a runner that runs as root.
	Identity config.Identity
	// Limits are applied between fork and exec, through the shim.
	Limits config.Limits
}

// Graced is implemented by a context cancellation cause that sets its own
// grace period between SIGTERM and SIGKILL.
type Graced interface {
	Grace() time.Duration
}

// Exit is how a child ended.
type Exit struct {
	// Code follows the shell's convention: the exit status, or 128+N when
	// signal N killed the child; -1 when it never started.
	Code int
	// Err describes a non-zero exit, such as "exit status 3"; nil on
	// success.
	Err error
	// Stopped is the context's cause when ctx ended the child, else nil.
	Stopped error
}

// child is one started process.
type child struct {
	cmd   *exec.Cmd
	out   *output
	watch *exitWatch
	// stdin is the child's end of its standard input, /dev/null or the
	// read end of the input pipe, which start closes.
	stdin *os.File
	// input writes Spec.Stdin to the child, or is nil without it.
	input *inputWriter
	// shim is set when cmd starts the program through the shim, and
	// request is then the shim's request, which start closes.
	shim    bool
	request *os.File
}

// Run runs spec until the child exits or ctx ends, calling emit for each
// output line in the calling goroutine. It returns once the child and
// every process it left behind are gone. The error is for a child that
// could not start.
func (r *Reaper) Run(ctx context.Context, spec Spec, emit func(Line)) (Exit, error) {
	c, err := newChild(spec, emit)
	if err != nil {
		return Exit{Code: -1}, fmt.Errorf("start command: %w", err)
	}
	defer c.close()
	cmd := c.cmd
	err = r.start(c)
	if err != nil && !c.shim {
		err = explainStartError(spec, cmd.SysProcAttr.Credential, err)
	}
	if err != nil {
		return Exit{Code: -1}, fmt.Errorf("start command: %w", err)
	}
	defer r.Untrack(cmd.Process.Pid)
	defer r.killOnPanic(c, spec)
	if c.input != nil {
		c.input.start()
	}
	if spec.Started != nil {
		spec.Started(cmd.Process.Pid)
	}
	signalled, waitErr := r.wait(ctx, c, spec)
	r.cleanup(c, spec)
	c.out.drain(pipeDrainTimeout)
	return hintMemoryMax(exitOf(ctx, signalled, waitErr, cmd), spec.Limits), nil
}

// killOnPanic stops what a child left running when emit or Started
// panicked, so that a caller which recovers finds no process left, and
// then passes the panic on. A child not yet reaped still owns its
// process group, which gets SIGKILL; escapees with its marker get it too.
func (r *Reaper) killOnPanic(c *child, spec Spec) {
	v := recover()
	if v == nil {
		return
	}
	if c.cmd.ProcessState == nil {
		_ = unix.Kill(-c.cmd.Process.Pid, unix.SIGKILL)
		_ = c.cmd.Wait()
	}
	if spec.Marker != "" {
		r.KillLeftovers(spec.Marker, 0)
	}
	panic(v)
}

// newChild prepares the run of spec: its command, the pipes of its output
// and the watch of its exit.
func newChild(spec Spec, emit func(Line)) (*child, error) {
	c, err := newCommand(spec)
	if err != nil {
		return nil, err
	}
	if spec.Stdin != nil {
		if c.input, c.stdin, err = newInputWriter(spec.Stdin); err != nil {
			c.close()
			return nil, err
		}
		c.cmd.Stdin = c.stdin
	} else if null, err := openDevNull(); err == nil {
		c.cmd.Stdin, c.stdin = null, null
	}
	if c.out, err = newOutput(emit); err != nil {
		c.close()
		return nil, err
	}
	c.cmd.Stdout, c.cmd.Stderr = c.out.writers()
	if c.watch, err = newExitWatch(c.cmd.SysProcAttr); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// openDevNull opens /dev/null for a child's standard input. os/exec
// would open it too, with four more system calls that try to add it to
// the runtime's poller. Each child gets its own, because a lock that a job
// takes on its standard input would otherwise outlive the job.
func openDevNull() (*os.File, error) {
	fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), os.DevNull), nil
}

// newCommand builds the command of spec: the program itself, or the shim
// when spec sets limits. A credential alone needs no shim, because
// os/exec switches users between fork and exec.
func newCommand(spec Spec) (*child, error) {
	credential, err := credentialOf(spec.Identity)
	if err != nil {
		return nil, err
	}
	if spec.Limits.IsZero() {
		cmd := &exec.Cmd{Path: spec.Path, Args: spec.Args, Env: spec.Env, Dir: spec.Dir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: credential}
		return &child{cmd: cmd}, nil
	}
	cmd, request, err := shimCommand(spec, credential)
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return &child{cmd: cmd, shim: true, request: request}, nil
}

// close releases what the child's run holds. It emits nothing, because
// it also runs while a panic of emit unwinds.
func (c *child) close() {
	c.closeRequest()
	c.closeStdin()
	if c.input != nil {
		c.input.close()
	}
	if c.watch != nil {
		c.watch.close()
	}
	if c.out != nil {
		c.out.close()
	}
}

// credentialOf returns the credential that switches to identity, or nil
// when the child keeps the runner's. A runner that is not root runs a
// child with its own uid and gid unchanged, and refuses any other.
func credentialOf(identity config.Identity) (*syscall.Credential, error) {
	if !identity.Set {
		return nil, nil
	}
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		return &syscall.Credential{Uid: identity.UID, Gid: identity.GID, Groups: identity.Groups}, nil
	}
	if identity.UID == uint32(uid) && identity.GID == uint32(gid) {
		return nil, nil
	}
	return nil, fmt.Errorf("run as uid %d and gid %d: the runner runs as uid %d and only root can switch users", identity.UID, identity.GID, uid)
}

// start starts c's command, and for the shim waits until it has exec'd
// the program.
func (r *Reaper) start(c *child) error {
	defer c.closeRequest()
	defer c.closeStdin()
	if !c.shim {
		return r.Start(c.cmd)
	}
	status, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("create pipe: %w", err)
	}
	c.cmd.ExtraFiles = []*os.File{pw, c.request}
	err = r.Start(c.cmd)
	// The shim's copy of the status pipe must be the only writer left,
	// or awaitExec would never see end of file.
	pw.Close()
	if err != nil {
		status.Close()
		return err
	}
	return r.awaitExec(c.cmd, status)
}

func (c *child) closeStdin() {
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
	}
}

func (c *child) closeRequest() {
	if c.request != nil {
		c.request.Close()
		c.request = nil
	}
}

// wait emits the child's output until it exits, then reaps it. When ctx
// ends first, its process group gets SIGTERM, then SIGKILL once the grace
// period is over.
func (r *Reaper) wait(ctx context.Context, c *child, spec Spec) (signalled bool, err error) {
	signalled = r.readUntilExit(ctx, c, spec)
	return signalled, c.cmd.Wait()
}

// readUntilExit emits the child's output until it exits, and reports
// whether the stop on ctx signalled its group. It ends that stop before
// it returns, also when emit panics, so that no signal goes to the
// child's process group ID once the child is reaped and the ID may name
// another group.
func (r *Reaper) readUntilExit(ctx context.Context, c *child, spec Spec) (signalled bool) {
	pid := c.cmd.Process.Pid
	stop := stopOnCancel(ctx, pid, spec.Grace, spec.Kill)
	defer func() { signalled = stop() }()
	c.out.untilExit(c.watch.started(pid))
	return false
}

// cleanup stops whatever the child left behind: members of its process
// group, then escapees that left the group but carry its marker. When it
// finds any, it goes on reading the pipes while they stop, because a
// leftover that writes as it shuts down would block on a full pipe and
// hold the cleanup until SIGKILL.
func (r *Reaper) cleanup(c *child, spec Spec) {
	pgid := c.cmd.Process.Pid
	group := unix.Kill(-pgid, 0) == nil
	if !group && (spec.Marker == "" || len(r.markedLeftovers(spec.Marker)) == 0) {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if group {
			stopGroup(pgid, spec.Grace)
		}
		if spec.Marker == "" {
			return
		}
		if n := r.KillLeftovers(spec.Marker, spec.Grace); n > 0 {
			r.log.Warn("killed processes left behind by a child", "marker", spec.Marker, "count", n)
		}
	}()
	c.out.readUntil(done)
}

// stopGroup sends SIGTERM to the members of a process group whose leader
// is gone, and SIGKILL to those left after grace.
func stopGroup(pgid int, grace time.Duration) {
	_ = unix.Kill(-pgid, unix.SIGTERM)
	if !waitGroupGone(pgid, grace) {
		_ = unix.Kill(-pgid, unix.SIGKILL)
		waitGroupGone(pgid, time.Second)
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

// exitOf classifies how the child ended. It counts the child as stopped
// by ctx only when the stop signalled it: a child that exited on its own
// before ctx ended, say just before a shutdown, ran to its end.
func exitOf(ctx context.Context, signalled bool, waitErr error, cmd *exec.Cmd) Exit {
	exit := Exit{Code: exitCode(cmd.ProcessState)}
	if signalled {
		exit.Stopped = context.Cause(ctx)
	}
	if waitErr == nil {
		return exit
	}
	var exitErr *exec.ExitError
	if !errors.As(waitErr, &exitErr) {
		exit.Code = -1
		exit.Err = fmt.Errorf("wait for command: %w", waitErr)
		return exit
	}
	exit.Err = exitReason(cmd.ProcessState)
	return exit
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
		return fmt.Errorf("killed by %s", signalName(status.Signal()))
	}
	return fmt.Errorf("exit status %d", ps.ExitCode())
}

// signalName returns the name of sig, such as SIGKILL, or "signal N" for
// one that the table of names lacks, such as a real-time signal.
func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// hintMemoryMax adds memory_max to the error of a child that a signal
// killed while the limit was set. A program that cannot map memory under
// RLIMIT_DATA dies with SIGSEGV or SIGABRT, often before it prints
// anything, and the bare signal does not point at the limit. SIGKILL
// counts too unless cpu_time is set, whose hard limit sends it.
//
// NOTE: the hint does not prove that the limit caused the signal.
func hintMemoryMax(exit Exit, limits config.Limits) Exit {
	if exit.Err == nil || exit.Stopped != nil || limits.MemoryMax == 0 || exit.Code <= 128 {
		return exit
	}
	switch syscall.Signal(exit.Code - 128) {
	case syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGABRT:
	case syscall.SIGKILL:
		if limits.CPUTime > 0 {
			return exit
		}
	default:
		return exit
	}
	exit.Err = fmt.Errorf("%w: memory_max is %d bytes (RLIMIT_DATA), which may be too low for the program: raise memory_max", exit.Err, limits.MemoryMax)
	return exit
}
