// Command agent-runner runs a fleet of scheduled jobs and listeners from
// one config.toml under one service unit.
package main

import (
	"fmt"
	"io"
	"os"
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

const usage = `agent-runner runs scheduled jobs and bot listeners from one config file.

Usage:
  agent-runner run      [--config PATH] [--log-format auto|text|json|journal]
  agent-runner check    [--config PATH]
  agent-runner list     [--config PATH] [--json]
  agent-runner status   [--config PATH] [--json] [NAME]
  agent-runner runs     [--config PATH] [-n N] [--json] NAME
  agent-runner logs     [--config PATH] NAME [RUN]
  agent-runner next     [--config PATH] [-n N] [--down-since TIME] NAME
  agent-runner run-job  [--config PATH] [--wait] NAME
  agent-runner send     [--config PATH] [--to TARGET] LISTENER TEXT...|-
  agent-runner reload   [--config PATH]
  agent-runner doctor   [--config PATH]
  agent-runner install-unit [--config PATH]
  agent-runner version

The config path defaults to $AGENT_RUNNER_CONFIG, else ./config.toml.
Run "agent-runner COMMAND --help" for the options of one command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches one subcommand and returns the process exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stderr)
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
	case "doctor":
		return cmdDoctor(rest, stdout, stderr)
	case "install-unit":
		return cmdInstallUnit(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "agent-runner", version)
		return exitOK
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "agent-runner: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}
