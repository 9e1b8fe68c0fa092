package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// runBinary runs agent-runner with args and no config from the
// environment.
func runBinary(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "AGENT_RUNNER_CONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatalf("run agent-runner %v: %v", args, err)
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, doc := range commands {
		if doc.hidden {
			continue
		}
		for _, args := range [][]string{{doc.name, "--help"}, {doc.name, "-h"}, {"help", doc.name}} {
			res := runBinary(t, args...)
			if res.code != 0 {
				t.Errorf("%v: exit %d, want 0; stderr %q", args, res.code, res.stderr)
			}
			if res.stderr != "" {
				t.Errorf("%v: stderr %q, want none", args, res.stderr)
			}
			if want := "Usage: agent-runner " + doc.name; !strings.Contains(res.stdout, want) {
				t.Errorf("%v: help lacks %q:\n%s", args, want, res.stdout)
			}
			_, examples, _ := strings.Cut(res.stdout, "\nExamples:\n")
			if want := "agent-runner " + doc.name; !strings.Contains(examples, want) {
				t.Errorf("%v: help has no example with %q:\n%s", args, want, res.stdout)
			}
		}
	}
}

func TestHelpListsOptions(t *testing.T) {
	res := runBinary(t, "run-job", "--help")
	for _, want := range []string{"-config path", "-wait", "agent-runner run-job digest"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("run-job --help lacks %q:\n%s", want, res.stdout)
		}
	}
}

func TestUnknownFlagExitsWithUsage(t *testing.T) {
	for _, doc := range commands {
		if doc.hidden {
			continue
		}
		res := runBinary(t, doc.name, "--no-such-flag")
		if res.code != exitUsage {
			t.Errorf("%s --no-such-flag: exit %d, want %d", doc.name, res.code, exitUsage)
		}
		if res.stdout != "" {
			t.Errorf("%s --no-such-flag: stdout %q, want none", doc.name, res.stdout)
		}
		for _, want := range []string{"flag provided but not defined: -no-such-flag", "Usage: agent-runner " + doc.name} {
			if !strings.Contains(res.stderr, want) {
				t.Errorf("%s --no-such-flag: stderr lacks %q:\n%s", doc.name, want, res.stderr)
			}
		}
	}
}

func TestHelpUnknownCommand(t *testing.T) {
	res := runBinary(t, "help", "frobnicate")
	if res.code != exitUsage || !strings.Contains(res.stderr, `unknown command "frobnicate"`) {
		t.Errorf("help frobnicate = %d %q, want %d and the overview", res.code, res.stderr, exitUsage)
	}
}

func TestDashDashEndsFlags(t *testing.T) {
	// Without a daemon, send fails after parsing; "-x" after "--" must be
	// text, not an unknown flag.
	p := newProject(t, "[jobs.a]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("send", "chat", "--", "-x", "-y")
	if res.code == exitUsage || strings.Contains(res.stderr, "flag provided but not defined") {
		t.Errorf("send chat -- -x -y = %d %q, want the words after -- taken as text", res.code, res.stderr)
	}
}

// bashComplete sources the bash completion script, sets COMP_WORDS to
// words with the cursor on the last one, and returns COMPREPLY.
func bashComplete(t *testing.T, script string, env []string, words ...string) []string {
	t.Helper()
	line := []string{binary}
	line = append(line, words...)
	quoted := make([]string, len(line))
	for i, word := range line {
		quoted[i] = "'" + strings.ReplaceAll(word, "'", `'\''`) + "'"
	}
	program := "source " + script + "\n" +
		"COMP_WORDS=(" + strings.Join(quoted, " ") + ")\n" +
		"COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n" +
		"_agent_runner\n" +
		`printf '%s\n' "${COMPREPLY[@]}"` + "\n"
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", program)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", words, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("bash completion of %q wrote to stderr: %s", words, stderr.String())
	}
	var reply []string
	for _, line := range strings.Split(stdout.String(), "\n") {
		if line != "" {
			reply = append(reply, line)
		}
	}
	return reply
}

