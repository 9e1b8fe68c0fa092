package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/state"
)

const (
	// maxMessageBytes bounds one message from the daemon: the status of
	// tens of thousands of jobs, or one 64 KiB output line after JSON
	// escaping.
	maxMessageBytes = 64 << 20
	// dialTimeout bounds connecting to the socket.
	dialTimeout = 5 * time.Second
	// replyTimeout bounds the wait for a daemon's answer, so a daemon
	// that is stopped or wedged is reported instead of hanging the CLI.
	replyTimeout = 30 * time.Second
	// denialReadTimeout bounds the read of a rejection after the request
	// could not be written.
	denialReadTimeout = time.Second
	// socketReturnTimeout bounds the wait for a running daemon to recreate
	// a deleted socket file: one 5 s state check and a margin.
	socketReturnTimeout = 7 * time.Second
)

// RunJob asks the daemon at socket to run a job now and streams its
// output to output. Cancelling ctx stops the run, as Ctrl-C does; RunJob
// then still returns the run's record. A failed request returns
// *ErrorMessage.
func RunJob(ctx context.Context, socket, name string, wait bool, output func(jobs.Line)) (state.Run, error) {
	conn, err := dial(socket)
	if err != nil {
		return state.Run{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() {
		// Half-closing tells the daemon to stop the run while the
		// connection stays open for the rest of the output and the final
		// record. Their wait has no deadline, because a job's kill_grace
		// may be long and this side may read slowly; a second Ctrl-C
		// exits at once.
		_ = conn.CloseWrite()
	})
	defer stop()

	if err := send(conn, Request{Op: OpRunJob, Job: name, Wait: wait}); err != nil {
		return state.Run{}, err
	}
	if !wait {
		// Without --wait the daemon answers at once: the run started, or
		// an error. A run may then stay silent for as long as it likes.
		_ = conn.SetReadDeadline(time.Now().Add(replyTimeout))
	}
	scanner := newScanner(conn)
	var started *state.Run
	for {
		msg, err := receive(scanner)
		if err != nil && started != nil {
			return state.Run{}, lostDuringRun(*started, err)
		}
		if err != nil {
			return state.Run{}, err
		}
		switch {
		case msg.Waiting:
			// The daemon took the run, which may wait as long as the runs
			// ahead of it take.
			_ = conn.SetReadDeadline(time.Time{})
			output(jobs.Line{Stream: "stderr", Text: waitingNotice(name, msg.WaitFor)})
		case msg.Started != nil:
			started = msg.Started
			_ = conn.SetReadDeadline(time.Time{})
		case msg.Line != nil:
			output(*msg.Line)
		case msg.Run != nil:
			if msg.OutputDropped > 0 {
				output(jobs.Line{Stream: "stderr", Text: fmt.Sprintf(
					"agent-runner: %d lines of output were not shown because they came faster than they were read; agent-runner logs %s shows the end of the output",
					msg.OutputDropped, name)})
			}
			return *msg.Run, nil
		case msg.Error != nil:
			return state.Run{}, msg.Error
		}
	}
}

// GetStatus asks the daemon at socket for the status of every job and
// listener.
func GetStatus(socket string) (Status, error) {
	conn, err := dialForReply(socket, replyTimeout)
	if err != nil {
		return Status{}, err
	}
	defer conn.Close()
	if err := send(conn, Request{Op: OpStatus}); err != nil {
		return Status{}, err
	}
	msg, err := receive(newScanner(conn))
	if err != nil {
		return Status{}, err
	}
	if msg.Error != nil {
		return Status{}, msg.Error
	}
	if msg.Status == nil {
		return Status{}, errors.New("daemon responded without a status")
	}
	return *msg.Status, nil
}

// ErrNoDaemon means nothing listens on the socket: the file is missing,
// or left by a daemon that died. Only then may a CLI work without the
// daemon; any other failure to reach it is an error.
var ErrNoDaemon = errors.New("no daemon is listening")

// dial connects to the daemon at socket. When the socket file is missing
// or no process listens on it but a daemon still holds its abstract name, the
// daemon recreates the file within its state check interval of 5 s, so
// dial waits for it rather than report ErrNoDaemon, which would let a CLI
// run a job in-process beside that daemon's runs.
func dial(socket string) (*net.UnixConn, error) {
	conn, err := dialOnce(socket)
	if !errors.Is(err, ErrNoDaemon) {
		return conn, err
	}
	pid, alive := aliveDaemon(socket)
	if !alive {
		return nil, err
	}
	deadline := time.Now().Add(socketReturnTimeout)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		conn, err = dialOnce(socket)
		if !errors.Is(err, ErrNoDaemon) {
			return conn, err
		}
	}
	return nil, fmt.Errorf("connect to daemon at %s: daemon pid %d is running but its control socket was not recreated within %s: check its log, or restart it", socket, pid, socketReturnTimeout)
}

