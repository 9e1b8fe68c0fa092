package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// loadValid loads testdata/valid/name from a temporary copy and fails the
// test on any problem. It returns the config and the copy's folder.
func loadValid(t *testing.T, name string) (*Config, string) {
	t.Helper()
	dir := copyFixtures(t, "valid")
	t.Setenv("CONFIG_TEST_HOME_URL", "http://homeassistant.local:8123")
	t.Setenv("CREDENTIALS_DIRECTORY", filepath.Join(dir, "credentials"))
	config, err := Load(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	if problems := config.Problems(); len(problems) > 0 {
		t.Fatalf("load %s: got job problems %v, want none", name, problems)
	}
	return config, dir
}

func mustJob(t *testing.T, config *Config, name string) *Job {
	t.Helper()
	job := config.Job(name)
	if job == nil {
		t.Fatalf("job %q not found", name)
	}
	return job
}

func TestLoadMinimalDefaults(t *testing.T) {
	config, dir := loadValid(t, "minimal.toml")
	if got, want := config.Path, filepath.Join(dir, "minimal.toml"); got != want {
		t.Errorf("Path: got %q, want %q", got, want)
	}
	if config.Dir != dir {
		t.Errorf("Dir: got %q, want %q", config.Dir, dir)
	}
	runner := config.Runner
	if got, want := runner.StateDir, filepath.Join(dir, "state"); got != want {
		t.Errorf("StateDir: got %q, want %q", got, want)
	}
	if got, want := runner.Socket, filepath.Join(dir, "state", "control.sock"); got != want {
		t.Errorf("Socket: got %q, want %q", got, want)
	}
	if runner.SocketGroup != "" {
		t.Errorf("SocketGroup: got %q, want empty", runner.SocketGroup)
	}
	if runner.Location != time.UTC {
		t.Errorf("Location: got %v, want UTC", runner.Location)
	}
	if !slices.Equal(runner.Path, defaultRunnerPath) {
		t.Errorf("Path: got %q, want %q", runner.Path, defaultRunnerPath)
	}
	if runner.ShutdownTimeout != 30*time.Second {
		t.Errorf("ShutdownTimeout: got %v, want 30s", runner.ShutdownTimeout)
	}
	if runner.KillGrace != 10*time.Second {
		t.Errorf("KillGrace: got %v, want 10s", runner.KillGrace)
	}
	if runner.HistoryLimit != 50 {
		t.Errorf("HistoryLimit: got %d, want 50", runner.HistoryLimit)
	}

	job := mustJob(t, config, "hello")
	if job.WorkingDir != dir {
		t.Errorf("WorkingDir: got %q, want %q", job.WorkingDir, dir)
	}
	if job.Every != time.Hour {
		t.Errorf("Every: got %v, want 1h", job.Every)
	}
	if job.Cron != "" {
		t.Errorf("Cron: got %q, want empty", job.Cron)
	}
	if job.Location != time.UTC {
		t.Errorf("Location: got %v, want UTC", job.Location)
	}
	if job.CatchUp != CatchUpOnce {
		t.Errorf("CatchUp: got %q, want %q", job.CatchUp, CatchUpOnce)
	}
	if !job.Enabled {
		t.Errorf("Enabled: got false, want true")
	}
	if job.Timeout != 0 {
		t.Errorf("Timeout: got %v, want 0", job.Timeout)
	}
	if len(job.Env) != 0 {
		t.Errorf("Env: got %v, want empty", job.Env)
	}
	if job.EnvFile != "" {
		t.Errorf("EnvFile: got %q, want empty", job.EnvFile)
	}
	if job.Line != 2 {
		t.Errorf("Line: got %d, want 2", job.Line)
	}
}

func TestLoadFullRunner(t *testing.T) {
	config, dir := loadValid(t, "full.toml")
	runner := config.Runner
	if got, want := runner.StateDir, filepath.Join(dir, "var", "state"); got != want {
		t.Errorf("StateDir: got %q, want %q", got, want)
	}
	if got, want := runner.Socket, filepath.Join(dir, "run", "control.sock"); got != want {
		t.Errorf("Socket: got %q, want %q", got, want)
	}
	if got := runner.Location.String(); got != "Europe/Berlin" {
		t.Errorf("Location: got %q, want %q", got, "Europe/Berlin")
	}
	if want := []string{"/usr/bin", "/bin"}; !slices.Equal(runner.Path, want) {
		t.Errorf("Path: got %q, want %q", runner.Path, want)
	}
	if runner.ShutdownTimeout != time.Minute {
		t.Errorf("ShutdownTimeout: got %v, want 1m", runner.ShutdownTimeout)
	}
	if runner.KillGrace != 5*time.Second {
		t.Errorf("KillGrace: got %v, want 5s", runner.KillGrace)
	}
	if runner.HistoryLimit != 200 {
		t.Errorf("HistoryLimit: got %d, want 200", runner.HistoryLimit)
	}
	var names []string
	for _, job := range config.Jobs {
		names = append(names, job.Name)
	}
	if want := []string{"digest", "ping"}; !slices.Equal(names, want) {
		t.Errorf("job names: got %q, want %q", names, want)
	}
	if config.Job("absent") != nil {
		t.Errorf("Job(%q): got a job, want nil", "absent")
	}
}

// TestLoadFullDefaultsMerge checks a job that overrides some [defaults]
// keys and inherits the others.
func TestLoadFullDefaultsMerge(t *testing.T) {
	config, dir := loadValid(t, "full.toml")
	job := mustJob(t, config, "digest")
	if job.Description != "Collect the daily digest" {
		t.Errorf("Description: got %q, want %q", job.Description, "Collect the daily digest")
	}
	if want := []string{"./collect.sh", "--daily"}; !slices.Equal(job.Command, want) {
		t.Errorf("Command: got %q, want %q", job.Command, want)
	}
	if job.Cron != "30 6 * * *" {
		t.Errorf("Cron: got %q, want %q", job.Cron, "30 6 * * *")
	}
	if job.Every != 0 {
		t.Errorf("Every: got %v, want 0", job.Every)
	}
	if got, want := job.WorkingDir, filepath.Join(dir, "scripts"); got != want {
		t.Errorf("WorkingDir: got %q, want %q", got, want)
	}
	// env_file resolves against the config folder, not the working folder.
	if got, want := job.EnvFile, filepath.Join(dir, "job.env"); got != want {
		t.Errorf("EnvFile: got %q, want %q", got, want)
	}
	if want := []string{"HOME"}; !slices.Equal(job.InheritEnv, want) {
		t.Errorf("InheritEnv: got %q, want %q", job.InheritEnv, want)
	}
	if job.Timeout != 10*time.Minute {
		t.Errorf("Timeout: got %v, want 10m", job.Timeout)
	}
	if job.CatchUp != CatchUpSkip {
		t.Errorf("CatchUp: got %q, want %q", job.CatchUp, CatchUpSkip)
	}
	if !job.Enabled {
		t.Errorf("Enabled: got false, want true")
	}
	if got := job.Location.String(); got != "America/New_York" {
		t.Errorf("Location: got %q, want %q", got, "America/New_York")
	}
	if job.Line != 21 {
		t.Errorf("Line: got %d, want 21", job.Line)
	}
}

func TestLoadFullOverridesDefaults(t *testing.T) {
	config, _ := loadValid(t, "full.toml")
	job := mustJob(t, config, "ping")
	if job.Every != 90*time.Second {
		t.Errorf("Every: got %v, want 1m30s", job.Every)
	}
	if job.WorkingDir != "/" {
		t.Errorf("WorkingDir: got %q, want %q", job.WorkingDir, "/")
	}
	if job.Timeout != 0 {
		t.Errorf("Timeout: got %v, want 0", job.Timeout)
	}
	if job.CatchUp != CatchUpOnce {
		t.Errorf("CatchUp: got %q, want %q", job.CatchUp, CatchUpOnce)
	}
	if job.Enabled {
		t.Errorf("Enabled: got true, want false from [defaults]")
	}
	if job.Location != time.UTC {
		t.Errorf("Location: got %v, want UTC", job.Location)
	}
	// An empty list set by the job replaces the list in [defaults].
	if job.InheritEnv == nil || len(job.InheritEnv) != 0 {
		t.Errorf("InheritEnv: got %#v, want an empty list", job.InheritEnv)
	}
}

func TestLoadFullEnv(t *testing.T) {
	config, dir := loadValid(t, "full.toml")
	tests := []struct {
		job, name, value, source string
	}{
		{"digest", "LANG", "C.UTF-8", "inline"},
		{"digest", "LEVEL", "debug", "inline"},
		{"digest", "TOKEN", "s3cret-token", "file " + filepath.Join(dir, "secrets", "token")},
		{"digest", "API_KEY", "api-key-value", "credential api-key"},
		{"digest", "HOME_URL", "http://homeassistant.local:8123", "env CONFIG_TEST_HOME_URL"},
		{"ping", "LANG", "C.UTF-8", "inline"},
		{"ping", "LEVEL", "info", "inline"},
	}
	for _, test := range tests {
		secret, ok := mustJob(t, config, test.job).Env[test.name]
		if !ok {
			t.Errorf("%s: %s not in Env", test.job, test.name)
			continue
		}
		if got := secret.Reveal(); got != test.value {
			t.Errorf("%s: %s: got value %q, want %q", test.job, test.name, got, test.value)
		}
		if secret.Source != test.source {
			t.Errorf("%s: %s: got source %q, want %q", test.job, test.name, secret.Source, test.source)
		}
	}
	if got := len(mustJob(t, config, "digest").Env); got != 5 {
		t.Errorf("digest: got %d variables, want 5", got)
	}
	if got := len(mustJob(t, config, "ping").Env); got != 2 {
		t.Errorf("ping: got %d variables, want 2", got)
	}
}

// writeConfig writes text to config.toml in a new temporary folder and
// returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	return path
}

