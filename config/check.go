package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// checkJobs sets Job.Env and Job.Problem of every job by reading its
// secrets and checking its folder, command and env file on this machine.
func (l *loader) checkJobs() {
	for _, plan := range l.jobs {
		checks := l.checks()
		plan.job.Env = resolveEnv(&checks, &l.warnings, plan.settings.env)
		dirKey := plan.settings.workingDir.or(setting[string]{key: plan.path}).key
		dirOK := checkWorkingDir(&checks, l.stats, dirKey, plan.job.WorkingDir)
		checkCommand(&checks, l.stats, plan, dirOK)
		fileEnv := checkEnvFile(&checks, plan.settings.envFile)
		warnShortNamedSecrets(&l.warnings, plan.settings, fileEnv)
		plan.job.Identity = checkLimits(&checks, plan.settings.limits, "job")
		plan.job.Problem = checks.err()
	}
}

// checkEnvFile reads the env file, when one is set, and returns its
// variables, or nil when it cannot be read.
func checkEnvFile(checks *reporter, file setting[string]) map[string]string {
	if !file.isSet() {
		return nil
	}
	env, err := ReadEnvFile(file.value)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		checks.report(file.key, "env file %s does not exist: create it or fix the path", file.value)
	case err != nil:
		checks.report(file.key, "%v", err)
	}
	return env
}

// warnShortNamedSecrets warns about each value from the env file or
// inherit_env that a child gets under a name SecretName counts as a
// secret, but that is too short to be redacted from its output, as
// resolveEnv warns about a short { file = ... } secret. Inherited values
// are looked up in this process's environment, as { env = ... } secrets
// are. The warnings name the variable, never the value.
func warnShortNamedSecrets(warnings *reporter, s machineSettings, fileEnv map[string]string) {
	for _, name := range s.inheritEnv.value {
		_, inFile := fileEnv[name]
		_, inEnv := s.env[name]
		if value, ok := os.LookupEnv(name); ok && !inFile && !inEnv && NamedSecret(name, value) && tooShortToRedact(value) {
			warnings.report(s.inheritEnv.key, "%s counts as a secret by its name, but its value in the environment is too short to be redacted from output (under %d bytes): use a longer value, or another name if it is no secret",
				name, MinSecretBytes)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(fileEnv)) {
		if _, inEnv := s.env[name]; !inEnv && NamedSecret(name, fileEnv[name]) && tooShortToRedact(fileEnv[name]) {
			warnings.report(s.envFile.key, "%s counts as a secret by its name, but its value in the env file is too short to be redacted from output (under %d bytes): use a longer value, or another name if it is no secret",
				name, MinSecretBytes)
		}
	}
}

// tooShortToRedact reports whether a secret's value is not empty but has
// no part long enough for redaction.
func tooShortToRedact(value string) bool {
	return strings.TrimSpace(value) != "" && len(NewSecret(value, "").Needles()) == 0
}

func checkWorkingDir(checks *reporter, stats statCache, key keyPath, dir string) bool {
	info, err := stats.stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		checks.report(key, "working_dir %s does not exist: create the folder or fix the path", dir)
	case err != nil:
		checks.report(key, "check working_dir: %v", err)
	case !info.IsDir():
		checks.report(key, "working_dir %s is not a folder: name the folder the command runs in", dir)
	default:
		return true
	}
	return false
}

// checkCommand reports a job's command that LookPath cannot find.
func checkCommand(checks *reporter, stats statCache, plan jobPlan, dirOK bool) {
	argv, key := plan.job.Command, plan.commandKey
	if post := plan.job.Post; post != nil {
		argv, key = post.TextCommand, plan.path.child("post").child("text_command")
	}
	if len(argv) == 0 || argv[0] == "" {
		// A post with plain text runs nothing, and an invalid command was
		// reported by the file checks.
		return
	}
	checkProgram(checks, stats, program{
		name:       argv[0],
		key:        key,
		dir:        plan.job.WorkingDir,
		env:        plan.job.Env,
		runnerPath: plan.runnerPath,
		owner:      "job",
	}, dirOK)
}