func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bash is missing")
		}
		t.Skip("bash is missing")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "agent-runner.bash")
	res := runBinary(t, "completion", "bash")
	if res.code != 0 {
		t.Fatalf("completion bash = %d %q", res.code, res.stderr)
	}
	if err := os.WriteFile(script, []byte(res.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.toml")
	jobs := "[jobs.nightly-digest]\ncommand = [\"true\"]\nevery = \"1h\"\n\n[jobs.night-owl]\ncommand = [\"true\"]\nevery = \"1h\"\n\n[jobs.backup]\ncommand = [\"true\"]\nevery = \"1h\"\n"
	if err := os.WriteFile(config, []byte(jobs), 0o600); err != nil {
		t.Fatal(err)
	}
	noConfig := []string{"AGENT_RUNNER_CONFIG=" + filepath.Join(dir, "absent.toml")}

	tests := []struct {
		name  string
		env   []string
		words []string
		want  []string
	}{
		{"subcommand", noConfig, []string{"run-j"}, []string{"run-job"}},
		{"subcommands by prefix", noConfig, []string{"ru"}, []string{"run", "runs", "run-job"}},
		{"flags", noConfig, []string{"run-job", "--w"}, []string{"--wait"}},
		{"flag value", noConfig, []string{"run", "--log-format", "j"}, []string{"journal", "json"}},
		{"flag value after =", noConfig, []string{"run", "--log-format", "=", "t"}, []string{"text"}},
		{"job name", noConfig, []string{"run-job", "--config", config, "nig"}, []string{"night-owl", "nightly-digest"}},
		{"job name with --config=", noConfig, []string{"logs", "--config", "=", config, "b"}, []string{"backup"}},
		{"job name from the environment", []string{"AGENT_RUNNER_CONFIG=" + config}, []string{"next", "nightly"}, []string{"nightly-digest"}},
		{"job name after a flag", []string{"AGENT_RUNNER_CONFIG=" + config}, []string{"runs", "-n", "3", ""}, []string{"backup", "night-owl", "nightly-digest"}},
		{"no second job", []string{"AGENT_RUNNER_CONFIG=" + config}, []string{"run-job", "backup", ""}, nil},
		{"missing config", noConfig, []string{"run-job", ""}, nil},
		{"shell", noConfig, []string{"completion", "z"}, []string{"zsh"}},
		{"config file", noConfig, []string{"check", "--config", filepath.Join(dir, "conf")}, []string{config}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := bashComplete(t, script, test.env, test.words...)
			if !slices.Equal(got, test.want) {
				t.Errorf("COMPREPLY = %q, want %q", got, test.want)
			}
		})
	}

	// A broken config completes nothing and prints nothing.
	if err := os.WriteFile(config, []byte("[jobs.x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := bashComplete(t, script, noConfig, "run-job", "--config", config, ""); len(got) != 0 {
		t.Errorf("COMPREPLY with a broken config = %q, want none", got)
	}
}

// The README's build step leaves ./agent-runner in the checkout, which
// bash completes only when the script registers that name too.
func TestBashCompletionRegistersLocalBuild(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bash is missing")
		}
		t.Skip("bash is missing")
	}
	script := filepath.Join(t.TempDir(), "agent-runner.bash")
	res := runBinary(t, "completion", "bash")
	if err := os.WriteFile(script, []byte(res.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"agent-runner", "./agent-runner"} {
		out, err := exec.Command("bash", "--norc", "--noprofile", "-c", "source "+script+" && complete -p "+name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "_agent_runner") {
			t.Errorf("bash completion for %s is not registered: %v %q", name, err, out)
		}
	}
}