// loadProblems loads text and returns its problems, failing unless Load
// returns an *Error.
func loadProblems(t *testing.T, text string) []Problem {
	t.Helper()
	_, err := Load(writeConfig(t, text))
	var loadErr *Error
	if !errors.As(err, &loadErr) {
		t.Fatalf("got error %v, want *Error", err)
	}
	return loadErr.Problems
}

func TestLoadSocketPathTooLong(t *testing.T) {
	long := strings.Repeat("s", 120)
	tests := []struct {
		name, text, key string
		line            int
	}{
		{"state_dir", "[runner]\nstate_dir = \"" + long + "\"\n", "runner.state_dir", 2},
		{"socket", "[runner]\nstate_dir = \"state\"\nsocket = \"" + long + ".sock\"\n", "runner.socket", 3},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			problems := loadProblems(t, test.text)
			if len(problems) != 1 {
				t.Fatalf("got %d problems, want 1: %v", len(problems), problems)
			}
			problem := problems[0]
			if problem.Key != test.key {
				t.Errorf("Key: got %q, want %q", problem.Key, test.key)
			}
			if problem.Line != test.line {
				t.Errorf("Line: got %d, want %d", problem.Line, test.line)
			}
			if want := "must be shorter than 108 bytes: pick a shorter state_dir or socket"; !strings.Contains(problem.Message, want) {
				t.Errorf("Message: got %q, want it to contain %q", problem.Message, want)
			}
		})
	}
}

