package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/state"
)

const (
	// writeTimeout bounds one write to a client. The messages of a
	// run-job wait for the client as long as it stays connected, and get
	// this long once the daemon stops.
	writeTimeout = 10 * time.Second
	// requestTimeout bounds the wait for a client's request line, so an
	// idle client cannot hold a connection, or a shutdown, for long.
	requestTimeout = 10 * time.Second
	// rejectDrainTimeout bounds the wait for a rejected client's request
	// after the denial was sent.
	rejectDrainTimeout = time.Second
	// maxClients caps connections served at once, so a client cannot
	// exhaust the daemon's file descriptors. Each connection past it
	// gets a busy error and is closed at once.
	maxClients = 256
	// overCapWriteTimeout bounds the write of the busy error, which the
	// accept loop makes itself. The message fits the empty send buffer
	// of a new connection, so the write does not block in practice.
	overCapWriteTimeout = 100 * time.Millisecond
)

// Handler does the work behind the socket.
type Handler interface {
	RunJob(ctx context.Context, req jobs.Request) (state.Run, error)
	Status() (Status, error)
	// Send posts text through a live listener, named or given by kind,
	// and returns the listener's name.
	Send(ctx context.Context, listener, target, text string) (string, error)
	// Reload re-reads the config and returns what changed.
	Reload() (string, error)
	// Runs returns the newest limit runs of a job, or only the run id
	// when it is not empty.
	Runs(job string, limit int, id string) ([]state.Run, error)
	// RecordRun stores the final record of a run that a CLI claimed in
	// the store before this daemon opened it.
	RecordRun(run state.Run) error
	// ResetJob moves the stored position of job back to the clock and
	// re-plans the job. With ahead it does so for every job whose
	// position is ahead (see jobs.ResetPosition).
	ResetJob(job string, force, ahead bool) ([]jobs.ResetResult, error)
}

// Server serves the control socket.
type Server struct {
	handler  Handler
	log      *slog.Logger
	listener *net.UnixListener
	// groupID may use the socket besides root and the daemon's own user;
	// -1 when no socket_group is set.
	groupID int

	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[*net.UnixConn]struct{}
	// acceptLog, rejectLog and overCapLog rate-limit the log lines of
	// failing accepts, of rejected users and of connections past
	// maxClients, which a client's connect loop can repeat hundreds of
	// times a second.
	acceptLog, rejectLog, overCapLog logLimit
}

// logLimitInterval is the least time between two log lines of one kind.
const logLimitInterval = time.Minute

// logLimit lets one log line through per logLimitInterval and counts the
// ones it holds back.
type logLimit struct {
	mu         sync.Mutex
	logged     time.Time
	suppressed int
}

// allow reports whether a line may be logged at now, and how many were
// held back since the last one.
func (l *logLimit) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.logged.IsZero() && now.Sub(l.logged) < logLimitInterval {
		l.suppressed++
		return false, 0
	}
	suppressed := l.suppressed
	l.logged, l.suppressed = now, 0
	return true, suppressed
}

// Listen creates the socket at path, readable and writable by the owner
// and, when group is set, by that group. A socket file left by a daemon
// that died is replaced; the caller must hold the state store lock, which
// proves no other daemon serves it.
func Listen(path, group string, handler Handler, log *slog.Logger) (*Server, error) {
	gid, err := lookupGroup(group)
	if err != nil {
		return nil, err
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	// The umask gives the socket its final mode at bind, 0600, or 0660
	// with a group. A chown or chmod by path after the bind would follow
	// a link that a user who may write the folder put in place of the
	// socket, so only the group is set after it, with lchown. Until then
	// the socket has the daemon's group, and authorize still rejects
	// members of that group who are not in socket_group.
	mask := 0o177
	if gid >= 0 {
		mask = 0o117
	}
	old := unix.Umask(mask)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	socketBound(path)
	if gid >= 0 {
		if err := os.Lchown(path, -1, gid); err != nil {
			l.Close()
			return nil, fmt.Errorf("set control socket group: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{handler: handler, log: log, listener: l, groupID: gid, ctx: ctx, cancel: cancel,
		conns: make(map[*net.UnixConn]struct{})}, nil
}

// socketBound runs between the bind and the group change of Listen. Tests
// replace it to swap the socket file in that window.
var socketBound = func(path string) {}

func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("look up socket_group: %w", err)
	}
	return strconv.Atoi(g.Gid)
}

func removeStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect control socket path: %w", err)
	}
	if info.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("control socket path %s exists and is not a socket: move it away or set [runner] socket", path)
	}
	return os.Remove(path)
}

