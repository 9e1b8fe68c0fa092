package control

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// aliveName returns the abstract unix socket name that a daemon holds
// while it serves the control socket at socket. An abstract name has no
// file, so it outlives a deleted state folder. A CLI that finds no socket
// file connects to it to check whether a daemon still runs before it runs
// a job in-process beside that daemon's runs.
//
// NOTE: abstract names are per network namespace, so a CLI outside the
// daemon's namespace (a unit with PrivateNetwork=) does not see it.
func aliveName(socket string) string {
	sum := sha256.Sum256([]byte(socket))
	return "@agent-runner-daemon/" + hex.EncodeToString(sum[:16])
}

// AliveMark is the abstract socket of a running daemon. It accepts
// connections and closes them at once; the client reads the daemon's pid
// from the connection's SO_PEERCRED.
type AliveMark struct {
	listener *net.UnixListener
	done     chan struct{}
}

// MarkAlive binds the abstract name of the control socket at socket for
// as long as the daemon runs. It fails when another process holds it.
func MarkAlive(socket string) (*AliveMark, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: aliveName(socket), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("bind abstract socket of %s: %w", socket, err)
	}
	m := &AliveMark{listener: l, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return m, nil
}

// Close releases the name. A nil AliveMark does nothing.
func (m *AliveMark) Close() {
	if m == nil {
		return
	}
	m.listener.Close()
	<-m.done
}

// aliveDaemon returns the pid of the daemon that holds the abstract name
// of socket, and whether one does. A non-root CLI counts only a holder
// running as root or as itself, so that another user who binds the name
// first cannot stop its in-process runs. Root counts any holder, and the
// message it prints names the pid.
func aliveDaemon(socket string) (int, bool) {
	conn, err := net.DialTimeout("unix", aliveName(socket), time.Second)
	if err != nil {
		return 0, false
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, false
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return 0, false
	}
	me := os.Geteuid()
	if me != 0 && cred.Uid != 0 && int(cred.Uid) != me {
		return 0, false
	}
	return int(cred.Pid), true
}