func TestCompleteZshAndFishKeepFlagPrefix(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		res := runBinary(t, "__complete", shell, "--", "run", "--log-format=js")
		if res.code != 0 || res.stdout != "--log-format=json\n" {
			t.Errorf("__complete %s run --log-format=js = %d %q, want --log-format=json", shell, res.code, res.stdout)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		res := runBinary(t, "completion", shell)
		if res.code != 0 || !strings.Contains(res.stdout, "__complete "+shell) {
			t.Errorf("completion %s = %d, script lacks the __complete call:\n%s", shell, res.code, res.stdout)
		}
	}
	if res := runBinary(t, "completion", "tcsh"); res.code != exitUsage {
		t.Errorf("completion tcsh exit = %d, want %d", res.code, exitUsage)
	}
}

// writeCompletionSetup writes the completion script for shell and a
// config with two jobs into a new folder, with the binary linked there as
// agent-runner, so a shell finds it by that name on PATH.
func writeCompletionSetup(t *testing.T, shell string) (dir, script string) {
	t.Helper()
	if _, err := exec.LookPath(shell); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; .ci/run installs it", shell)
		}
		t.Skipf("%s is missing", shell)
	}
	dir = t.TempDir()
	res := runBinary(t, "completion", shell)
	if res.code != 0 {
		t.Fatalf("completion %s = %d %q", shell, res.code, res.stderr)
	}
	script = filepath.Join(dir, "agent-runner."+shell)
	jobs := "[jobs.nightly-digest]\ncommand = [\"true\"]\nevery = \"1h\"\n\n[jobs.backup]\ncommand = [\"true\"]\nevery = \"1h\"\n"
	for name, content := range map[string]string{script: res.stdout, filepath.Join(dir, "config.toml"): jobs} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(binary, filepath.Join(dir, "agent-runner")); err != nil {
		t.Fatal(err)
	}
	return dir, script
}

// shellOutput runs program in shell inside dir and returns its output
// lines.
func shellOutput(t *testing.T, dir string, args ...string) []string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "AGENT_RUNNER_CONFIG=", "HOME="+dir, "XDG_CONFIG_HOME="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", args[0], err, stderr.String())
	}
	var out []string
	for _, line := range strings.Split(stdout.String(), "\n") {
		// fish adds a tab and a description to file candidates.
		if line, _, _ = strings.Cut(line, "\t"); line != "" {
			out = append(out, line)
		}
	}
	return out
}

func TestCompletionFish(t *testing.T) {
	dir, script := writeCompletionSetup(t, "fish")
	tests := []struct {
		line string
		want []string
	}{
		{"agent-runner run-j", []string{"run-job"}},
		{"agent-runner run-job --w", []string{"--wait"}},
		{"agent-runner run-job --config config.toml nig", []string{"nightly-digest"}},
		{"agent-runner check --config conf", []string{"config.toml"}},
		{"agent-runner check --config=conf", []string{"--config=config.toml"}},
		{"agent-runner run-job --config missing.toml ", nil},
	}
	for _, test := range tests {
		got := shellOutput(t, dir, "fish", "--no-config", "-c", "source "+script+"; complete -C'"+test.line+"'")
		if !slices.Equal(got, test.want) {
			t.Errorf("fish completion of %q = %q, want %q", test.line, got, test.want)
		}
	}
}

// TestCompletionZsh runs the zsh function with words and CURRENT set as
// compsys sets them, and with compadd and _files replaced by functions
// that print what they are given, since compsys needs a terminal.
func TestCompletionZsh(t *testing.T) {
	dir, script := writeCompletionSetup(t, "zsh")
	stubs := `compdef() { :; }; compadd() { shift; print -rl -- "$@"; }; _files() { print -r -- FILES; }; compset() { :; }` + "\n"
	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{"run-j"}, []string{"run-job"}},
		{[]string{"run-job", "--config", "config.toml", ""}, []string{"backup", "nightly-digest"}},
		{[]string{"check", "--config", ""}, []string{"FILES"}},
		{[]string{"run", "--log-format=js"}, []string{"--log-format=json"}},
		{[]string{"run-job", "--config", "missing.toml", ""}, nil},
	}
	for _, test := range tests {
		words := "agent-runner"
		for _, word := range test.words {
			words += " '" + word + "'"
		}
		program := stubs + "source " + script + "\nwords=(" + words + ")\nCURRENT=" + strconv.Itoa(len(test.words)+1) + "\n_agent-runner\ntrue\n"
		got := shellOutput(t, dir, "zsh", "-f", "-c", program)
		if !slices.Equal(got, test.want) {
			t.Errorf("zsh completion of %q = %q, want %q", test.words, got, test.want)
		}
	}
}