// Serve accepts clients until Close. Failing accepts, such as when the
// process runs out of file descriptors, are logged and retried after a
// pause; they never stop the daemon.
func (s *Server) Serve() error {
	for {
		conn, err := s.listener.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			s.logAcceptError(err)
			select {
			case <-s.ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if !s.track(conn) {
			s.closeUntracked(conn)
			continue
		}
		go func() {
			defer s.wg.Done()
			defer s.untrack(conn)
			s.serveConn(conn)
		}()
	}
}

func (s *Server) logAcceptError(err error) {
	s.logLimited(&s.acceptLog, slog.LevelError, "accept control client failed; retrying", err)
}

func (s *Server) logRejected(err error) {
	s.logLimited(&s.rejectLog, slog.LevelWarn, "control client rejected", err)
}

// logLimited logs msg unless limit holds it back, with the count of lines
// held back before it as "suppressed".
func (s *Server) logLimited(limit *logLimit, level slog.Level, msg string, err error) {
	ok, suppressed := limit.allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"err", err}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.Log(context.Background(), level, msg, attrs...)
}

// closeUntracked closes a connection that track did not admit. While the
// server runs, that means maxClients are open, and the client gets a busy
// error first, so that it can report why instead of a broken pipe.
// It is not drained like a rejected user's, because a handler per extra
// connection would defeat the cap, and the client reads the error even
// when the write of its request fails.
func (s *Server) closeUntracked(conn *net.UnixConn) {
	defer conn.Close()
	if s.ctx.Err() != nil {
		return
	}
	busy := &ErrorMessage{Code: CodeTooManyClients, Message: fmt.Sprintf(
		"the daemon is busy: %d control connections are open, the maximum it serves at once; try again in a moment", maxClients)}
	s.logLimited(&s.overCapLog, slog.LevelWarn, "control connection limit reached; closing new connections", busy)
	_ = conn.SetWriteDeadline(time.Now().Add(overCapWriteTimeout))
	if err := json.NewEncoder(conn).Encode(Message{Error: busy}); err != nil {
		s.log.Debug("send busy error to control client failed", "err", err)
	}
}

