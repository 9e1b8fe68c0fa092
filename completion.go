package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/agent-runner/agent-runner/config"
)

// The completion scripts pass the words of the command line to the hidden
// __complete command, which prints one candidate per line, or the line
// filesDirective when the shell should complete a file name instead.
const filesDirective = ":files"

var completionScripts = map[string]string{
	"bash": bashCompletion,
	"zsh":  zshCompletion,
	"fish": fishCompletion,
}

var shells = []string{"bash", "fish", "zsh"}

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	fs := newPlainFlags("completion", stdout, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	accepts := "one shell: " + strings.Join(shells, ", ")
	if code := checkArgs(fs, 1, 1, accepts); code >= 0 {
		return code
	}
	script, ok := completionScripts[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "agent-runner: unknown shell %q: completion takes %s\n", fs.Arg(0), accepts)
		fs.Usage()
		return exitUsage
	}
	fmt.Fprint(stdout, script)
	return exitOK
}

// cmdComplete prints the candidates for the last of the words after
// "--". It prints nothing when a config it needs does not load, so a
// broken config never puts errors into the terminal while typing.
func cmdComplete(args []string, stdout, stderr io.Writer) int {
	fs := newPlainFlags("__complete", stdout, stderr)
	// The words after "--" are the user's, so only what comes before is
	// parsed as flags.
	dashDash := slices.Index(args, "--")
	if dashDash < 0 {
		dashDash = len(args)
	}
	if code := parseFlags(fs, args[:dashDash]); code >= 0 {
		return code
	}
	words := args[min(dashDash+1, len(args)):]
	if fs.NArg() != 1 || len(words) == 0 {
		fmt.Fprintln(stderr, "agent-runner: __complete takes a shell, --, and the words of the command line")
		fs.Usage()
		return exitUsage
	}
	for _, candidate := range complete(fs.Arg(0), words) {
		fmt.Fprintln(stdout, candidate)
	}
	return exitOK
}

// complete returns the candidates for the last word, the one under the
// cursor, of words: the command line without the program name.
func complete(shell string, words []string) []string {
	if shell == "bash" {
		words = joinAssignments(words)
	}
	current, before := words[len(words)-1], words[:len(words)-1]
	// "agent-runner --config FILE CMD" runs as "CMD --config FILE", so the
	// words before the command are read the same way.
	rest, pendingConfig := skipLeadingConfig(before)
	switch {
	case pendingConfig:
		return []string{filesDirective}
	case len(rest) == 0 && (strings.HasPrefix(current, "--config=") || strings.HasPrefix(current, "-config=")):
		return []string{filesDirective}
	case len(rest) == 0:
		return withPrefix(commandNames(), current)
	}
	before = moveLeadingConfig(before)
	doc := findCommand(before[0])
	if doc == nil || doc.hidden {
		return nil
	}
	fs := flagsOf(doc.name)
	line := scanWords(fs, before[1:])
	switch {
	case line.pending != nil:
		return flagValues(line.pending, current)
	case strings.HasPrefix(current, "-") && strings.Contains(current, "="):
		name, value, _ := strings.Cut(current, "=")
		values := flagValues(fs.Lookup(strings.TrimLeft(name, "-")), value)
		if shell == "bash" || isFiles(values) {
			// bash completes only the part after "=", which it splits off.
			return values
		}
		for i := range values {
			values[i] = name + "=" + values[i]
		}
		return values
	case strings.HasPrefix(current, "-") && !line.dashDash:
		return withPrefix(flagNames(fs), current)
	case line.positional == 0:
		return withPrefix(argumentNames(doc.args, line.config), current)
	}
	return nil
}

// skipLeadingConfig returns the words after the --config flags that come
// before the command, and whether the last of them still lacks its value.
func skipLeadingConfig(words []string) ([]string, bool) {
	for len(words) > 0 {
		switch word := words[0]; {
		case word == "--config" || word == "-config":
			if len(words) == 1 {
				return nil, true
			}
			words = words[2:]
		case strings.HasPrefix(word, "--config=") || strings.HasPrefix(word, "-config="):
			words = words[1:]
		default:
			return words, false
		}
	}
	return nil, false
}

// joinAssignments undoes bash's split of "--config=x" into "--config",
// "=" and "x", which happens because "=" is in COMP_WORDBREAKS.
func joinAssignments(words []string) []string {
	var joined []string
	for i := 0; i < len(words); i++ {
		n := len(joined)
		if words[i] == "=" && n > 0 && strings.HasPrefix(joined[n-1], "-") && !strings.Contains(joined[n-1], "=") {
			joined[n-1] += "="
			if i+1 < len(words) {
				joined[n-1] += words[i+1]
				i++
			}
			continue
		}
		joined = append(joined, words[i])
	}
	return joined
}

// commandLine is the state of the words before the cursor, as scanWords
// reads them.
type commandLine struct {
	// config is the value of --config, or the default path.
	config string
	// pending is the flag whose value is the word under the cursor.
	pending *flag.Flag
	// positional counts the arguments that are not flags.
	positional int
	dashDash   bool
}