// program is the first entry of an argv that a job or a listener runs,
// with what LookPath needs to find it.
type program struct {
	name string
	// key is the key the argv is written at.
	key keyPath
	dir string
	// env is searched for PATH, which wins over runnerPath.
	env        map[string]Secret
	runnerPath []string
	// owner is "job" or "listener", for the messages.
	owner string
}

// checkProgram reports a program that LookPath cannot find. It skips
// relative paths when the working folder is missing, since that problem is
// already reported.
func checkProgram(checks *reporter, stats statCache, p program, dirOK bool) {
	if strings.Contains(p.name, "/") && !filepath.IsAbs(p.name) && !dirOK {
		return
	}
	path, hint := p.runnerPath, "add its folder to [runner] path"
	ownPath, hasOwnPath := p.env["PATH"]
	if hasOwnPath {
		path, hint = filepath.SplitList(ownPath.Reveal()), "add its folder to PATH in the "+p.owner+"'s env"
	}
	_, err := lookPath(stats, p.name, p.dir, path)
	var notFound *commandNotFoundError
	switch {
	case errors.As(err, &notFound) && hasOwnPath && ownPath.Source != envInline:
		// A PATH read from a secret source is a secret too, so the
		// message names its source instead of listing its folders.
		checks.report(p.key, "command %q not found in the %s's PATH from %s: install it, use an absolute path, or %s", p.name, p.owner, ownPath.Source, hint)
	case errors.As(err, &notFound):
		checks.report(p.key, "%v: install it, use an absolute path, or %s", err, hint)
	case err != nil:
		checks.report(p.key, "%v", err)
	}
}

// LookPath returns the absolute path of the program that a job's command
// name runs. A name with a "/" is taken relative to dir, and any other
// name is searched in the folders of path, skipping relative ones. Unlike
// exec.LookPath it does not use the daemon's own PATH, because children
// get the runner's PATH instead.
func LookPath(name, dir string, path []string) (string, error) {
	return lookPath(nil, name, dir, path)
}

func lookPath(stats statCache, name, dir string, path []string) (string, error) {
	file, err := findProgram(stats, name, dir, path)
	if errors.Is(err, fs.ErrNotExist) {
		if hint := shellHint(name); hint != "" {
			return "", fmt.Errorf("command %q does not exist: %s", name, hint)
		}
	}
	return file, err
}

// shellHint explains a program name that only a shell would have run:
// a whole command line in one string, or a path starting with "~".
func shellHint(name string) string {
	if words := strings.Fields(name); len(words) > 1 {
		quoted := make([]string, len(words))
		for i, word := range words {
			quoted[i] = strconv.Quote(word)
		}
		return fmt.Sprintf("no shell splits it into words, so write each as its own string: [%s]", strings.Join(quoted, ", "))
	}
	if strings.HasPrefix(name, "~") {
		return `no shell expands "~", so write the folder in full`
	}
	return ""
}

func findProgram(stats statCache, name, dir string, path []string) (string, error) {
	if strings.Contains(name, "/") {
		file := name
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		if err := executableProblem(file, stats); err != nil {
			return "", fmt.Errorf("command %q: %w", name, err)
		}
		if err := scriptProblem(stats, stats.head(file), file); err != nil {
			return "", fmt.Errorf("command %q: %w", name, err)
		}
		return file, nil
	}
	for _, folder := range path {
		if !filepath.IsAbs(folder) {
			continue
		}
		file := filepath.Join(folder, name)
		if info, err := stats.stat(file); err == nil && isExecutable(info) {
			if err := scriptProblem(stats, stats.head(file), name); err != nil {
				return "", fmt.Errorf("command %q: %w", name, err)
			}
			return file, nil
		}
	}
	return "", &commandNotFoundError{name: name, path: path}
}