// track registers a connection unless maxClients are served already or
// the server is closing, and counts its handler in s.wg. Both happen
// under s.mu and after a check of s.ctx, so no handler is added once
// Close, which cancels s.ctx under s.mu, waits for them.
func (s *Server) track(conn *net.UnixConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= maxClients || s.ctx.Err() != nil {
		return false
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(conn *net.UnixConn) {
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
}

// Close stops accepting, cancels the manual runs of connected clients,
// closes every connection, waits for the handlers to return and removes
// the socket.
func (s *Server) Close() error {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	err := s.listener.Close()
	s.mu.Lock()
	for conn := range s.conns {
		// Manual runs still send their final record before the handler
		// returns; a half-close would wait for idle clients for ever.
		_ = conn.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) serveConn(conn *net.UnixConn) {
	defer conn.Close()
	out := &encoder{conn: conn, enc: json.NewEncoder(conn)}
	if err := s.authorize(conn); err != nil {
		s.logRejected(err)
		out.send(Message{Error: &ErrorMessage{Code: CodeDenied, Message: err.Error()}})
		drainRejected(conn)
		return
	}
	reader := bufio.NewReaderSize(conn, 4096)
	if !s.setReadDeadline(conn, time.Now().Add(requestTimeout)) {
		return
	}
	line, err := readLine(reader)
	_ = conn.SetReadDeadline(time.Time{})
	if err != nil {
		out.send(Message{Error: &ErrorMessage{Code: CodeBadRequest, Message: err.Error()}})
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		out.send(Message{Error: &ErrorMessage{Code: CodeBadRequest, Message: fmt.Sprintf("decode request: %v", err)}})
		return
	}
	switch req.Op {
	case OpRunJob:
		s.runJob(conn, reader, out, req)
	case OpStatus:
		s.status(out)
	case OpSend:
		s.send(out, req)
	case OpRuns:
		runs, err := s.handler.Runs(req.Job, req.Limit, req.RunID)
		if err != nil {
			out.send(Message{Error: errorMessage(err)})
			return
		}
		if runs == nil {
			runs = []state.Run{}
		}
		out.send(Message{Runs: runs})
	case OpRecordRun:
		s.recordRun(out, req)
	case OpReset:
		s.reset(out, req)
	case OpReload:
		summary, err := s.handler.Reload()
		if err != nil {
			out.send(Message{Error: &ErrorMessage{Code: CodeReload, Message: err.Error()}})
			return
		}
		out.send(Message{Reloaded: summary})
	default:
		out.send(Message{Error: &ErrorMessage{Code: CodeBadRequest, Message: fmt.Sprintf("unknown operation %q", req.Op)}})
	}
}

// setReadDeadline sets conn's read deadline unless Close has begun, and
// reports whether it did. Close cuts the deadlines of tracked connections
// short under s.mu; a deadline set after that would make it wait for a
// client that sends nothing.
func (s *Server) setReadDeadline(conn *net.UnixConn, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	_ = conn.SetReadDeadline(t)
	return true
}

// drainRejected reads and discards what a rejected client sends until it
// closes, for at most rejectDrainTimeout. Closing at once would make the
// client's write of its request fail with EPIPE, and a client that reports
// that error never reads the denial already sent to it.
func drainRejected(conn *net.UnixConn) {
	_ = conn.CloseWrite()
	_ = conn.SetReadDeadline(time.Now().Add(rejectDrainTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, maxRequestBytes))
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxRequestBytes {
			return nil, fmt.Errorf("request longer than %d bytes", maxRequestBytes)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("read request: %w", err)
		}
	}
}

// authorize accepts root, the daemon's own user and members of the socket
// group. The socket's mode already keeps others out; this check also holds
// when the socket file's mode was changed by hand.
func (s *Server) authorize(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("inspect control client: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return fmt.Errorf("read control client credentials: %w", err)
	}
	if cred.Uid == 0 || int(cred.Uid) == os.Getuid() {
		return nil
	}
	if s.groupID >= 0 && inGroup(cred, s.groupID) {
		return nil
	}
	return fmt.Errorf("user %d is not allowed to use the control socket: add the user to socket_group", cred.Uid)
}

// inGroup reports whether the peer has gid as its primary or a
// supplementary group, read from /proc since SO_PEERCRED carries only the
// primary one.
func inGroup(cred *unix.Ucred, gid int) bool {
	if int(cred.Gid) == gid {
		return true
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cred.Pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		groups, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		for _, field := range strings.Fields(groups) {
			if field == strconv.Itoa(gid) {
				return true
			}
		}
	}
	return false
}

// runJob runs a job for the client, streaming output. The run stops like
// a Ctrl-C when the client hangs up; the client then still reads what the
// job prints while it stops, and the final record. The run never waits
// for a slow client, whose messages queue in an outputQueue.
func (s *Server) runJob(conn *net.UnixConn, reader *bufio.Reader, out *encoder, req Request) {
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	go func() {
		// The client sends nothing after its request, so any return from
		// Read means it closed the connection.
		buf := make([]byte, 1)
		_, _ = reader.Read(buf)
		cancel(errors.New("stopped by the user"))
	}()
	// The queue's writes wait for the client as long as it stays
	// connected, and for writeTimeout once the daemon stops.
	//
	// NOTE: a client that lags further behind than that when the daemon
	// stops loses the rest of the output and the final record, and exits
	// 125 instead of 130.
	_ = conn.SetWriteDeadline(time.Time{})
	stopBound := context.AfterFunc(s.ctx, func() { _ = conn.SetWriteDeadline(time.Now().Add(writeTimeout)) })
	defer stopBound()

	queue := newOutputQueue()
	written := make(chan error, 1)
	go func() {
		err := queue.drain(out.write)
		if err != nil {
			cancel(fmt.Errorf("stream output to client: %w", err))
		}
		written <- err
	}()
	run, err := s.handler.RunJob(ctx, jobs.Request{
		Job:     req.Job,
		Trigger: state.TriggerManual,
		Wait:    req.Wait,
		Output:  queue.addLine,
		Started: func(run state.Run) { queue.add(Message{Started: &run}) },
		Waiting: func() { queue.add(Message{Waiting: true}) },
		WaitingForRun: func() {
			queue.add(Message{Waiting: true, WaitFor: WaitForRun})
		},
	})
	if err != nil {
		queue.finish(Message{Error: errorMessage(err)})
	} else {
		queue.finish(Message{Run: &run})
	}
	<-written
}

func errorMessage(err error) *ErrorMessage {
	code := CodeInternal
	switch {
	case errors.Is(err, jobs.ErrUnknownJob):
		code = CodeUnknownJob
	case errors.Is(err, jobs.ErrBusy):
		code = CodeBusy
	case errors.Is(err, jobs.ErrStopping):
		code = CodeStopping
	}
	return &ErrorMessage{Code: code, Message: err.Error()}
}

func (s *Server) status(out *encoder) {
	status, err := s.handler.Status()
	if err != nil {
		out.send(Message{Error: errorMessage(err)})
		return
	}
	out.send(Message{Status: &status})
}

// sendTimeout bounds one send, rate-limit waits included.
const sendTimeout = 2 * time.Minute

func (s *Server) send(out *encoder, req Request) {
	ctx, cancel := context.WithTimeout(s.ctx, sendTimeout)
	defer cancel()
	name, err := s.handler.Send(ctx, req.Listener, req.Target, req.Text)
	if err != nil {
		s.log.Warn("send through listener failed", "listener", req.Listener, "err", err)
		out.send(Message{Error: &ErrorMessage{Code: CodeSendFailed, Message: err.Error()}})
		return
	}
	out.send(Message{Sent: &Sent{Listener: name}})
}

func (s *Server) recordRun(out *encoder, req Request) {
	if req.Run == nil {
		out.send(Message{Error: &ErrorMessage{Code: CodeBadRequest, Message: "record-run request without a run"}})
		return
	}
	if err := s.handler.RecordRun(*req.Run); err != nil {
		s.log.Warn("record a CLI's run failed", "job", req.Run.Job, "run", req.Run.ID, "err", err)
		out.send(Message{Error: errorMessage(err)})
		return
	}
	out.send(Message{Run: req.Run})
}

func (s *Server) reset(out *encoder, req Request) {
	if (req.Job == "") == !req.Ahead || (req.Ahead && req.Force) {
		out.send(Message{Error: &ErrorMessage{Code: CodeBadRequest, Message: "reset request needs either a job, with or without force, or ahead"}})
		return
	}
	results, err := s.handler.ResetJob(req.Job, req.Force, req.Ahead)
	if err != nil {
		s.log.Warn("reset job position failed", "job", req.Job, "err", err)
		out.send(Message{Error: errorMessage(err)})
		return
	}
	if results == nil {
		results = []jobs.ResetResult{}
	}
	out.send(Message{Reset: &ResetReply{Results: results}})
}

// encoder serializes messages from the two output readers of a run.
type encoder struct {
	mu   sync.Mutex
	conn *net.UnixConn
	enc  *json.Encoder
}

// write writes m with the connection's current write deadline.
func (e *encoder) write(m Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.enc.Encode(m)
}

func (e *encoder) send(m Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return e.enc.Encode(m)
}
