package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"github.com/agent-runner/agent-runner/config"
	"golang.org/x/sys/unix"
)

// Go's os/exec has no hook between fork and exec for the umask, the nice
// value or resource limits, and setting them on the daemon itself would
// change every child. A child with limits therefore starts as the running
// binary itself through /proc/self/exe, with shimArg as its first
// argument: the shim applies them to itself, switches user last, and
// execs the real program in place, keeping the pid and the process group.
// The shim reports a failure on file descriptor 3, which closes on a
// successful exec, so the caller gets a start error exactly as when exec
// fails without the shim.
//
// The shim runs as root until it switches user, and the binary is
// dynamically linked, so the dynamic loader and Go's runtime would act on
// LD_PRELOAD, LD_LIBRARY_PATH, GCONV_PATH or GODEBUG in its environment.
// The job's variables may come from an env_file its user can write, so
// the shim starts with only the run's marker in its environment and reads
// the request, the job's environment included, from a memfd on file
// descriptor 4. Only the final execve, after the switch, passes that
// environment on.
const (
	shimArg = "agent-runner-exec-shim"
	// shimExecutable is the daemon's binary even after a package upgrade
	// replaced the file, because the kernel resolves the link to the
	// running image.
	shimExecutable = "/proc/self/exe"
	// shimStatusFD is ExtraFiles[0] in the shim.
	shimStatusFD = 3
	// shimRequestFD is ExtraFiles[1] in the shim.
	shimRequestFD = 4
	// shimFailed is the shim's exit status when it could not exec, the
	// status a shell uses for a command it could not run.
	shimFailed = 127
)

// init turns the process into the shim when it was started as one. It
// runs in init, before main and before testing's flag parsing, so that
// the daemon and every test binary that imports this package can serve as
// the shim.
func init() {
	if len(os.Args) > 1 && os.Args[1] == shimArg {
		os.Exit(runShim(os.Args[2:]))
	}
}

// shimRequest is the set of changes the shim applies to itself before it
// execs Path with the arguments that follow shimArg and with Env.
type shimRequest struct {
	Path string   `json:"path"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir,omitempty"`
	// User is the name of the user that Credential switches to, for the
	// messages.
	User       string              `json:"user,omitempty"`
	Umask      *uint32             `json:"umask,omitempty"`
	Nice       *int                `json:"nice,omitempty"`
	Rlimits    []shimRlimit        `json:"rlimits,omitempty"`
	Credential *syscall.Credential `json:"credential,omitempty"`
}

type shimRlimit struct {
	Resource int    `json:"resource"`
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
}

// rlimitsOf maps the resource limits of l to setrlimit(2) calls.
//
// NOTE: limits on a run's whole process tree, as a unit's MemoryMax=,
// CPUQuota= and TasksMax= set them, would need a transient systemd scope
// per run, created over D-Bus (StartTransientUnit with the child's pid)
// by a daemon under systemd with cgroup delegation. The runner creates
// none, so each process gets its own rlimits instead.
func rlimitsOf(l config.Limits) []shimRlimit {
	var limits []shimRlimit
	if l.MemoryMax > 0 {
		limits = append(limits, shimRlimit{unix.RLIMIT_DATA, l.MemoryMax, l.MemoryMax})
	}
	if l.CPUTime > 0 {
		// The soft limit sends SIGXCPU, which a program may catch to
		// exit cleanly; the hard limit one second later sends SIGKILL.
		seconds := uint64(l.CPUTime / time.Second)
		limits = append(limits, shimRlimit{unix.RLIMIT_CPU, seconds, seconds + 1})
	}
	if l.NoFile > 0 {
		limits = append(limits, shimRlimit{unix.RLIMIT_NOFILE, l.NoFile, l.NoFile})
	}
	if l.NProc > 0 {
		limits = append(limits, shimRlimit{unix.RLIMIT_NPROC, l.NProc, l.NProc})
	}
	return limits
}

// shimCommand returns the command that starts spec through the shim,
// with the request in a memfd that the caller passes as ExtraFiles[1] and
// closes after the start. The caller adds the status pipe as
// ExtraFiles[0].
func shimCommand(spec Spec, credential *syscall.Credential) (*exec.Cmd, *os.File, error) {
	req := shimRequest{
		Path:       spec.Path,
		Env:        spec.Env,
		Dir:        spec.Dir,
		User:       spec.Identity.User,
		Rlimits:    rlimitsOf(spec.Limits),
		Credential: credential,
	}
	if spec.Limits.UmaskSet {
		req.Umask = &spec.Limits.Umask
	}
	if spec.Limits.NiceSet {
		req.Nice = &spec.Limits.Nice
	}
	request, err := writeShimRequest(req)
	if err != nil {
		return nil, nil, err
	}
	// The marker lets the leftover scan find the shim too. It comes from
	// the runner, never from the job's settings.
	env := []string{}
	if spec.Marker != "" {
		env = append(env, spec.Marker)
	}
	// Args[0] stays the program's name, so ps shows it while the shim
	// runs.
	args := append([]string{spec.Args[0], shimArg}, spec.Args...)
	return &exec.Cmd{Path: shimExecutable, Args: args, Env: env}, request, nil
}

