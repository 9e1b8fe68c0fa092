package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
)

func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("reload", stdout, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 0, "no arguments"); code >= 0 {
		return code
	}
	if err := configMissing(*configPath); err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	// The daemon loads the file itself and rejects it when it is invalid;
	// this only needs the socket, which an invalid file may still name.
	socket, err := config.LocateSocket(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	summary, err := control.Reload(socket)
	if err != nil {
		// A rejected config has one problem a line, so the lines after the
		// first are indented as check indents them.
		text := strings.ReplaceAll(err.Error(), "\n", "\n  ")
		fmt.Fprintf(stderr, "agent-runner: %s%s\n", text, noDaemonHint(err))
		return exitFailure
	}
	fmt.Fprintf(stdout, "reloaded %s: %s\n", *configPath, summary)
	return exitOK
}

// noDaemonHint returns what to do when err is control.ErrNoDaemon, for
// the commands that need a running daemon.
func noDaemonHint(err error) string {
	if !errors.Is(err, control.ErrNoDaemon) {
		return ""
	}
	return "; start the daemon with agent-runner run, or systemctl start agent-runner under systemd"
}
