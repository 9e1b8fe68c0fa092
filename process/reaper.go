package process

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reaper makes the process a child subreaper, so that grandchildren which
// outlive their parent, including ones that left the job's process group
// with setsid, are re-parented here instead of to init. It then reaps the
// ones os/exec does not wait for and finds the leftovers of a run by the
// run ID in their environment.
type Reaper struct {
	log *slog.Logger

	// mu is held across cmd.Start and while reaping, so a child that exits
	// before it is tracked is never taken from os/exec.
	mu      sync.Mutex
	tracked map[int]bool
	// orphans wakes the reaping goroutine when a search for leftovers
	// found a child that os/exec does not own.
	orphans chan struct{}
	// checkEvery is orphanCheck; tests shorten it.
	checkEvery time.Duration
	stop       chan struct{}
	done       chan struct{}
}

// orphanCheck is how often the reaper looks for orphans while it does
// not watch SIGCHLD. A run's end looks for them at once; this check finds
// those that a long run's descendants leave while it goes on.
const orphanCheck = 10 * time.Second

// orphanLinger is how long the reaper goes on watching SIGCHLD after it
// last saw an orphan. A long run that leaves one orphan, such as an exec
// listener that starts daemons, tends to leave more, and each would
// otherwise stay a zombie until the next check.
const orphanLinger = time.Minute

// NewReaper marks the process as a child subreaper and starts reaping.
// Close stops the reaping goroutine; the subreaper mark stays.
func NewReaper(log *slog.Logger) (*Reaper, error) {
	return newReaper(log, orphanCheck)
}

func newReaper(log *slog.Logger, checkEvery time.Duration) (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("become child subreaper: %w", err)
	}
	r := &Reaper{
		log:        log,
		tracked:    make(map[int]bool),
		orphans:    make(chan struct{}, 1),
		checkEvery: checkEvery,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go r.loop()
	return r, nil
}

// Close stops the reaping goroutine.
func (r *Reaper) Close() {
	close(r.stop)
	<-r.done
}

// loop reaps orphans. It watches SIGCHLD only while orphans are about,
// from the first one it finds until orphanLinger after the last one. The
// signal costs every run about 0.05 ms on a 2-core machine, because the
// kernel interrupts a thread and the Go runtime wakes two goroutines on
// the other core. Orphans come from a run's descendants, so a run's end,
// which searches for its leftovers, wakes the loop when it finds one,
// and a check every checkEvery finds the orphans of runs still going.
func (r *Reaper) loop() {
	defer close(r.done)
	// os/signal keeps one pending signal in the channel's buffer, so a
	// SIGCHLD that arrives during a pass causes another pass.
	sigchld := make(chan os.Signal, 1)
	watching := false
	defer func() {
		if watching {
			signal.Stop(sigchld)
		}
	}()
	check := time.NewTicker(r.checkEvery)
	defer check.Stop()
	var lastOrphan time.Time
	for {
		if r.reapOrphans() || r.hasOrphans() {
			lastOrphan = time.Now()
		}
		orphaned := !lastOrphan.IsZero() && time.Since(lastOrphan) < orphanLinger
		if orphaned != watching {
			watching = orphaned
			if !watching {
				signal.Stop(sigchld)
				continue
			}
			// The first pass after this one reaps an orphan that exited
			// before the signal was watched.
			signal.Notify(sigchld, syscall.SIGCHLD)
			continue
		}
		select {
		case <-r.stop:
			return
		case <-sigchld:
		case <-r.orphans:
		case <-check.C:
		}
	}
}

// hasOrphans reports whether the main thread, which Linux re-parents
// orphans to, has a child that os/exec does not own.
func (r *Reaper) hasOrphans() bool {
	return len(r.untracked()) > 0
}