// writeShimRequest encodes req into a memfd and rewinds it for the shim,
// which shares the file offset. A memfd, unlike a pipe, never blocks the
// writer on a large environment.
func writeShimRequest(req shimRequest) (*os.File, error) {
	encoded, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode shim request: %w", err)
	}
	fd, err := unix.MemfdCreate("agent-runner-shim", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create shim request memfd: %w", err)
	}
	file := os.NewFile(uintptr(fd), "shim-request")
	if _, err := file.Write(encoded); err != nil {
		file.Close()
		return nil, fmt.Errorf("write shim request: %w", err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		file.Close()
		return nil, fmt.Errorf("rewind shim request: %w", err)
	}
	return file, nil
}

// runShim applies the request on shimRequestFD to the process and execs
// argv. It returns only on failure, after writing the reason to the status
// pipe.
func runShim(argv []string) int {
	// The nice value belongs to a thread on Linux, and execve keeps the
	// calling thread's, so every call below runs on one thread.
	runtime.LockOSThread()
	status := os.NewFile(shimStatusFD, "status")
	err := execShim(argv)
	if _, werr := io.WriteString(status, err.Error()); werr != nil {
		fmt.Fprintf(os.Stderr, "agent-runner: %v\n", err)
	}
	return shimFailed
}

// readShimRequest reads and closes the request that the runner wrote.
func readShimRequest() (shimRequest, error) {
	var req shimRequest
	file := os.NewFile(shimRequestFD, "shim-request")
	encoded, err := io.ReadAll(file)
	file.Close()
	if err != nil {
		return req, fmt.Errorf("read shim request: %w", err)
	}
	if err := json.Unmarshal(encoded, &req); err != nil {
		return req, fmt.Errorf("decode shim request: %w", err)
	}
	return req, nil
}

func execShim(argv []string) error {
	req, err := readShimRequest()
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		return errors.New("shim request has no arguments")
	}
	syscall.CloseOnExec(shimStatusFD)

	// The privileged steps come before the credential switch gives up
	// root: a lower nice value, a raised hard limit.
	if req.Nice != nil {
		// PRIO_PROCESS with who 0 sets the calling thread.
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, *req.Nice); err != nil {
			return fmt.Errorf("set nice value %d: %w", *req.Nice, err)
		}
	}
	if req.Umask != nil {
		syscall.Umask(int(*req.Umask))
	}

	for _, limit := range req.Rlimits {
		// syscall.Setrlimit, unlike x/sys/unix, clears the RLIMIT_NOFILE
		// that Go's runtime saved at start, so syscall.Exec keeps ours.
		if err := syscall.Setrlimit(limit.Resource, &syscall.Rlimit{Cur: limit.Soft, Max: limit.Hard}); err != nil {
			return fmt.Errorf("set %s to %d: %w", rlimitName(limit.Resource), limit.Soft, err)
		}
	}
	// From here on the shim allocates only a few small objects, which
	// fit in the heap it has mapped already, so a low memory_max does not
	// fail it before the exec (TestShimMemoryLimitLow runs it with 4 MiB).
	if err := applyCredential(req.Credential); err != nil {
		return err
	}

	// The folder is entered as the new user, as os/exec does, so a folder
	// the user may not enter fails the start.
	if req.Dir != "" {
		if err := syscall.Chdir(req.Dir); err != nil {
			return chdirError(req.Dir, req.User, req.Credential, err)
		}
	}

	err = syscall.Exec(req.Path, argv, req.Env)
	return &os.PathError{Op: "exec", Path: req.Path, Err: err}
}

// applyCredential switches the calling thread to the user and groups of
// c, groups first, because a thread that gave up root can no longer change
// them. syscall.Setuid would switch every thread of the shim, and the
// threads that switch before this one would count toward the new user's
// RLIMIT_NPROC when the kernel checks it here. The other threads end at
// the exec anyway.
func applyCredential(c *syscall.Credential) error {
	if c == nil {
		return nil
	}
	var groups unsafe.Pointer
	if len(c.Groups) > 0 {
		groups = unsafe.Pointer(&c.Groups[0])
	}
	if _, _, errno := syscall.RawSyscall(sysSetgroups, uintptr(len(c.Groups)), uintptr(groups), 0); errno != 0 {
		return fmt.Errorf("set supplementary groups %v: %w", c.Groups, errno)
	}
	gid, uid := uintptr(c.Gid), uintptr(c.Uid)
	if _, _, errno := syscall.RawSyscall(sysSetresgid, gid, gid, gid); errno != 0 {
		return fmt.Errorf("set gid %d: %w", c.Gid, errno)
	}
	if _, _, errno := syscall.RawSyscall(sysSetresuid, uid, uid, uid); errno != 0 {
		return fmt.Errorf("set uid %d: %w", c.Uid, errno)
	}
	return nil
}

func rlimitName(resource int) string {
	switch resource {
	case unix.RLIMIT_DATA:
		return "RLIMIT_DATA"
	case unix.RLIMIT_CPU:
		return "RLIMIT_CPU"
	case unix.RLIMIT_NOFILE:
		return "RLIMIT_NOFILE"
	case unix.RLIMIT_NPROC:
		return "RLIMIT_NPROC"
	}
	return fmt.Sprintf("resource %d", resource)
}

// awaitExec waits until the shim has exec'd the program, which closes the
// status pipe, and returns the shim's reason when it failed instead.
func (r *Reaper) awaitExec(cmd *exec.Cmd, status *os.File) error {
	reason, err := io.ReadAll(status)
	status.Close()
	if err == nil && len(reason) == 0 {
		return nil
	}
	_ = cmd.Wait()
	r.Untrack(cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("read shim status: %w", err)
	}
	return errors.New(string(reason))
}
