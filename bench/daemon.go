package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Daemon is a running `agent-runner run` started by StartDaemon.
type Daemon struct {
	cmd *exec.Cmd
	// Started is the wall-clock time just before the exec.
	Started time.Time
	// LogPath is the file that receives the daemon's stderr.
	LogPath string
	done    chan struct{}
	waitErr error
}

// StartDaemon runs `binary run --config configPath` with the extra
// environment entries env, its stderr and stdout going to logPath.
func StartDaemon(binary, configPath, logPath string, env ...string) (*Daemon, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(binary, "run", "--config", configPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	d := &Daemon{cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	d.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// Pid returns the daemon's process ID.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited returns a channel that is closed once the daemon exited.
func (d *Daemon) Exited() <-chan struct{} { return d.done }

// Stop sends SIGTERM, waits up to timeout for the daemon to exit, then
// sends SIGKILL. It returns an error when the daemon had to be killed or
// exited with a failure status.
func (d *Daemon) Stop(timeout time.Duration) error {
	select {
	case <-d.done:
		return d.exitError()
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.exitError()
	case <-time.After(timeout):
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("daemon %d did not stop within %s of SIGTERM and was killed (log: %s)", d.Pid(), timeout, d.LogPath)
}

func (d *Daemon) exitError() error {
	if d.waitErr != nil {
		return fmt.Errorf("daemon %d: %w (log: %s)", d.Pid(), d.waitErr, d.LogPath)
	}
	return nil
}

// Memory is the resident set of a process in KiB, from
// /proc/PID/status.
type Memory struct {
	// RSS is VmRSS, the resident set now.
	RSS int64 `json:"rss_kib"`
	// HWM is VmHWM, the peak resident set since the process started.
	HWM int64 `json:"hwm_kib"`
	// Anon and File split RSS into anonymous memory (heap, stacks) and
	// mapped files (the binary, the bbolt file).
	Anon int64 `json:"anon_kib"`
	File int64 `json:"file_kib"`
}

// ReadMemory returns VmRSS and VmHWM of pid.
func ReadMemory(pid int) (Memory, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		value, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			m.RSS = value
		case "VmHWM:":
			m.HWM = value
		case "RssAnon:":
			m.Anon = value
		case "RssFile:":
			m.File = value
		}
	}
	if m.HWM == 0 {
		return m, fmt.Errorf("read memory of %d: no VmHWM in /proc/%d/status", pid, pid)
	}
	return m, nil
}

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 per second on x86 and arm64 Linux.
const ClockTicks = 100

// ReadCPUTicks returns utime+stime of pid in clock ticks, from
// /proc/PID/stat. Threads that exited still count.
func ReadCPUTicks(pid int) (int64, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name in field 2 may contain spaces, so fields are
	// counted from the closing parenthesis; utime and stime are fields
	// 14 and 15.
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, fmt.Errorf("invalid /proc/%d/stat: no closing parenthesis", pid)
	}
	fields := strings.Fields(string(data[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("invalid /proc/%d/stat: %d fields after the name", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("invalid /proc/%d/stat: %w", pid, err)
	}
	return utime + stime, nil
}

// Runtime is the CPU time of a process's live threads in nanoseconds,
// the first field of each /proc/PID/task/TID/schedstat. Unlike
// ReadCPUTicks it resolves less than one 10 ms tick, but the time of a
// thread that exits leaves it, so a difference of two snapshots holds
// only when Since finds every earlier thread still there.
type Runtime struct {
	Nanos   int64
	threads map[string]int64
}

// ReadRuntime takes a snapshot of pid's live threads.
func ReadRuntime(pid int) (Runtime, error) {
	taskDir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(taskDir)
	if err != nil {
		return Runtime{}, err
	}
	r := Runtime{threads: make(map[string]int64, len(tasks))}
	for _, task := range tasks {
		data, err := os.ReadFile(filepath.Join(taskDir, task.Name(), "schedstat"))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return Runtime{}, fmt.Errorf("invalid %s/%s/schedstat: %w", taskDir, task.Name(), err)
		}
		r.threads[task.Name()] = ns
		r.Nanos += ns
	}
	return r, nil
}

// Since returns the CPU time used between earlier and r, or an error
// naming a thread of earlier that exited in between, whose time the
// difference would miss.
func (r Runtime) Since(earlier Runtime) (time.Duration, error) {
	for tid := range earlier.threads {
		if _, ok := r.threads[tid]; !ok {
			return 0, fmt.Errorf("thread %s exited between the schedstat reads, so its CPU time is missing", tid)
		}
	}
	return time.Duration(r.Nanos - earlier.Nanos), nil
}

// ChildPids returns the direct children of pid, from the children file
// of each of its threads.
func ChildPids(pid int) []int {
	taskDir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(taskDir)
	if err != nil {
		return nil
	}
	var pids []int
	for _, task := range tasks {
		data, err := os.ReadFile(filepath.Join(taskDir, task.Name(), "children"))
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(data)) {
			if child, err := strconv.Atoi(field); err == nil {
				pids = append(pids, child)
			}
		}
	}
	return pids
}

// NotifySocket is a unixgram socket that receives sd_notify messages, as
// systemd's NOTIFY_SOCKET does.
type NotifySocket struct {
	conn *net.UnixConn
	// Path is the value for NOTIFY_SOCKET.
	Path     string
	messages chan notifyMessage
}

type notifyMessage struct {
	text     string
	received time.Time
}

// ListenNotify opens a notify socket at path.
func ListenNotify(path string) (*NotifySocket, error) {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("listen on notify socket %s: %w", path, err)
	}
	n := &NotifySocket{conn: conn, Path: path, messages: make(chan notifyMessage, 64)}
	go n.read()
	return n, nil
}

func (n *NotifySocket) read() {
	defer close(n.messages)
	buf := make([]byte, 4096)
	for {
		size, _, err := n.conn.ReadFromUnix(buf)
		if err != nil {
			return
		}
		n.messages <- notifyMessage{text: string(buf[:size]), received: time.Now()}
	}
}

// Wait returns the time the first message containing the line want
// arrived, dropping other messages, or an error when none arrives within
// timeout.
func (n *NotifySocket) Wait(ctx context.Context, want string, timeout time.Duration) (time.Time, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case msg, ok := <-n.messages:
			if !ok {
				return time.Time{}, fmt.Errorf("notify socket %s closed before %s arrived", n.Path, want)
			}
			for line := range strings.SplitSeq(msg.text, "\n") {
				if line == want {
					return msg.received, nil
				}
			}
		case <-timer.C:
			return time.Time{}, fmt.Errorf("no %s on notify socket %s within %s", want, n.Path, timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// Drain drops the messages received so far.
func (n *NotifySocket) Drain() {
	for {
		select {
		case <-n.messages:
		default:
			return
		}
	}
}

// Close closes the socket and removes its file.
func (n *NotifySocket) Close() error {
	err := n.conn.Close()
	_ = os.Remove(n.Path)
	return err
}

// CountLines returns how many lines of the file at path contain each of
// the given substrings.
func CountLines(path string, substrings ...string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(substrings))
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		for _, s := range substrings {
			if bytes.Contains(line, []byte(s)) {
				counts[s]++
			}
		}
	}
	return counts, nil
}

// InitTrace is the package initialization of one process start, from the
// runtime's GODEBUG=inittrace=1 output.
type InitTrace struct {
	// Total is the sum of the clock times of every package's init.
	Total time.Duration
	// End is when the last init finished, after the process started.
	End time.Duration
	// Packages holds the clock time of each package's init.
	Packages map[string]time.Duration
}

// Slowest returns the n packages whose init took longest, as
// "name 1.2ms, ...".
func (t InitTrace) Slowest(n int) string {
	names := make([]string, 0, len(t.Packages))
	for name := range t.Packages {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(t.Packages[b], t.Packages[a]) })
	parts := make([]string, 0, n)
	for _, name := range names[:min(n, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.1fms", name, float64(t.Packages[name])/float64(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// TraceInit runs `binary version` with GODEBUG=inittrace=1 and parses the
// lines the runtime writes to stderr, such as
//
//	init github.com/example/pkg @6.3 ms, 4.0 ms clock, 1303632 bytes, 8907 allocs
func TraceInit(binary string) (InitTrace, error) {
	cmd := exec.Command(binary, "version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return InitTrace{}, fmt.Errorf("%s version: %w", binary, err)
	}
	trace := InitTrace{Packages: make(map[string]time.Duration)}
	for line := range strings.SplitSeq(stderr.String(), "\n") {
		var name string
		var at, clock float64
		if _, err := fmt.Sscanf(line, "init %s @%f ms, %f ms clock", &name, &at, &clock); err != nil {
			continue
		}
		took := time.Duration(clock * float64(time.Millisecond))
		trace.Packages[name] += took
		trace.Total += took
		trace.End = max(trace.End, time.Duration((at+clock)*float64(time.Millisecond)))
	}
	if len(trace.Packages) == 0 {
		return trace, fmt.Errorf("%s version wrote no inittrace lines to stderr", binary)
	}
	return trace, nil
}