// commandNotFoundError matches fs.ErrNotExist in errors.Is.
type commandNotFoundError struct {
	name string
	path []string
}

func (e *commandNotFoundError) Error() string {
	path := strings.Join(e.path, ":")
	if path == "" {
		path = "(empty)"
	}
	return fmt.Sprintf("command %q not found in PATH %s", e.name, path)
}

func (e *commandNotFoundError) Unwrap() error { return fs.ErrNotExist }

// programMissingError matches fs.ErrNotExist in errors.Is.
type programMissingError struct {
	file string
}

func (e *programMissingError) Error() string {
	return e.file + " does not exist: fix the path or install the program"
}

func (e *programMissingError) Unwrap() error { return fs.ErrNotExist }

// executableProblem describes why file cannot be run, or returns nil.
func executableProblem(file string, stats statCache) error {
	info, err := stats.stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &programMissingError{file: file}
	case err != nil:
		return err
	case !info.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file: point the command at the program itself", file)
	case info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable: run chmod +x on it", file)
	}
	return nil
}

// scriptHeadBytes is how much of a program scriptProblem reads: enough
// for the #! line that the kernel reads.
const scriptHeadBytes = 256

// readHead returns the first scriptHeadBytes of file, or nil when it
// cannot be read.
func readHead(file string) []byte {
	// O_NONBLOCK keeps a file swapped for a FIFO since the stat from
	// blocking the open, and the check of the open file from reading it.
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return nil
	}
	head := make([]byte, scriptHeadBytes)
	n, _ := io.ReadFull(f, head)
	return head[:n]
}

// scriptProblem describes why exec rejects an executable text program
// whose first bytes are head: no #! line, Windows line endings or a
// missing interpreter. Exec's own errors for these, "exec format error"
// and "no such file or directory", do not name the cause.
// displayName is the program in the message, because the folder of a
// program found on a PATH from a secret is part of that secret.
func scriptProblem(stats statCache, head []byte, displayName string) error {
	if head == nil || bytes.HasPrefix(head, []byte("\x7fELF")) || bytes.IndexByte(head, 0) >= 0 {
		return nil
	}
	line, _, _ := bytes.Cut(head, []byte("\n"))
	switch {
	case bytes.HasPrefix(line, []byte("\xef\xbb\xbf#!")):
		// Editors hide a byte order mark, so the message names it
		// rather than report a missing #! line.
		return fmt.Errorf(`%s starts with a UTF-8 byte order mark before its #! line, so it cannot be executed: save it without the mark, such as with sed -i '1s/^\xEF\xBB\xBF//'`, displayName)
	case !bytes.HasPrefix(line, []byte("#!")):
		return fmt.Errorf(`%s has no #! line, so it cannot be executed: make its first line name its interpreter, such as "#!/bin/sh" or "#!/usr/bin/env python3"`, displayName)
	case bytes.HasSuffix(line, []byte("\r")):
		return fmt.Errorf(`%s has Windows (CRLF) line endings, so its #! line names an interpreter that does not exist: convert it with dos2unix or sed -i 's/\r$//'`, displayName)
	}
	fields := strings.Fields(string(line[2:]))
	if len(fields) == 0 {
		return fmt.Errorf(`%s has an empty #! line: name its interpreter, such as "#!/bin/sh"`, displayName)
	}
	interpreter := fields[0]
	if _, err := stats.stat(interpreter); filepath.IsAbs(interpreter) && errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the interpreter %s that %s names in its #! line does not exist: install it or fix the #! line", interpreter, displayName)
	}
	return nil
}

func isExecutable(info fs.FileInfo) bool {
	return info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}

// statCache keeps the os.Stat results of one Load, in which thousands of
// jobs may share a working folder and a program. A nil cache stats every
// time.
type statCache map[string]statResult