// TestLoadSocketPathLimit checks the boundary: sun_path holds 108 bytes
// including the terminating NUL, so 107 bytes fit and 108 do not.
func TestLoadSocketPathLimit(t *testing.T) {
	for _, length := range []int{107, 108} {
		socket := "/" + strings.Repeat("s", length-1)
		_, err := Load(writeConfig(t, "[runner]\nsocket = \""+socket+"\"\n"))
		if length < maxSocketPath && err != nil {
			t.Errorf("socket of %d bytes: got error %v, want none", length, err)
		}
		if length >= maxSocketPath && err == nil {
			t.Errorf("socket of %d bytes: got no error, want one", length)
		}
	}
}

func TestLoadSocketGroupExists(t *testing.T) {
	current, err := user.Current()
	if err != nil {
		t.Skipf("look up current user: %v", err)
	}
	group, err := user.LookupGroupId(current.Gid)
	if err != nil {
		t.Skipf("look up group %s: %v", current.Gid, err)
	}
	config, err := Load(writeConfig(t, "[runner]\nsocket_group = \""+group.Name+"\"\n"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if config.Runner.SocketGroup != group.Name {
		t.Errorf("SocketGroup: got %q, want %q", config.Runner.SocketGroup, group.Name)
	}
}

func TestLoadEmptyFile(t *testing.T) {
	config, err := Load(writeConfig(t, ""))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(config.Jobs) != 0 {
		t.Errorf("Jobs: got %d, want 0", len(config.Jobs))
	}
	if config.Runner.HistoryLimit != 50 {
		t.Errorf("HistoryLimit: got %d, want 50", config.Runner.HistoryLimit)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "absent.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got error %v, want one matching fs.ErrNotExist", err)
	}
	var loadErr *Error
	if errors.As(err, &loadErr) {
		t.Errorf("got *Error, want a plain read error")
	}
}

func TestLoadRelativePath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte("[runner]\nhistory = 7\n"), 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	t.Chdir(dir)
	config, err := Load("config.toml")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	// t.TempDir may sit behind a symbolic link, so compare with the folder
	// as the process sees it.
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("get working directory: %v", err)
	}
	if got, want := config.Path, filepath.Join(wd, "config.toml"); got != want {
		t.Errorf("Path: got %q, want %q", got, want)
	}
	if got, want := config.Runner.StateDir, filepath.Join(wd, "state"); got != want {
		t.Errorf("StateDir: got %q, want %q", got, want)
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("AGENT_RUNNER_CONFIG", "/etc/agent-runner/config.toml")
	if got := DefaultPath(); got != "/etc/agent-runner/config.toml" {
		t.Errorf("with $AGENT_RUNNER_CONFIG: got %q, want %q", got, "/etc/agent-runner/config.toml")
	}
	t.Setenv("AGENT_RUNNER_CONFIG", "")
	if got := DefaultPath(); got != "config.toml" {
		t.Errorf("without $AGENT_RUNNER_CONFIG: got %q, want %q", got, "config.toml")
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		problem Problem
		want    string
	}{
		{
			Problem{File: "/srv/ar/config.toml", Line: 14, Key: "jobs.digest.every", Message: `invalid duration "5 minutes"`},
			`/srv/ar/config.toml:14: jobs.digest.every: invalid duration "5 minutes"`,
		},
		{
			Problem{File: "/srv/ar/config.toml", Line: 3, Column: 9, Message: "TOML syntax error: strings must be quoted"},
			"/srv/ar/config.toml:3:9: TOML syntax error: strings must be quoted",
		},
		{
			Problem{File: "/srv/ar/config.toml", Key: "runner.socket", Message: "too long"},
			"/srv/ar/config.toml: runner.socket: too long",
		},
	}
	for _, test := range tests {
		if got := test.problem.String(); got != test.want {
			t.Errorf("got %q, want %q", got, test.want)
		}
	}
}

