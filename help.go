package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/internal/suggest"
)

// commandDoc is the help of one subcommand.
type commandDoc struct {
	name string
	// synopsis shows the options and arguments after the name.
	synopsis string
	summary  string
	// examples are command lines, each with an optional "# comment".
	examples []string
	// args names what the positional arguments are, for completion:
	// argJobs, argNames, argListeners, argShells, argCommands or "".
	args string
	// hidden leaves the command out of the overview and completion.
	hidden bool
}

// What the positional arguments of a command are, for completion.
const (
	argJobs  = "jobs"
	argNames = "names"
	// argListeners are the listeners that can post, for send.
	argListeners = "listeners"
	argShells    = "shells"
	argCommands  = "commands"
)

// commands lists every subcommand in the order the overview shows them.
var commands = []commandDoc{
	{
		name:     "run",
		synopsis: "[--config PATH] [--log-format auto|text|json|journal]",
		summary: "Run the daemon: schedule the jobs and keep the listeners connected\n" +
			"until SIGTERM or SIGINT. SIGHUP reloads the config.",
		examples: []string{
			"agent-runner run --config /etc/agent-runner/config.toml",
			"agent-runner run --log-format json   # one JSON object per log line",
		},
	},
	{
		name:     "check",
		synopsis: "[--config PATH]",
		summary: "Validate the config and the files it includes, and check that every\n" +
			"job and listener can run on this machine. On problems it lists each\n" +
			"with its file, line and key, and exits 1.",
		examples: []string{
			"agent-runner check",
			"agent-runner check --config /etc/agent-runner/config.toml",
		},
	},
	{
		name:     "list",
		synopsis: "[--config PATH] [--json]",
		summary:  "List the jobs and listeners with their last result and next run.",
		examples: []string{
			"agent-runner list",
			"agent-runner list --json | jq '.jobs[].name'",
		},
	},
	{
		name:     "status",
		synopsis: "[--config PATH] [--json] [NAME]",
		summary: "Show the daemon, the jobs and the listeners, or one job or listener.\n" +
			"When no daemon responds, it shows the state in the store and exits 1.",
		examples: []string{
			"agent-runner status",
			"agent-runner status digest",
		},
		args: argNames,
	},
	{
		name:     "runs",
		synopsis: "[--config PATH] [-n N] [--json] NAME",
		summary:  "List the newest recorded runs of a job.",
		examples: []string{
			"agent-runner runs digest",
			"agent-runner runs -n 5 --json digest",
		},
		args: argJobs,
	},
	{
		name:     "logs",
		synopsis: "[--config PATH] NAME [RUN]",
		summary: "Print the output tail of a job's newest run, or of the run with the\n" +
			"ID that runs shows.",
		examples: []string{
			"agent-runner logs digest",
			"agent-runner logs digest 42",
		},
		args: argJobs,
	},
	{
		name:     "next",
		synopsis: "[--config PATH] [-n N] [--down-since TIME] NAME",
		summary:  "Show when a job runs next, and what catch-up would do after an outage.",
		examples: []string{
			"agent-runner next digest",
			"agent-runner next -n 3 --down-since 2026-12-01T08:00:00Z digest",
		},
		args: argJobs,
	},
	{
		name:     "run-job",
		synopsis: "[--config PATH] [--wait] NAME",
		summary: "Run a job now and print its output. The daemon runs it when one\n" +
			"responds, else this process does. The exit status is the job's own,\n" +
			"124 on timeout, 128+N when signal N killed it, 130 when interrupted,\n" +
			"and 125 when agent-runner could not run it.",
		examples: []string{
			"agent-runner run-job digest",
			"agent-runner run-job --wait backup   # wait for a running backup to finish first",
		},
		args: argJobs,
	},
	{
		name:     "send",
		synopsis: "[--config PATH] [--to TARGET] LISTENER TEXT...|-",
		summary: "Post a message through a listener of the running daemon. LISTENER is\n" +
			"a listener name, or a kind that exactly one listener has; - reads the\n" +
			"text from stdin.",
		examples: []string{
			"agent-runner send --to mychannel twitch 'Back in five minutes'",
			"echo 'Good morning!' | agent-runner send bluesky -",
		},
		args: argListeners,
	},
	{
		name:     "reload",
		synopsis: "[--config PATH]",
		summary: "Make the running daemon re-read the config and the files it includes,\n" +
			"as SIGHUP does. An invalid config is rejected and the running one stays.",
		examples: []string{
			"agent-runner reload",
		},
	},
	{
		name:     "reset",
		synopsis: "[--config PATH] [--force] NAME | --ahead",
		summary: "Move a job's stored position back to the clock when a clock that ran\n" +
			"ahead left it in the future, so that the job runs its next slot after\n" +
			"now and catches up nothing. A position counts as ahead when it is more\n" +
			"than 1h ahead and holds back the next slot. --ahead resets every such\n" +
			"enabled job, and --force resets NAME's position unless it is less than\n" +
			"1s ahead of the clock, where it may be a slot that started early. The\n" +
			"slots up to the old position run again as their time comes, also those\n" +
			"claimed while the clock was ahead. A running daemon re-plans the job at\n" +
			"once; without one, the store changes and the next start plans from it.",
		examples: []string{
			"agent-runner reset digest",
			"agent-runner reset --ahead   # every job whose position is ahead",
		},
		args: argJobs,
	},
	{
		name:     "doctor",
		synopsis: "[--config PATH]",
		summary: "Check the config, the machine, the state folder, the daemon and the\n" +
			"clock, and say what to fix.",
		examples: []string{
			"agent-runner doctor",
		},
	},
	{
		name:     "install-unit",
		synopsis: "[--config PATH] [--user NAME]",
		summary:  "Print a systemd service unit for this binary and config.",
		examples: []string{
			"agent-runner install-unit --config /etc/agent-runner/config.toml --user agent-runner \\\n" +
				"      | sudo tee /etc/systemd/system/agent-runner.service",
		},
	},
	{
		name:     "completion",
		synopsis: "bash|zsh|fish",
		summary:  "Print a shell script that completes subcommands, options and job names.",
		examples: []string{
			"source <(agent-runner completion bash)   # in ~/.bashrc",
			"agent-runner completion zsh > \"${fpath[1]}/_agent-runner\"",
			"mkdir -p ~/.config/fish/completions",
			"agent-runner completion fish > ~/.config/fish/completions/agent-runner.fish",
		},
		args: argShells,
	},
	{
		name:     "version",
		summary:  "Print the version.",
		examples: []string{"agent-runner version"},
	},
	{
		name:     "help",
		synopsis: "[COMMAND]",
		summary:  "Print the overview, or the help of one command.",
		examples: []string{"agent-runner help run-job"},
		args:     argCommands,
	},
	{
		name:     "__complete",
		synopsis: "SHELL -- WORDS...",
		summary: "Print the completion candidates for the last of WORDS, the words of\n" +
			"a command line after the program name. The completion scripts call it.",
		examples: []string{"agent-runner __complete bash -- run-job d"},
		hidden:   true,
	},
}