func dialOnce(socket string) (*net.UnixConn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.Dial("unix", socket)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("connect to daemon at %s: %w: %w", socket, ErrNoDaemon, err)
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("connect to daemon at %s: %w: %s", socket, err, accessHint(socket))
		}
		return nil, fmt.Errorf("connect to daemon at %s: %w", socket, err)
	}
	return c.(*net.UnixConn), nil
}

// accessHint builds the fix for a client that the socket's permissions
// reject. It names the owner of the socket's folder, which is the
// daemon's user unless someone made the folder by hand.
func accessHint(socket string) string {
	const group = "or set [runner] socket_group to a group you are in and restart the daemon"
	info, err := os.Stat(filepath.Dir(socket))
	if err != nil {
		return "run the command as the daemon's user, " + group
	}
	owner := fmt.Sprint(info.Sys().(*syscall.Stat_t).Uid)
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	return fmt.Sprintf("run the command as the daemon's user (sudo -u %s agent-runner ...), %s", owner, group)
}

// dialForReply connects and bounds the whole exchange by timeout.
func dialForReply(socket string, timeout time.Duration) (*net.UnixConn, error) {
	conn, err := dial(socket)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	return conn, nil
}

func send(conn *net.UnixConn, req Request) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	if _, err := conn.Write(append(data, '\n')); err != nil {
		if denial := readDenial(conn); denial != nil {
			return denial
		}
		return fmt.Errorf("send request: %w", err)
	}
	return nil
}

// readDenial returns the error message the daemon sent before it closed
// the connection, or nil. A daemon rejects a user as soon as it accepts
// the connection, so the request's write can fail with EPIPE while the
// reason already waits to be read.
func readDenial(conn *net.UnixConn) *ErrorMessage {
	_ = conn.SetReadDeadline(time.Now().Add(denialReadTimeout))
	msg, err := receive(newScanner(conn))
	if err != nil || msg.Error == nil {
		return nil
	}
	return msg.Error
}

func newScanner(conn *net.UnixConn) *bufio.Scanner {
	scanner := bufio.NewScanner(conn)
	scanner.Buffer(make([]byte, 64<<10), maxMessageBytes)
	return scanner
}

// errClosed is the end of the daemon's messages before the one awaited.
var errClosed = errors.New("daemon closed the connection before answering")

// lostDuringRun is the error for a connection that ended after the daemon
// started run. That happens when the daemon crashes, and until it starts
// again the run's processes may still run, or when a clean stop outpaces
// a client that fell behind, and the run is then already recorded.
func lostDuringRun(run state.Run, err error) error {
	if errors.Is(err, errClosed) {
		err = errors.New("daemon closed the connection")
	}
	return fmt.Errorf("lost the daemon during run %s of %s (%w): the daemon stopped or crashed; agent-runner runs %s shows how the run ended, and after a crash the daemon's next start stops what is left of the run and records it as interrupted",
		run.ID, run.Job, err, run.Job)
}