func TestErrorOneProblemPerLine(t *testing.T) {
	err := &Error{Problems: []Problem{
		{File: "/c.toml", Line: 1, Key: "a", Message: "first"},
		{File: "/c.toml", Line: 2, Key: "b", Message: "second"},
	}}
	want := "/c.toml:1: a: first\n/c.toml:2: b: second"
	if got := err.Error(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestKeyPathString(t *testing.T) {
	tests := []struct {
		path keyPath
		want string
	}{
		{keyPath{"jobs", "digest", "timeout"}, "jobs.digest.timeout"},
		{keyPath{"jobs", "My Job"}, `jobs."My Job"`},
		{keyPath{"runner", "path", "[2]"}, "runner.path"},
		{keyPath{"jobs", "a.b"}, `jobs."a.b"`},
	}
	for _, test := range tests {
		if got := test.path.String(); got != test.want {
			t.Errorf("%#v: got %q, want %q", test.path, got, test.want)
		}
	}
}

func TestSuggestJobName(t *testing.T) {
	tests := map[string]string{
		"My Job":       "my-job",
		"_private":     "private",
		"Backup":       "backup",
		"daily.digest": "daily-digest",
		"München":      "m-nchen",
		"!!!":          "job",
	}
	for name, want := range tests {
		got := suggestJobName(name)
		if got != want {
			t.Errorf("%q: got %q, want %q", name, got, want)
		}
		if !jobNamePattern.MatchString(got) {
			t.Errorf("%q: suggestion %q is not a valid job name", name, got)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	program := filepath.Join(dir, "tool")
	if err := os.WriteFile(program, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatalf("write program: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("text\n"), 0o644); err != nil {
		t.Fatalf("write file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dos"), []byte("#!/bin/sh\r\necho\r\n"), 0o755); err != nil {
		t.Fatalf("write script: %v", err)
	}
	tests := []struct {
		name, dir string
		path      []string
		want      string
		wantErr   string
	}{
		{"tool", "/", []string{"/nonexistent", dir}, program, ""},
		{"tool", "/", []string{"relative", "/nonexistent"}, "", `command "tool" not found in PATH relative:/nonexistent`},
		{"./tool", dir, nil, program, ""},
		{program, "/", nil, program, ""},
		{"./plain", dir, nil, "", "is not executable"},
		{"plain", "/", []string{dir}, "", "not found in PATH"},
		{"dos", "/", []string{dir}, "", "has Windows (CRLF) line endings"},
		{"tool", "/", nil, "", "not found in PATH (empty)"},
	}
	for _, test := range tests {
		got, err := LookPath(test.name, test.dir, test.path)
		if got != test.want {
			t.Errorf("LookPath(%q, %q): got %q, want %q", test.name, test.path, got, test.want)
		}
		switch {
		case test.wantErr == "" && err != nil:
			t.Errorf("LookPath(%q, %q): got error %v, want none", test.name, test.path, err)
		case test.wantErr != "" && (err == nil || !strings.Contains(err.Error(), test.wantErr)):
			t.Errorf("LookPath(%q, %q): got error %v, want one containing %q", test.name, test.path, err, test.wantErr)
		}
	}
	if _, err := LookPath("absent", "/", []string{dir}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got error %v, want one matching fs.ErrNotExist", err)
	}
}

func TestSecretFileStripsOneNewline(t *testing.T) {
	tests := map[string]string{
		"token":      "token",
		"token\n":    "token",
		"token\r\n":  "token",
		"token\n\n":  "token\n",
		"two\nlines": "two\nlines",
		"":           "",
		"spaces  \n": "spaces  ",
		"\n":         "",
	}
	dir := t.TempDir()
	for content, want := range tests {
		path := filepath.Join(dir, "secret")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatalf("write secret: %v", err)
		}
		got, err := readSecretFile(path)
		if err != nil {
			t.Fatalf("read secret: %v", err)
		}
		if got != want {
			t.Errorf("content %q: got %q, want %q", content, got, want)
		}
	}
}

func TestSecretFileRejectsNonRegular(t *testing.T) {
	_, err := readSecretFile(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("got error %v, want one saying the path is not a regular file", err)
	}
}

func TestEmptySocketMeansDefault(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte("[runner]\nstate_dir = \"var\"\nsocket = \"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config, err := Load(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if want := filepath.Join(dir, "var", "control.sock"); config.Runner.Socket != want {
		t.Errorf("Socket: got %q, want %q", config.Runner.Socket, want)
	}
}

func TestLoadSharedProgramChecks(t *testing.T) {
	dir := t.TempDir()
	text := fmt.Sprintf(`[runner]
path = [%q]

[jobs.first]
command = ["tool"]
every = "1m"

[jobs.second]
command = ["tool"]
every = "1m"
`, dir)
	path := writeConfig(t, text)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	for _, name := range []string{"first", "second"} {
		if problem := cfg.Job(name).Problem; problem == nil || !strings.Contains(problem.Error(), `command "tool" not found`) {
			t.Errorf("%s: got problem %v, want the missing command", name, problem)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatalf("write program: %v", err)
	}
	cfg, err = Load(path)
	if err != nil {
		t.Fatalf("load after install: %v", err)
	}
	for _, name := range []string{"first", "second"} {
		if problem := cfg.Job(name).Problem; problem != nil {
			t.Errorf("%s: got problem %v after the program was installed, want none", name, problem)
		}
	}
}

// Each fix of a syntax error is found by the start of go-toml's message,
// so this test feeds go-toml the mistakes behind them: a release that
// rewords one fails here instead of losing the fix without a sign.
func TestSyntaxErrorsNameFix(t *testing.T) {
	mistakes := map[string]string{
		"strings must be quoted":                  "every = 15m\n",
		"unexpected character":                    "name = hello\n",
		"basic strings cannot have new lines":     "name = \"text\nevery = \"1h\"\n",
		"literal strings cannot have new lines":   "name = 'text\n",
		"multiline basic string not terminated":   "name = \"\"\"\ntext\n",
		"multiline literal string not terminated": "name = '''\ntext\n",
		"invalid escape character":                "name = \"C:\\data\"\n",
		"expected ']' to close table name":        "[jobs.digest\nevery = \"1h\"\n",
		"expected ',' or ']' after array value":   "command = [\"echo\" \"hi\"]\n",
		"inline table is incomplete":              "env = { NAME = \"value\"\n",
		"expected newline but got":                "a = 1 b = 2\n",
		"invalid character at start of key":       "= 1\n",
		"expected '=' after key":                  "name\n",
		"expected keyword":                        "enabled = tru\n",
	}
	covered := map[string]bool{}
	for prefix, text := range mistakes {
		path := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		var loadErr *Error
		if !errors.As(err, &loadErr) || len(loadErr.Problems) != 1 {
			t.Errorf("load of %q = %v, want one problem", text, err)
			continue
		}
		message := loadErr.Problems[0].Message
		if !strings.HasPrefix(message, "TOML syntax error: "+prefix) || !strings.Contains(message, ": "+syntaxFix(prefix)) {
			t.Errorf("load of %q = %q, want the message %q and its fix", text, message, prefix)
		}
		covered[prefix] = true
	}
	for _, f := range syntaxFixes {
		if !covered[f.prefix] {
			t.Errorf("no mistake in this test produces %q", f.prefix)
		}
	}
}
