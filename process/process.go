// Package process starts and stops child processes the way jobs, hooks and
// exec listeners need: in their own process group, with only the
// configured environment, output split into bounded lines, SIGTERM then
// SIGKILL on stop, and nothing left running afterwards.
package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
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

// child is one started process with its output readers.
type child struct {
	cmd     *exec.Cmd
	readers sync.WaitGroup
	pipes   []*os.File
	// shim is set when cmd starts the program through the shim, and
	// request is then the shim's request, which start closes.
	shim    bool
	request *os.File
}

// Run runs spec until the child exits or ctx ends, calling emit for each
// output line from the reader goroutines. It returns once the child and
// every process it left behind are gone. The error is for a child that
// could not start.
func (r *Reaper) Run(ctx context.Context, spec Spec, emit func(Line)) (Exit, error) {
	c, err := newChild(spec)
	if err != nil {
		return Exit{Code: -1}, fmt.Errorf("start command: %w", err)
	}
	cmd := c.cmd
	if spec.Stdin != nil {
		cmd.Stdin = bytes.NewReader(spec.Stdin)
	}
	err = r.start(c, emit)
	if err != nil && !c.shim {
		err = explainStartError(spec, cmd.SysProcAttr.Credential, err)
	}
	if err != nil {
		return Exit{Code: -1}, fmt.Errorf("start command: %w", err)
	}
	if spec.Started != nil {
		spec.Started(cmd.Process.Pid)
	}
	waitErr := r.wait(ctx, c, spec)
	r.cleanup(c, spec)
	c.drain()
	return hintMemoryMax(exitOf(ctx, waitErr, cmd), spec.Limits), nil
}

// newChild builds the command of spec: the program itself, or the shim
// when spec sets limits. A credential alone needs no shim, because
// os/exec switches users between fork and exec.
func newChild(spec Spec) (*child, error) {
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

// start starts c's command with a pipe per stream and a reader for each,
// and a status pipe for the shim.
func (r *Reaper) start(c *child, emit func(Line)) error {
	if c.request != nil {
		defer c.request.Close()
	}
	var writers []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		pr, pw, err := os.Pipe()
		if err != nil {
			c.closePipes(writers)
			return fmt.Errorf("create pipe: %w", err)
		}
		c.pipes = append(c.pipes, pr)
		writers = append(writers, pw)
		c.readers.Add(1)
		go c.read(pr, stream, emit)
	}
	c.cmd.Stdout, c.cmd.Stderr = writers[0], writers[1]
	var status *os.File
	if c.shim {
		pr, pw, err := os.Pipe()
		if err != nil {
			c.closePipes(writers)
			c.readers.Wait()
			return fmt.Errorf("create pipe: %w", err)
		}
		status = pr
		writers = append(writers, pw)
		c.cmd.ExtraFiles = []*os.File{pw, c.request}
	}
	err := r.Start(c.cmd)
	// The child holds its own copies; the parent's must close, or the
	// readers would never see end of file.
	for _, w := range writers {
		w.Close()
	}
	if err == nil && status != nil {
		err = r.awaitExec(c.cmd, status)
	} else if status != nil {
		status.Close()
	}
	if err != nil {
		c.closePipes(nil)
		c.readers.Wait()
		return err
	}
	return nil
}

// readers keeps the read buffers of finished runs for the next ones, so a
// burst of short runs does not leave one buffer per stream to collect.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferBytes) }}

// read emits the lines of one stream. A line longer than MaxLineBytes is
// cut into pieces of that size. The read buffer is small and the line
// buffer grows only for long lines, because a burst of short runs holds
// two readers per child.
func (c *child) read(pipe *os.File, stream string, emit func(Line)) {
	defer c.readers.Done()
	reader := readers.Get().(*bufio.Reader)
	reader.Reset(pipe)
	defer func() {
		reader.Reset(nil)
		readers.Put(reader)
	}()
	var line []byte
	send := func() {
		text := strings.TrimSuffix(string(line), "\n")
		emit(Line{Stream: stream, Text: strings.TrimSuffix(text, "\r")})
		line = line[:0]
	}
	for {
		chunk, err := reader.ReadSlice('\n')
		for len(chunk) > 0 {
			n := min(len(chunk), MaxLineBytes-len(line))
			line = append(line, chunk[:n]...)
			chunk = chunk[n:]
			if len(line) == MaxLineBytes || line[len(line)-1] == '\n' {
				send()
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > 0 {
				send()
			}
			return
		}
	}
}

func (c *child) closePipes(extra []*os.File) {
	for _, f := range append(c.pipes, extra...) {
		f.Close()
	}
}

// drain waits for the readers to reach end of file, and cuts them off when
// a process nobody could find still holds a pipe open.
func (c *child) drain() {
	done := make(chan struct{})
	go func() {
		c.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(pipeDrainTimeout):
		c.closePipes(nil)
		<-done
	}
	c.closePipes(nil)
}

// wait waits for the child, and when ctx ends sends SIGTERM to its process
// group, then SIGKILL once the grace period is over.
func (r *Reaper) wait(ctx context.Context, c *child, spec Spec) error {
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()
	defer r.Untrack(c.cmd.Process.Pid)

	select {
	case err := <-exited:
		return err
	case <-ctx.Done():
	}
	pgid := c.cmd.Process.Pid
	_ = unix.Kill(-pgid, unix.SIGTERM)
	grace := spec.Grace
	var graced Graced
	if errors.As(context.Cause(ctx), &graced) {
		grace = graced.Grace()
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case err := <-exited:
		return err
	case <-timer.C:
	case <-spec.Kill:
	}
	_ = unix.Kill(-pgid, unix.SIGKILL)
	return <-exited
}

// cleanup stops whatever the child left behind: members of its process
// group, then escapees that left the group but carry its marker.
func (r *Reaper) cleanup(c *child, spec Spec) {
	pgid := c.cmd.Process.Pid
	if unix.Kill(-pgid, 0) == nil {
		_ = unix.Kill(-pgid, unix.SIGTERM)
		if !waitGroupGone(pgid, spec.Grace) {
			_ = unix.Kill(-pgid, unix.SIGKILL)
			waitGroupGone(pgid, time.Second)
		}
	}
	if spec.Marker == "" {
		return
	}
	if n := r.KillLeftovers(spec.Marker, spec.Grace); n > 0 {
		r.log.Warn("killed processes left behind by a child", "marker", spec.Marker, "count", n)
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

// exitOf classifies how the child ended.
func exitOf(ctx context.Context, waitErr error, cmd *exec.Cmd) Exit {
	exit := Exit{Code: exitCode(cmd.ProcessState)}
	if ctx.Err() != nil {
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
		sig := status.Signal()
		return fmt.Errorf("killed by %s (%s)", unix.SignalName(sig), sig)
	}
	return fmt.Errorf("exit status %d", ps.ExitCode())
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
