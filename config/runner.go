package config

import (
	"errors"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// defaultRunnerPath is the PATH children get when [runner] path is unset.
// It lists the NixOS folders first, so the same default works there and on
// other Linux systems.
var defaultRunnerPath = []string{
	"/run/wrappers/bin",
	"/run/current-system/sw/bin",
	"/usr/local/sbin",
	"/usr/local/bin",
	"/usr/sbin",
	"/usr/bin",
	"/sbin",
	"/bin",
}

// maxSocketPath is the size of sun_path in struct sockaddr_un on Linux. A
// socket path must leave room for the terminating NUL byte.
const maxSocketPath = 108

const (
	maxHistory     = 10000
	defaultHistory = 50
)

var runnerKeys = []string{
	"catch_up_spread", "history", "http", "kill_grace", "max_concurrent", "path", "watch",
	"shutdown_timeout", "socket", "socket_group", "state_dir", "timezone",
}

func (l *loader) decodeRunner(root table) Runner {
	runner := Runner{
		StateDir:        filepath.Join(l.dir, "state"),
		Location:        time.UTC,
		Path:            slices.Clone(defaultRunnerPath),
		ShutdownTimeout: 30 * time.Second,
		KillGrace:       10 * time.Second,
		HistoryLimit:    defaultHistory,
	}
	t, _ := l.subTable(root, "runner", "[runner]")
	l.checkKeys(t, "in [runner]", runnerKeys, nil)
	l.decodeRunnerFiles(t, &runner)
	if location, ok := l.locationValue(t, "timezone"); ok {
		runner.Location = location
	}
	if path, ok := l.stringList(t, "path", `["/usr/bin", "/bin"]`); ok {
		l.checkRunnerPath(t.key("path"), path)
		runner.Path = path
	}
	if d, ok := l.durationValue(t, "shutdown_timeout", 0); ok {
		runner.ShutdownTimeout = d
	}
	if d, ok := l.durationValue(t, "kill_grace", 0); ok {
		runner.KillGrace = d
	}
	if addr, ok := l.stringValue(t, "http", `"127.0.0.1:9090"`); ok && addr != "" {
		runner.HTTP = l.httpAddress(t.key("http"), addr)
	}
	if watch, ok := l.boolValue(t, "watch"); ok {
		runner.Watch = watch
	}
	if n, ok := l.intRange(t, "max_concurrent", "4", 0, 100000); ok {
		runner.MaxConcurrent = n
	}
	if d, ok := l.durationValue(t, "catch_up_spread", 0); ok {
		runner.CatchUpSpread = d
	}
	if n, ok := l.intValue(t, "history", "50"); ok {
		if n < 1 || n > maxHistory {
			l.report(t.key("history"), "history %d is out of range: keep between 1 and %d run records per job", n, maxHistory)
		} else {
			runner.HistoryLimit = int(n)
		}
	}
	return runner
}

// decodeRunnerFiles sets the state folder, the control socket and its
// group.
func (l *loader) decodeRunnerFiles(t table, runner *Runner) {
	if dir, ok := l.nonEmptyString(t, "state_dir", `"state"`); ok {
		runner.StateDir = l.resolve(dir)
	}
	if info, err := os.Stat(runner.StateDir); err == nil && !info.IsDir() {
		l.report(stateDirKey(t), "state_dir %s is a file, not a folder: move the file away or pick another state_dir", runner.StateDir)
	}
	// An empty socket, as the README shows the default, means
	// control.sock in the state folder.
	runner.Socket = filepath.Join(runner.StateDir, "control.sock")
	if socket, ok := l.stringValue(t, "socket", `"/run/agent-runner/control.sock"`); ok && socket != "" {
		runner.Socket = l.resolve(socket)
	}
	if len(runner.Socket) >= maxSocketPath {
		l.report(socketKey(t), "socket path %q is %d bytes long, but a Unix socket path must be shorter than %d bytes: pick a shorter state_dir or socket",
			runner.Socket, len(runner.Socket), maxSocketPath)
	}
	if group, ok := l.stringValue(t, "socket_group", `"agent-runner"`); ok && group != "" {
		l.checkGroup(t.key("socket_group"), group)
		runner.SocketGroup = group
	}
}

// stateDirKey returns the state_dir key, or the [runner] table when the
// default is in use.
func stateDirKey(t table) keyPath {
	if _, ok := t.values["state_dir"]; ok {
		return t.key("state_dir")
	}
	return t.path
}

// socketKey returns the key that decides the socket path: socket when it
// is set and not empty, else state_dir when that is set.
func socketKey(t table) keyPath {
	if socket, ok := t.values["socket"]; ok && socket != "" {
		return t.key("socket")
	}
	if _, ok := t.values["state_dir"]; ok {
		return t.key("state_dir")
	}
	return t.key("socket")
}

func (l *loader) checkGroup(path keyPath, group string) {
	_, err := user.LookupGroup(group)
	var unknown user.UnknownGroupError
	switch {
	case errors.As(err, &unknown):
		l.report(path, "group %q not found: create it with groupadd or name an existing group", group)
	case err != nil:
		l.report(path, "look up group %q: %v", group, err)
	}
}

func (l *loader) checkRunnerPath(path keyPath, folders []string) {
	for i, folder := range folders {
		if !filepath.IsAbs(folder) {
			l.reportEntry(path, i, "entry %q is not an absolute path: write a folder such as \"/usr/bin\", because PATH lookups must not depend on the working directory", folder)
		}
	}
}

// resolve makes a path from the config file absolute. Relative paths start
// at the config file's folder, not at the daemon's working directory.
func (l *loader) resolve(path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(l.dir, path)
}

// httpAddress checks the address of the health server. A bare ":PORT"
// binds loopback, since the status page and metrics need no outside
// access unless the user asks for it by naming a host.
func (l *loader) httpAddress(path keyPath, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		l.report(path, "invalid http address %q: write host:port such as \"127.0.0.1:9090\"", addr)
		return ""
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		l.report(path, "invalid port %q in http: use a number from 1 to 65535", port)
		return ""
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