// statResult is the cached result of os.Stat and readHead for one path.
// Each has its own flag, so a cached stat is never taken for a read head.
type statResult struct {
	// info and err are the result of os.Stat, once statted is set.
	info    fs.FileInfo
	err     error
	statted bool
	// head is the result of readHead, once headRead is set.
	head     []byte
	headRead bool
}

func (c statCache) stat(path string) (fs.FileInfo, error) {
	if c == nil {
		return os.Stat(path)
	}
	r := c[path]
	if !r.statted {
		r.info, r.err = os.Stat(path)
		r.statted = true
		c[path] = r
	}
	return r.info, r.err
}

// head returns readHead of file, read once per Load.
func (c statCache) head(file string) []byte {
	if c == nil {
		return readHead(file)
	}
	r := c[file]
	if !r.headRead {
		r.head, r.headRead = readHead(file), true
		c[file] = r
	}
	return r.head
}

// resolveEnv reads the secrets of env, reports to checks each one that
// cannot be read and to warnings each one too short to be redacted, which
// includes an inline value whose name SecretName counts as a secret. The
// reports name the source, never the value.
func resolveEnv(checks, warnings *reporter, env map[string]envValue) map[string]Secret {
	if len(env) == 0 {
		// A nil map reads as empty, and a big config has thousands of jobs
		// without env.
		return nil
	}
	secrets := make(map[string]Secret, len(env))
	for _, name := range slices.Sorted(maps.Keys(env)) {
		value := env[name]
		secret, err := value.resolve()
		if err != nil {
			checks.report(value.key, "%v", err)
			continue
		}
		secrets[name] = secret
		isSecret := value.kind != envInline || NamedSecret(name, secret.Reveal())
		if isSecret && tooShortToRedact(secret.Reveal()) {
			warnings.report(value.key, "secret is too short to be redacted from output (under %d bytes, or every line under %d): use a longer value",
				MinSecretBytes, MinSecretLineBytes)
		}
	}
	return secrets
}

func (v envValue) resolve() (Secret, error) {
	switch v.kind {
	case envFile:
		value, err := readSecretFile(v.text)
		if err != nil {
			return Secret{}, err
		}
		return NewSecret(value, "file "+v.text), nil
	case envVariable:
		value, ok := os.LookupEnv(v.text)
		if !ok {
			return Secret{}, fmt.Errorf("environment variable %s is not set for the runner: set it in the systemd unit with Environment= or EnvironmentFile=", v.text)
		}
		return NewSecret(value, "env "+v.text), nil
	case envCredential:
		return readCredential(v.text)
	default:
		return NewSecret(v.text, envInline), nil
	}
}

func readSecretFile(path string) (string, error) {
	data, err := readSmallFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("secret file %s does not exist: create it or fix the path", path)
	}
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	return trimNewline(string(data)), nil
}

// readCredential reads a systemd credential. systemd puts each credential
// named by LoadCredential= or SetCredential= in the folder that
// $CREDENTIALS_DIRECTORY names.
func readCredential(name string) (Secret, error) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return Secret{}, fmt.Errorf("credential %q cannot be read because $CREDENTIALS_DIRECTORY is not set: systemd sets it with LoadCredential=%s:/path/to/secret in the unit", name, name)
	}
	data, err := readSmallFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return Secret{}, fmt.Errorf("credential %q not found in $CREDENTIALS_DIRECTORY %s: add LoadCredential=%s:/path/to/secret to the unit", name, dir, name)
	}
	if err != nil {
		return Secret{}, fmt.Errorf("read credential %q: %w", name, err)
	}
	return NewSecret(trimNewline(string(data)), "credential "+name), nil
}

// trimNewline removes one trailing newline, which editors and echo add to
// secret files but which is not part of the secret. A "\r\n" counts as one
// newline.
func trimNewline(value string) string {
	if !strings.HasSuffix(value, "\n") {
		return value
	}
	return strings.TrimSuffix(strings.TrimSuffix(value, "\n"), "\r")
}
