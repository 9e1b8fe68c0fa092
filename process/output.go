package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// output reads a child's stdout and stderr and waits for its exit in the
// goroutine of Run, through poll(2) on both pipes and the child's pidfd.
//
// Run keeps its own copies of the pipes' write ends until the child has
// exited, so a pipe never reports end of file while the child runs. A
// short child then wakes Run once, at its exit, as a bare os/exec run
// does. The pipes are not in the Go runtime's poller, because a pipe there
// wakes the poller's thread on another core when the child exits. On the
// 2-core development machine that wake-up added about 0.05 ms to a
// /bin/true run, and reader goroutines about as much again.
type output struct {
	streams [2]stream
	emit    func(Line)
	buf     *[]byte
}

// stream is one output pipe and its unfinished line.
type stream struct {
	name string
	// fd is the read end, -1 once it reached end of file or was closed.
	fd int
	// write is the parent's copy of the write end, open until the child
	// exits.
	write *os.File
	line  []byte
}

// readBuffers keeps the read buffers of finished runs for the next ones,
// so a burst of short runs does not leave one buffer per run to collect.
var readBuffers = sync.Pool{New: func() any {
	buf := make([]byte, readBufferBytes)
	return &buf
}}

// newOutput creates the pipes of stdout and stderr. The read ends block,
// as poll decides when to read them.
func newOutput(emit func(Line)) (*output, error) {
	o := &output{emit: emit}
	// A stream's zero value names descriptor 0, which a cleanup after a
	// failed pipe would close under its owner.
	for i := range o.streams {
		o.streams[i].fd = -1
	}
	for i, name := range []string{"stdout", "stderr"} {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			o.close()
			return nil, fmt.Errorf("create pipe: %w", err)
		}
		o.streams[i] = stream{name: name, fd: fds[0], write: os.NewFile(uintptr(fds[1]), name)}
	}
	return o, nil
}

// writers returns the write ends that the child gets as stdout and stderr.
func (o *output) writers() (stdout, stderr *os.File) {
	return o.streams[0].write, o.streams[1].write
}

// untilExit emits the child's lines as they arrive, until the descriptor
// exited turns readable, which it does when the child exits.
func (o *output) untilExit(exited int) {
	fds := append([]unix.PollFd{{Fd: int32(exited), Events: unix.POLLIN}}, o.pollFDs()...)
	for {
		if !pollOnce(fds, -1) {
			continue
		}
		if fds[0].Revents != 0 {
			return
		}
		o.readReady(fds[1:])
	}
}

// readUntil emits the child's lines as they arrive until done closes,
// checking for it every 10 ms.
func (o *output) readUntil(done <-chan struct{}) {
	fds := o.pollFDs()
	for {
		select {
		case <-done:
			return
		default:
		}
		if pollOnce(fds, 10) {
			o.readReady(fds)
		}
	}
}

// drain closes the parent's write ends and reads what is left until every
// pipe reaches end of file or timeout passes, in case an unknown process
// still holds a pipe. It then emits the unfinished lines and closes the
// pipes.
func (o *output) drain(timeout time.Duration) {
	o.closeWriters()
	deadline := time.Now().Add(timeout)
	fds := o.pollFDs()
	for o.open() {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if pollOnce(fds, int(left.Milliseconds())+1) {
			o.readReady(fds)
		}
	}
	for i := range o.streams {
		o.streams[i].finish(o.emit)
	}
	o.close()
}

// pollFDs returns the poll entries of the streams' read ends, in order.
// A stream already at end of file has a negative descriptor, which poll
// skips.
func (o *output) pollFDs() []unix.PollFd {
	fds := make([]unix.PollFd, len(o.streams))
	for i, s := range o.streams {
		fds[i] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	}
	return fds
}

// readReady reads once from every stream whose entry in fds is ready.
// fds holds the streams in order; a stream that reaches end of file gets
// a negative descriptor, which poll skips.
func (o *output) readReady(fds []unix.PollFd) {
	for i := range fds {
		if fds[i].Fd < 0 || fds[i].Revents == 0 {
			continue
		}
		if !o.readOnce(&o.streams[i]) {
			fds[i].Fd = -1
		}
	}
}

