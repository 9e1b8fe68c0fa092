package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/state"
)

// maxMessageBytes bounds one message from the daemon; an output line is
// at most 64 KiB before JSON escaping.
const maxMessageBytes = 1 << 20

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
		// connection stays open for the final record.
		_ = conn.CloseWrite()
	})
	defer stop()

	if err := send(conn, Request{Op: OpRunJob, Job: name, Wait: wait}); err != nil {
		return state.Run{}, err
	}
	scanner := newScanner(conn)
	for {
		msg, err := receive(scanner)
		if err != nil {
			return state.Run{}, err
		}
		switch {
		case msg.Line != nil:
			output(*msg.Line)
		case msg.Run != nil:
			return *msg.Run, nil
		case msg.Error != nil:
			return state.Run{}, msg.Error
		}
	}
}

// GetStatus asks the daemon at socket for the status of every job and
// listener.
func GetStatus(socket string) (Status, error) {
	conn, err := dial(socket)
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
		return Status{}, errors.New("daemon answered without a status")
	}
	return *msg.Status, nil
}

func dial(socket string) (*net.UnixConn, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("connect to daemon at %s: %w", socket, err)
	}
	return conn, nil
}

func send(conn *net.UnixConn, req Request) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	if _, err := conn.Write(append(data, '\n')); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	return nil
}

func newScanner(conn *net.UnixConn) *bufio.Scanner {
	scanner := bufio.NewScanner(conn)
	scanner.Buffer(make([]byte, 64<<10), maxMessageBytes)
	return scanner
}

func receive(scanner *bufio.Scanner) (Message, error) {
	if !scanner.Scan() {
		err := scanner.Err()
		if err == nil {
			err = errors.New("daemon closed the connection before answering")
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
	conn, err := dial(socket)
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
		return "", errors.New("daemon answered without a confirmation")
	}
	return msg.Sent.Listener, nil
}

// Reload asks the daemon at socket to re-read its config and returns what
// changed. A rejected config returns *ErrorMessage with the problems.
func Reload(socket string) (string, error) {
	conn, err := dial(socket)
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