// findCommand returns the help of the command called name, or nil.
func findCommand(name string) *commandDoc {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// overview returns the text that agent-runner with no command prints.
func overview() string {
	var b strings.Builder
	b.WriteString("agent-runner runs scheduled jobs and bot listeners from one config file.\n\nUsage:\n")
	for _, doc := range commands {
		if !doc.hidden {
			// A command without arguments, such as version, would end
			// in the padding.
			line := fmt.Sprintf("  agent-runner %-12s %s", doc.name, doc.synopsis)
			b.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	b.WriteString(`
The config path defaults to $AGENT_RUNNER_CONFIG, else ./config.toml.
Run "agent-runner help COMMAND" or "agent-runner COMMAND --help" for the
options and examples of one command.
`)
	return b.String()
}

// commandFlags is the flag set of one subcommand with its help and the
// streams the help goes to.
type commandFlags struct {
	*flag.FlagSet
	doc    *commandDoc
	stdout io.Writer
	stderr io.Writer
}

// newFlags returns a flag set with the --config flag that every command
// working on a config takes.
func newFlags(name string, stdout, stderr io.Writer) (*commandFlags, *string) {
	fs := newPlainFlags(name, stdout, stderr)
	configPath := fs.String("config", config.DefaultPath(), "config file `path`")
	return fs, configPath
}

// newPlainFlags returns an empty flag set for the command called name.
// Its Usage prints the synopsis and options to stderr.
func newPlainFlags(name string, stdout, stderr io.Writer) *commandFlags {
	doc := findCommand(name)
	if doc == nil {
		panic("newPlainFlags: no help for command " + name)
	}
	fs := &commandFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), doc: doc, stdout: stdout, stderr: stderr}
	fs.SetOutput(stderr)
	fs.Usage = func() { fs.printUsage(stderr) }
	return fs
}

// printUsage writes the synopsis and the options.
func (fs *commandFlags) printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage:", strings.TrimSpace("agent-runner "+fs.doc.name+" "+fs.doc.synopsis))
	if hasFlags(fs.FlagSet) {
		fmt.Fprintln(w, "\nOptions:")
		printOptions(w, fs.FlagSet)
	}
}

// printOptions lists the flags as flag.PrintDefaults does, but with two
// dashes before a name longer than one letter, as the usage lines and the
// README write them.
func printOptions(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(w, "  %s", flagName(f.Name))
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			fmt.Fprintf(w, " %s", arg)
		}
		fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch def := f.DefValue; {
		case def == "" || def == "false" || def == "0":
		case reflect.TypeOf(f.Value).Elem().Kind() == reflect.String:
			fmt.Fprintf(w, " (default %q)", def)
		default:
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintln(w)
	})
}