// readOnce reads what one stream holds and emits its complete lines. It
// returns false at end of file, after closing the read end.
func (o *output) readOnce(s *stream) bool {
	if o.buf == nil {
		o.buf = readBuffers.Get().(*[]byte)
	}
	for {
		n, err := unix.Read(s.fd, *o.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n <= 0 {
			s.finish(o.emit)
			return false
		}
		s.feed((*o.buf)[:n], o.emit)
		return true
	}
}

func (o *output) open() bool {
	return o.streams[0].fd >= 0 || o.streams[1].fd >= 0
}

func (o *output) closeWriters() {
	for i := range o.streams {
		if w := o.streams[i].write; w != nil {
			w.Close()
			o.streams[i].write = nil
		}
	}
}

// close releases the pipes and the buffer. It emits nothing, because it
// also runs while a panic of emit unwinds.
func (o *output) close() {
	o.closeWriters()
	for i := range o.streams {
		o.streams[i].closeRead()
	}
	if o.buf != nil {
		readBuffers.Put(o.buf)
		o.buf = nil
	}
}

// feed adds data to the stream's line and emits each line it completes.
// A line longer than MaxLineBytes is cut into pieces of that size.
func (s *stream) feed(data []byte, emit func(Line)) {
	for len(data) > 0 {
		end := len(data)
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			end = i + 1
		}
		n := min(end, MaxLineBytes-len(s.line))
		s.line = append(s.line, data[:n]...)
		data = data[n:]
		if len(s.line) == MaxLineBytes || s.line[len(s.line)-1] == '\n' {
			s.send(emit)
		}
	}
}

// finish emits the unfinished line, if any, and closes the read end.
func (s *stream) finish(emit func(Line)) {
	if len(s.line) > 0 {
		s.send(emit)
	}
	s.closeRead()
}

func (s *stream) closeRead() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

func (s *stream) send(emit func(Line)) {
	text := strings.TrimSuffix(string(s.line), "\n")
	emit(Line{Stream: s.name, Text: strings.TrimSuffix(text, "\r")})
	s.line = s.line[:0]
}

// pollOnce waits up to timeout milliseconds, or without end when it is
// negative, and reports whether any descriptor is ready. An interrupted
// poll reports none. A failed one, which only a shortage of kernel memory
// explains, waits 10 ms first, so the caller's loop does not spin.
func pollOnce(fds []unix.PollFd, timeout int) bool {
	n, err := unix.Poll(fds, timeout)
	if err != nil && !errors.Is(err, unix.EINTR) {
		time.Sleep(10 * time.Millisecond)
	}
	return err == nil && n > 0
}

// pidfdsWork reports whether the kernel gives pidfds, which Linux 5.3 and
// later do unless a sandbox filters them. Tests replace it to take the
// other path.
var pidfdsWork = sync.OnceValue(func() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
})

// exitWatch gives a descriptor that turns readable once a child exits,
// without reaping it, so the child must not be waited for before then.
// Where pidfds work it is the child's pidfd, made by the same clone that
// makes the child, and costs no thread. Elsewhere it is a pipe that a
// goroutine closes once waitid reports the exit. Both are made before the
// child starts, so nothing can fail once it runs.
type exitWatch struct {
	// pidfd is the child's pidfd as clone stores it, or -1 when unused.
	pidfd int
	// pipe is the fallback's pipe, -1 for a closed end.
	pipe [2]int
	done chan struct{}
}

// newExitWatch prepares the watch of the child that attr will start.
func newExitWatch(attr *syscall.SysProcAttr) (*exitWatch, error) {
	w := &exitWatch{pidfd: -1, pipe: [2]int{-1, -1}}
	if pidfdsWork() {
		attr.PidFD = &w.pidfd
		return w, nil
	}
	if err := unix.Pipe2(w.pipe[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("create pipe: %w", err)
	}
	return w, nil
}

// started returns the descriptor to poll for the exit of child pid.
func (w *exitWatch) started(pid int) int {
	if w.pidfd >= 0 {
		return w.pidfd
	}
	w.done = make(chan struct{})
	write := w.pipe[1]
	w.pipe[1] = -1
	go func() {
		defer close(w.done)
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
		unix.Close(write)
	}()
	return w.pipe[0]
}

// close releases the watch once the child has exited, or failed to start.
func (w *exitWatch) close() {
	if w.done != nil {
		<-w.done
	}
	for _, fd := range append(w.pipe[:], w.pidfd) {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	w.pidfd, w.pipe = -1, [2]int{-1, -1}
}

// stopOnCancel sends SIGTERM to the process group pgid once ctx ends, then
// SIGKILL when the grace period is over or kill closes. The returned
// function, called once the child has exited and before it is reaped, so
// that pgid still names its group, ends the wait and returns once no
// signal can follow. It reports whether the group got a signal, so that a
// child that exited on its own counts as such even when ctx ends before
// its result is read, as at a shutdown.
func stopOnCancel(ctx context.Context, pgid int, grace time.Duration, kill <-chan struct{}) (stop func() (signalled bool)) {
	exited := make(chan struct{})
	done := make(chan struct{})
	var sent atomic.Bool
	cancelled := context.AfterFunc(ctx, func() {
		defer close(done)
		sent.Store(true)
		_ = unix.Kill(-pgid, unix.SIGTERM)
		var graced Graced
		if errors.As(context.Cause(ctx), &graced) {
			grace = graced.Grace()
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
			return
		case <-timer.C:
		case <-kill:
		}
		_ = unix.Kill(-pgid, unix.SIGKILL)
	})
	return func() bool {
		if cancelled() {
			return false
		}
		close(exited)
		<-done
		return sent.Load()
	}
}