func TestCheckWarnsOfPassedAt(t *testing.T) {
	p := newProject(t, `[jobs.once]
command = ["true"]
at = "2020-01-02T03:04:05Z"
`)
	res := p.run("check")
	if res.code != 0 {
		t.Fatalf("check = %d %q, want a warning, not a failure", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, "job once: at 2020-01-02T03:04:05Z has passed") {
		t.Errorf("check stderr %q, want a warning that the at instant passed", res.stderr)
	}
}

func TestNextSaysDisabledJobDoesNotRun(t *testing.T) {
	p := newProject(t, `[jobs.off]
command = ["true"]
every = "1h"
enabled = false
`)
	res := p.run("next", "off")
	if res.code != 0 {
		t.Fatalf("next = %d %q", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "off is disabled") {
		t.Errorf("next of a disabled job:\n%s\nwant a line saying it does not run", res.stdout)
	}
}

func TestJobCommandsNameAListener(t *testing.T) {
	p := newProject(t, `[listeners.watcher]
kind = "exec"
command = ["sleep", "300"]
`)
	for _, args := range [][]string{{"runs", "watcher"}, {"next", "watcher"}, {"run-job", "watcher"}} {
		res := p.run(args...)
		if res.code == 0 || !strings.Contains(res.stderr, "watcher is a listener, not a job") {
			t.Errorf("%v = %d %q, want an error saying watcher is a listener", args, res.code, res.stderr)
		}
	}
}

func TestSendUnknownListenerListsNames(t *testing.T) {
	p := newProject(t, `[listeners.watcher]
kind = "exec"
command = ["sleep", "300"]
`)
	d := p.startDaemon()
	defer d.stop()
	res := p.run("send", "nope", "hello")
	if res.code == 0 {
		t.Errorf("send through an unknown listener exited 0, want a failure")
	}
	if want := `no listener is named "nope" or has that kind; the config has watcher (exec)`; !strings.Contains(res.stderr, want) {
		t.Errorf("send through an unknown listener: stderr %q, want it to contain %q", res.stderr, want)
	}
}

func TestSendThroughExecListenerNamesKinds(t *testing.T) {
	p := newProject(t, `[listeners.watcher]
kind = "exec"
command = ["sleep", "300"]
`)
	d := p.startDaemon()
	defer d.stop()
	res := p.run("send", "watcher", "hello")
	want := "listener watcher cannot post messages: only twitch, discord and bluesky listeners post"
	if res.code == 0 || !strings.Contains(res.stderr, want) {
		t.Errorf("send through an exec listener = %d %q, want a failure containing %q", res.code, res.stderr, want)
	}
}

func TestCompleteSendSkipsExecListeners(t *testing.T) {
	p := newProject(t, `[listeners.watcher]
kind = "exec"
command = ["sleep", "300"]

[listeners.chat]
kind = "twitch"
channels = ["somechannel"]
`)
	res := p.complete("send")
	if res.code != 0 {
		t.Fatalf("__complete send = %d %q", res.code, res.stderr)
	}
	if got, want := strings.Fields(res.stdout), []string{"chat", "twitch"}; !slices.Equal(got, want) {
		t.Errorf("__complete send: got %q, want %q", got, want)
	}
}