// flagName returns a flag name as it is typed: -n for one letter, --json
// for a longer name.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// guessFlag returns a suggestion for the unknown flag of a parse error,
// such as "; did you mean --json?" for --jsn, or "". Names under three
// letters are too short to guess from: one edit turns any letter into -n.
func guessFlag(fs *flag.FlagSet, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok || len(name) < 3 {
		return ""
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if guess := suggest.Closest(name, names); guess != "" {
		return "; did you mean " + flagName(guess) + "?"
	}
	return ""
}

func hasFlags(fs *flag.FlagSet) bool {
	found := false
	fs.VisitAll(func(*flag.Flag) { found = true })
	return found
}

// printHelp writes the full help of the command: summary, usage, options
// and examples.
func (fs *commandFlags) printHelp(w io.Writer) {
	fmt.Fprintf(w, "%s\n\n", fs.doc.summary)
	fs.printUsage(w)
	fmt.Fprintln(w, "\nExamples:")
	for _, example := range fs.doc.examples {
		fmt.Fprintf(w, "  %s\n", example)
	}
}

// inspectFlags, when set, receives the flag set of a command instead of
// the command running; completion uses it to list a command's options.
// So every command must call parseFlags before it does anything else.
var inspectFlags func(*commandFlags)

// validCount reports whether n, the value of -n, is at least 1, and
// prints the problem otherwise.
func validCount(n int, stderr io.Writer) bool {
	if n < 1 {
		fmt.Fprintf(stderr, "agent-runner: invalid -n %d: give a count of 1 or more\n", n)
		return false
	}
	return true
}

// checkArgs returns -1 when the command got from minArgs to maxArgs
// positional arguments. Otherwise it prints a usage error with what the
// command accepts, such as "one job name", and the first unexpected
// argument, and returns exitUsage. A command that ignored an extra word
// would do what its user did not request, such as "list collect" listing
// every job.
func checkArgs(fs *commandFlags, minArgs, maxArgs int, accepts string) int {
	switch {
	case fs.NArg() < minArgs:
		fmt.Fprintf(fs.stderr, "agent-runner: %s takes %s\n", fs.Name(), accepts)
	case fs.NArg() > maxArgs:
		fmt.Fprintf(fs.stderr, "agent-runner: unexpected argument %q: %s takes %s\n", fs.Arg(maxArgs), fs.Name(), accepts)
	default:
		return -1
	}
	fs.Usage()
	return exitUsage
}

// parseFlags parses args, taking flags before and after positional
// arguments, as in "agent-runner next digest -n 3". It returns the exit
// status to stop with, or -1 to go on: 0 after printing the help that
// -h or --help requests, and exitUsage after an unknown or invalid flag,
// with the usage on stderr.
func parseFlags(fs *commandFlags, args []string) int {
	if inspectFlags != nil {
		inspectFlags(fs)
		return exitOK
	}
	// The flag package prints errors and calls Usage itself; printing
	// here instead sends the help to stdout and errors to stderr.
	fs.SetOutput(io.Discard)
	usage := fs.Usage
	fs.Usage = func() {}
	defer func() {
		fs.SetOutput(fs.stderr)
		fs.Usage = usage
	}()
	var positional []string
	for {
		err := fs.Parse(args)
		if endsWithDashDash(args, fs.NArg()) {
			// Everything after "--" is an argument, even "-x".
			positional = append(positional, fs.Args()...)
			break
		}
		if errors.Is(err, flag.ErrHelp) {
			fs.printHelp(fs.stdout)
			return exitOK
		}
		if err != nil {
			fmt.Fprintf(fs.stderr, "agent-runner %s: %v%s\n", fs.Name(), err, guessFlag(fs.FlagSet, err))
			fs.printUsage(fs.stderr)
			fmt.Fprintf(fs.stderr, "\nRun \"agent-runner help %s\" for examples.\n", fs.Name())
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	// "--" ends flag parsing, so this only sets fs.Args.
	_ = fs.Parse(append([]string{"--"}, positional...))
	return -1
}

// endsWithDashDash reports whether a parse of args that left rest
// arguments stopped at "--".
func endsWithDashDash(args []string, rest int) bool {
	i := len(args) - rest - 1
	return i >= 0 && args[i] == "--"
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	fs := newPlainFlags("help", stdout, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 1, "at most one command name"); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stdout, overview())
		return exitOK
	}
	if findCommand(fs.Arg(0)) == nil {
		fmt.Fprintf(stderr, "agent-runner: unknown command %q\n\n%s", fs.Arg(0), overview())
		return exitUsage
	}
	return run([]string{fs.Arg(0), "--help"}, stdout, stderr)
}

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newPlainFlags("version", stdout, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 0, "no arguments"); code >= 0 {
		return code
	}
	fmt.Fprintln(stdout, "agent-runner", version)
	return exitOK
}