func scanWords(fs *commandFlags, words []string) commandLine {
	line := commandLine{config: config.DefaultPath()}
	for i := 0; i < len(words); i++ {
		word := words[i]
		switch {
		case line.dashDash || word == "-" || !strings.HasPrefix(word, "-"):
			line.positional++
		case word == "--":
			line.dashDash = true
		default:
			name, value, hasValue := strings.Cut(strings.TrimLeft(word, "-"), "=")
			f := fs.Lookup(name)
			if f == nil || isBoolFlag(f) || hasValue {
				if f != nil && f.Name == "config" && hasValue {
					line.config = value
				}
				continue
			}
			if i+1 == len(words) {
				line.pending = f
				continue
			}
			i++
			if f.Name == "config" {
				line.config = words[i]
			}
		}
	}
	return line
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func isFiles(values []string) bool {
	return len(values) == 1 && values[0] == filesDirective
}

// flagValues returns the candidates for the value of f.
func flagValues(f *flag.Flag, prefix string) []string {
	if f == nil {
		return nil
	}
	switch f.Name {
	case "config":
		return []string{filesDirective}
	case "log-format":
		return withPrefix([]string{"auto", "journal", "json", "text"}, prefix)
	}
	return nil
}

// flagsOf returns the flag set that the command called name builds. It
// runs the command with inspectFlags set, so the command stops in
// parseFlags before it does anything else.
func flagsOf(name string) *commandFlags {
	var captured *commandFlags
	inspectFlags = func(fs *commandFlags) { captured = fs }
	defer func() { inspectFlags = nil }()
	run([]string{name}, io.Discard, io.Discard)
	if captured == nil {
		return newPlainFlags(name, io.Discard, io.Discard)
	}
	return captured
}

func flagNames(fs *commandFlags) []string {
	names := []string{"--help"}
	fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
	slices.Sort(names)
	return names
}

func commandNames() []string {
	var names []string
	for _, doc := range commands {
		if !doc.hidden {
			names = append(names, doc.name)
		}
	}
	return names
}

// argumentNames returns the candidates for the first positional argument
// of a command that takes args.
func argumentNames(args, configPath string) []string {
	switch args {
	case argShells:
		return shells
	case argCommands:
		return commandNames()
	case argJobs, argNames, argListeners:
		return configNames(args, configPath)
	}
	return nil
}

// configNames loads the config and returns its job names, listener names
// and kinds, or both, as args selects. For argListeners, the listeners
// of send, it leaves out exec listeners, which cannot post. A config
// that does not load gives none.
func configNames(args, configPath string) []string {
	cfg, err := config.Load(configPath)
	if err != nil {
		return nil
	}
	var names []string
	if args != argListeners {
		for _, job := range cfg.Jobs {
			names = append(names, job.Name)
		}
	}
	if args != argJobs {
		for _, listener := range cfg.Listeners {
			if args == argListeners && listener.Kind == config.KindExec {
				continue
			}
			names = append(names, listener.Name)
			if args == argListeners && !slices.Contains(names, listener.Kind) {
				names = append(names, listener.Kind)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func withPrefix(names []string, prefix string) []string {
	var matches []string
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			matches = append(matches, name)
		}
	}
	return matches
}

const bashCompletion = `# bash completion for agent-runner: source <(agent-runner completion bash)
_agent_runner() {
    local cur="${COMP_WORDS[COMP_CWORD]}" out
    out=$("${COMP_WORDS[0]}" __complete bash -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null) || return 0
    if [[ $out == ":files" ]]; then
        [[ $cur == "=" ]] && cur=""
        compopt -o filenames 2>/dev/null
        local IFS=$'\n'
        COMPREPLY=($(compgen -f -- "$cur"))
        return 0
    fi
    local IFS=$'\n'
    COMPREPLY=($out)
}
# ./agent-runner is the binary that go build leaves in the checkout.
complete -F _agent_runner agent-runner ./agent-runner
`

const zshCompletion = `#compdef agent-runner
# zsh completion for agent-runner: agent-runner completion zsh > "${fpath[1]}/_agent-runner"

_agent-runner() {
    local -a out
    out=("${(@f)$("${words[1]}" __complete zsh -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    out=(${out:#})
    if [[ "${out[1]}" == ":files" ]]; then
        [[ $PREFIX == -*=* ]] && compset -P '*='
        _files
        return
    fi
    (( ${#out} )) && compadd -- "${out[@]}"
}

if [[ "${funcstack[1]}" == "_agent-runner" ]]; then
    _agent-runner "$@"
else
    compdef _agent-runner agent-runner
fi
`

const fishCompletion = `# fish completion for agent-runner: agent-runner completion fish > ~/.config/fish/completions/agent-runner.fish
function __agent_runner_complete
    set -l words (commandline -opc)
    set -l current (commandline -ct)
    set -l out ($words[1] __complete fish -- $words[2..-1] $current 2>/dev/null)
    if test "$out[1]" = ":files"
        set -l prefix (string match -r -- '^-[^=]*=' $current)
        for path in (__fish_complete_path (string replace -r -- '^-[^=]*=' '' $current))
            echo "$prefix$path"
        end
        return
    end
    printf '%s\n' $out
end
complete -c agent-runner -f -a '(__agent_runner_complete)'
`
