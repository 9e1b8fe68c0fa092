// Package harness builds the agent-runner binary and drives it as a user
// would: a config folder, `agent-runner run` as a child process, and the
// CLI against the daemon's control socket. The crash and soak programs and
// the reliability tests share it.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agent-runner/agent-runner/control"
)

// ModuleRoot returns the folder of the agent-runner go.mod, searched
// upwards from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/agent-runner/agent-runner\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod of github.com/agent-runner/agent-runner not found above the working directory")
		}
		dir = parent
	}
}

// Build compiles the agent-runner binary into out.
func Build(out string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build agent-runner: %w\n%s", err, output)
	}
	return nil
}

// Project is a config folder with its config.toml.
type Project struct {
	Binary string
	Dir    string
	Config string
	// Credential, when set, runs the daemon and the CLI as that user.
	Credential *syscall.Credential
}

// NewProject writes config into dir/config.toml.
func NewProject(binary, dir, config string) (*Project, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &Project{Binary: binary, Dir: dir, Config: filepath.Join(dir, "config.toml")}
	if err := os.WriteFile(p.Config, []byte(config), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// Path returns name inside the project folder.
func (p *Project) Path(name string) string { return filepath.Join(p.Dir, name) }

// Command returns agent-runner with --config added after the subcommand.
func (p *Project) Command(args ...string) *exec.Cmd {
	full := append([]string{args[0], "--config", p.Config}, args[1:]...)
	cmd := exec.Command(p.Binary, full...)
	cmd.Dir = p.Dir
	cmd.Env = append(os.Environ(), "AGENT_RUNNER_CONFIG=")
	if p.Credential != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.Credential}
		cmd.Env = append(cmd.Env, "HOME="+p.Dir)
	}
	return cmd
}

// Result is a finished CLI command.
type Result struct {
	Code     int
	Stdout   string
	Stderr   string
	Duration time.Duration
}

// Run runs a CLI command and kills it after timeout. Code is -1 when it
// could not start or was killed.
func (p *Project) Run(timeout time.Duration, args ...string) Result {
	return RunCommand(p.Command(args...), timeout)
}

// RunCommand runs cmd with captured output, killing it after timeout.
func RunCommand(cmd *exec.Cmd, timeout time.Duration) Result {
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{Code: -1, Stderr: err.Error()}
	}
	timer := time.AfterFunc(timeout, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	res := Result{Code: 0, Stdout: stdout.String(), Stderr: stderr.String(), Duration: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.Code = exitErr.ExitCode()
	case err != nil:
		res.Code = -1
		res.Stderr += err.Error()
	}
	return res
}

// Status runs `list --json` and decodes its output.
func (p *Project) Status(timeout time.Duration) (control.Status, Result, error) {
	res := p.Run(timeout, "list", "--json")
	var status control.Status
	if res.Code != 0 {
		return status, res, fmt.Errorf("list --json exit %d after %s: %s", res.Code, res.Duration.Round(time.Millisecond), strings.TrimSpace(res.Stderr))
	}
	if err := json.Unmarshal([]byte(res.Stdout), &status); err != nil {
		return status, res, fmt.Errorf("decode list --json output %q: %w", Clip(res.Stdout, 300), err)
	}
	return status, res, nil
}

// Daemon is a running `agent-runner run` whose stderr is collected.
type Daemon struct {
	Cmd     *exec.Cmd
	Started time.Time

	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
}

// StartDaemon starts `agent-runner run` with extra arguments and returns
// at once; use WaitLog to wait for "scheduler started".
func (p *Project) StartDaemon(args ...string) (*Daemon, error) {
	d := &Daemon{Cmd: p.Command(append([]string{"run"}, args...)...), done: make(chan struct{})}
	stderr, err := d.Cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := d.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent-runner run: %w", err)
	}
	d.Started = time.Now()
	go func() {
		reader := bufio.NewReaderSize(stderr, 64<<10)
		for {
			line, err := reader.ReadString('\n')
			d.mu.Lock()
			d.logs.WriteString(line)
			d.mu.Unlock()
			if err != nil {
				break
			}
		}
		_ = d.Cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// Pid returns the daemon's process ID.
func (d *Daemon) Pid() int { return d.Cmd.Process.Pid }

// Log returns everything the daemon wrote to stderr so far.
func (d *Daemon) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// Done is closed once the daemon exited and its log is complete.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Exited reports whether the daemon process has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// ExitCode returns the daemon's exit status, or -1 while it runs or when a
// signal ended it.
func (d *Daemon) ExitCode() int {
	if !d.Exited() {
		return -1
	}
	return d.Cmd.ProcessState.ExitCode()
}

// WaitLog waits until the log contains text, the daemon exits, or timeout
// passes.
func (d *Daemon) WaitLog(text string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(d.Log(), text) {
			return nil
		}
		if d.Exited() {
			return fmt.Errorf("daemon exited with status %d before logging %q; log tail:\n%s", d.ExitCode(), text, Tail(d.Log(), 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon did not log %q within %s; log tail:\n%s", text, timeout, Tail(d.Log(), 15))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to be reaped.
func (d *Daemon) Kill() {
	_ = d.Cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Stop sends SIGTERM and waits up to timeout for the exit, then kills.
// It returns an error when the daemon needed SIGKILL or exited non-zero.
func (d *Daemon) Stop(timeout time.Duration) error {
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.Kill()
		return fmt.Errorf("daemon did not exit within %s of SIGTERM", timeout)
	}
	if code := d.ExitCode(); code != 0 {
		return fmt.Errorf("daemon exit status %d after SIGTERM; log tail:\n%s", code, Tail(d.Log(), 15))
	}
	return nil
}

// WaitFor polls cond every 20 ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Lines returns the non-empty lines of a file, or nil when it does not
// exist.
func Lines(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.FieldsFunc(string(data), func(r rune) bool { return r == '\n' })
}

// Tail returns the last n lines of text, each cut to 400 bytes.
func Tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, line := range lines {
		lines[i] = Clip(line, 400)
	}
	return strings.Join(lines, "\n")
}

// Clip shortens text to at most n bytes for a message.
func Clip(text string, n int) string {
	if len(text) <= n {
		return text
	}
	return text[:n] + "…"
}

// Sleep waits for d or until ctx ends, and reports whether the whole
// duration passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