func receive(scanner *bufio.Scanner) (Message, error) {
	if !scanner.Scan() {
		err := scanner.Err()
		if err == nil {
			err = errClosed
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errors.New("daemon did not respond in time; check that it is healthy (systemctl status agent-runner)")
		}
		return Message{}, fmt.Errorf("read from daemon: %w", err)
	}
	var msg Message
	if err := json.Unmarshal(scanner.Bytes(), &msg); err != nil {
		return Message{}, fmt.Errorf("decode daemon message: %w", err)
	}
	return msg, nil
}

// Send asks the daemon at socket to post text through a listener, named
// or given by its kind when only one listener has it. It returns the name
// of the listener that posted.
func Send(socket, listener, target, text string) (string, error) {
	conn, err := dialForReply(socket, sendTimeout+replyTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := send(conn, Request{Op: OpSend, Listener: listener, Target: target, Text: text}); err != nil {
		return "", err
	}
	msg, err := receive(newScanner(conn))
	if err != nil {
		return "", err
	}
	if msg.Error != nil {
		return "", msg.Error
	}
	if msg.Sent == nil {
		return "", errors.New("daemon responded without a confirmation")
	}
	return msg.Sent.Listener, nil
}

// Reload asks the daemon at socket to re-read its config and returns what
// changed. A rejected config returns *ErrorMessage with the problems.
func Reload(socket string) (string, error) {
	conn, err := dialForReply(socket, replyTimeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := send(conn, Request{Op: OpReload}); err != nil {
		return "", err
	}
	msg, err := receive(newScanner(conn))
	if err != nil {
		return "", err
	}
	if msg.Error != nil {
		return "", msg.Error
	}
	return msg.Reloaded, nil
}

// Runs asks the daemon at socket for the newest limit runs of job, or for
// the run id alone when id is not empty.
func Runs(socket, job string, limit int, id string) ([]state.Run, error) {
	conn, err := dialForReply(socket, replyTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := send(conn, Request{Op: OpRuns, Job: job, Limit: limit, RunID: id}); err != nil {
		return nil, err
	}
	msg, err := receive(newScanner(conn))
	if err != nil {
		return nil, err
	}
	if msg.Error != nil {
		return nil, msg.Error
	}
	return msg.Runs, nil
}

// Reset sends the daemon at socket a request to move the stored position
// of job back to the clock, or with ahead that of every job whose position
// is ahead, and returns the outcome for each job.
func Reset(socket, job string, force, ahead bool) ([]jobs.ResetResult, error) {
	conn, err := dialForReply(socket, replyTimeout)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := send(conn, Request{Op: OpReset, Job: job, Force: force, Ahead: ahead}); err != nil {
		return nil, err
	}
	msg, err := receive(newScanner(conn))
	if err != nil {
		return nil, err
	}
	if msg.Error != nil && msg.Error.Code == CodeBadRequest && strings.HasPrefix(msg.Error.Message, "unknown operation") {
		return nil, fmt.Errorf("%w: the running daemon is older than this agent-runner and cannot reset, so restart it (systemctl restart agent-runner) and try again", msg.Error)
	}
	if msg.Error != nil {
		return nil, msg.Error
	}
	if msg.Reset == nil {
		return nil, errors.New("daemon responded without a reset result")
	}
	return msg.Reset.Results, nil
}

// RecordRun hands the daemon at socket the final record of run, which
// this process claimed before the daemon took the store.
func RecordRun(socket string, run state.Run) error {
	conn, err := dialForReply(socket, replyTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := send(conn, Request{Op: OpRecordRun, Run: &run}); err != nil {
		return err
	}
	msg, err := receive(newScanner(conn))
	if err != nil {
		return err
	}
	if msg.Error != nil {
		return msg.Error
	}
	return nil
}

// waitingNotice is the line run-job prints while its run waits.
func waitingNotice(job, waitFor string) string {
	if waitFor == WaitForRun {
		return WaitingForRunNotice(job)
	}
	return "agent-runner: waiting for a free run place (max_concurrent)"
}

// WaitingForRunNotice is the line run-job --wait prints while a running
// run of job holds it back, through the daemon or without one.
func WaitingForRunNotice(job string) string {
	return fmt.Sprintf("agent-runner: waiting for the running run of %s to end", job)
}