// untracked lists the children of the main thread that os/exec does not
// own, exited ones included.
func (r *Reaper) untracked() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pids []int
	for _, pid := range mainThreadChildren() {
		if !r.tracked[pid] {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Start starts cmd and tracks its process until Untrack.
func (r *Reaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.tracked[cmd.Process.Pid] = true
	return nil
}

// Untrack forgets a child once os/exec has waited for it.
func (r *Reaper) Untrack(pid int) {
	r.mu.Lock()
	delete(r.tracked, pid)
	r.mu.Unlock()
}

// reapOrphans waits for every exited child that os/exec does not own, and
// reports whether it found one. Most signals come from a run's own child,
// which os/exec has usually reaped by now, so a peek that finds no exited
// child saves the search.
func (r *Reaper) reapOrphans() bool {
	if !anyExited() {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	found := false
	for _, pid := range children() {
		if r.tracked[pid] || !isZombie(pid) {
			continue
		}
		found = true
		var status unix.WaitStatus
		if _, err := unix.Wait4(pid, &status, unix.WNOHANG, nil); err != nil {
			r.log.Warn("reap orphaned child failed", "pid", pid, "err", err)
		}
	}
	return found
}

// anyExited reports whether some child has exited and waits to be
// reaped, without reaping it. Linux sets si_signo to SIGCHLD only when it
// found such a child.
func anyExited() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	return err == nil && info.Signo == int32(unix.SIGCHLD)
}

// KillLeftovers kills the processes of a finished child that escaped its
// process group: untracked children of this process whose environment
// carries marker, a NAME=VALUE entry unique to the run. Killing one can
// orphan its own children, so it repeats until a pass finds none. It
// returns how many it killed.
func (r *Reaper) KillLeftovers(marker string, grace time.Duration) int {
	killed := 0
	for pass := 0; pass < 16; pass++ {
		found := r.markedLeftovers(marker)
		if len(found) == 0 {
			return killed
		}
		for _, pid := range found {
			// The escapee usually leads its own group after setsid.
			_ = unix.Kill(-pid, unix.SIGTERM)
			_ = unix.Kill(pid, unix.SIGTERM)
		}
		waitGone(found, grace)
		for _, pid := range found {
			_ = unix.Kill(-pid, unix.SIGKILL)
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		waitGone(found, time.Second)
		killed += len(found)
	}
	return killed
}

// markedLeftovers lists the live untracked children whose environment
// contains marker, a NAME=VALUE entry.
func (r *Reaper) markedLeftovers(marker string) []int {
	want := map[string]bool{marker: true}
	var found []int
	for _, pid := range r.untrackedChildren() {
		if environHas(pid, want) {
			found = append(found, pid)
		}
	}
	return found
}

// untrackedChildren lists the live children of the main thread that
// os/exec does not own. Linux re-parents an orphan to the first live
// thread of its subreaper, which is the main thread while the process
// runs, so every process that escaped a run's group is found there. The
// main thread's list alone costs one read instead of one per thread.
func (r *Reaper) untrackedChildren() []int {
	untracked := r.untracked()
	if len(untracked) > 0 {
		// The reaping goroutine watches SIGCHLD from now on.
		select {
		case r.orphans <- struct{}{}:
		default:
		}
	}
	var pids []int
	for _, pid := range untracked {
		if !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGone polls until every pid has exited or become a zombie, or until
// the timeout passes.
func waitGone(pids []int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		alive := false
		for _, pid := range pids {
			if unix.Kill(pid, 0) == nil && !isZombie(pid) {
				alive = true
				break
			}
		}
		if !alive {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// children lists the direct children of this process. The kernel keeps a
// list per thread, and a child started by os/exec belongs to whichever
// thread forked it. The files are read with plain system calls into one
// buffer, because through the os package each would cost twice the calls.
func children() []int {
	buf := make([]byte, 4096)
	tids, dir, ok := taskIDs(buf)
	if !ok {
		return scanChildren()
	}
	var pids []int
	for _, tid := range tids {
		data, err := readProcFile(dir, tid+"/children", buf)
		if errors.Is(err, unix.ENOENT) {
			// NOTE: kernels built without CONFIG_PROC_CHILDREN lack
			// this file; the full scan costs one read per process.
			return scanChildren()
		}
		pids = appendPIDs(pids, data)
	}
	return pids
}

// HasChildren reports whether a child of this process still runs. A child
// that exited and was not reaped counts as none, since it ends with this
// process.
func HasChildren() bool { return len(runningChildren()) > 0 }

// runningChildren lists the children of this process that have not
// exited.
func runningChildren() []int {
	var pids []int
	for _, pid := range children() {
		if !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mainThreadChildren lists the children of the main thread, whose thread
// ID is the process ID. It falls back to every thread's children when the
// file cannot be read.
func mainThreadChildren() []int {
	dir, err := taskDir()
	if err != nil {
		return children()
	}
	data, err := readProcFile(dir, strconv.Itoa(os.Getpid())+"/children", make([]byte, 4096))
	if err != nil {
		return children()
	}
	return appendPIDs(nil, data)
}

// appendPIDs appends the process IDs of a children file's contents,
// which are separated by spaces, to pids.
func appendPIDs(pids []int, data []byte) []int {
	for _, field := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(field); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// taskDir is /proc/self/task, opened once for the life of the process,
// because the path lookup through procfs costs more than the reads.
var taskDir = sync.OnceValues(func() (int, error) {
	return unix.Open("/proc/self/task", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
})

// taskIDs lists the thread IDs of this process, using buf for the reads.
// The second result is the open task folder.
func taskIDs(buf []byte) ([]string, int, bool) {
	fd, err := taskDir()
	if err != nil {
		return nil, -1, false
	}
	if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
		return nil, -1, false
	}
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err != nil {
			return nil, -1, false
		}
		if n == 0 {
			return names, fd, true
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// readProcFile reads a small procfs file under the folder dir whole, growing buf when needed.
// The data aliases buf.
func readProcFile(dir int, path string, buf []byte) ([]byte, error) {
	fd, err := unix.Openat(dir, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
}

// scanChildren finds this process's children by reading every process's
// parent from /proc.
func scanChildren() []int {
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok && ppid == self {
			pids = append(pids, pid)
		}
	}
	return pids
}

// statFields returns the fields of /proc/PID/stat after the command name,
// which may itself contain spaces and parentheses.
func statFields(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return nil
	}
	return strings.Fields(string(data[end+1:]))
}

func parentOf(pid int) (int, bool) {
	fields := statFields(pid)
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return ppid, err == nil
}

func isZombie(pid int) bool {
	fields := statFields(pid)
	return len(fields) > 0 && fields[0] == "Z"
}

// lookupEnv is os.LookupEnv, kept in one place for the environment
// builder.
var lookupEnv = os.LookupEnv
