// The Go runtime rereads the cgroup CPU limit up to once a second to
// update GOMAXPROCS, the most frequent wake-up of an idle daemon. The
// limit is read once at start instead, so a CPUQuota= changed while the
// daemon runs takes effect at its next start.
//go:debug updatemaxprocs=0

// Command agent-runner runs a fleet of scheduled jobs and listeners from
// one config.toml under one service unit.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/agent-runner/agent-runner/process"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses shared by every subcommand. run-job also exits with the
// job's own status, 124 on timeout and 128+N when signal N killed the job.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitTimeout = 124
	// exitCannotRun means agent-runner itself could not run the job.
	exitCannotRun = 125
	exitInterrupt = 130
)

func main() {
	process.CloseInheritedOnExec()
	if err := process.ForbidInspection(); err != nil {
		fmt.Fprintf(os.Stderr, "agent-runner: %v\n", err)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches one subcommand and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, overview())
		return exitUsage
	}
	args = moveLeadingConfig(args)
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "list":
		return cmdList(rest, stdout, stderr)
	case "run-job":
		return cmdRunJob(rest, stdout, stderr)
	case "send":
		return cmdSend(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "runs":
		return cmdRuns(rest, stdout, stderr)
	case "logs":
		return cmdLogs(rest, stdout, stderr)
	case "next":
		return cmdNext(rest, stdout, stderr)
	case "reload":
		return cmdReload(rest, stdout, stderr)
	case "reset":
		return cmdReset(rest, stdout, stderr)
	case "doctor":
		return cmdDoctor(rest, stdout, stderr)
	case "install-unit":
		return cmdInstallUnit(rest, stdout, stderr)
	case "completion":
		return cmdCompletion(rest, stdout, stderr)
	case "__complete":
		return cmdComplete(rest, stdout, stderr)
	case "version", "--version":
		return cmdVersion(rest, stdout, stderr)
	case "help", "--help", "-h":
		return cmdHelp(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "agent-runner: unknown command %q\n\n%s", cmd, overview())
		return exitUsage
	}
}

// moveLeadingConfig moves a --config given before the subcommand to just
// after it, where every subcommand parses it, so that
// "agent-runner --config FILE list" works like "agent-runner list --config FILE".
func moveLeadingConfig(args []string) []string {
	var lead []string
	for len(args) > 0 {
		switch a := args[0]; {
		case a == "--config" || a == "-config":
			if len(args) < 2 {
				return append(lead, args...)
			}
			lead, args = append(lead, a, args[1]), args[2:]
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			lead, args = append(lead, a), args[1:]
		default:
			if len(lead) == 0 {
				return args
			}
			out := append([]string{a}, lead...)
			return append(out, args[1:]...)
		}
	}
	return lead
}
