package process

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// KillMarked stops every process on the machine whose environment has one
// of entries, NAME=VALUE matched exactly, together with its process group:
// SIGTERM, then SIGKILL after grace. The daemon calls it at start for what
// a previous daemon or CLI left running when it was killed, since those
// children have their own process groups and outlive their parent. It
// returns how many processes it signalled, once they are gone or
// killedExitWait after the SIGKILL.
//
// NOTE: a process that cleared or replaced its environment, such as one
// started through sudo, is not found; the service unit's KillMode=mixed
// covers that case by killing the unit's whole cgroup.
func KillMarked(entries []string, grace time.Duration) int {
	if len(entries) == 0 {
		return 0
	}
	want := make(map[string]bool, len(entries))
	for _, e := range entries {
		want[e] = true
	}
	var found []int
	self := os.Getpid()
	procs, _ := os.ReadDir("/proc")
	for _, proc := range procs {
		pid, err := strconv.Atoi(proc.Name())
		if err != nil || pid == self {
			continue
		}
		if environHas(pid, want) {
			found = append(found, pid)
		}
	}
	for _, pid := range found {
		_ = unix.Kill(-pid, unix.SIGTERM)
		_ = unix.Kill(pid, unix.SIGTERM)
	}
	waitGone(found, grace)
	for _, pid := range found {
		_ = unix.Kill(-pid, unix.SIGKILL)
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	// kill returns before the target has died, and the daemon starts new
	// runs right after this, so wait until the processes are gone.
	waitGone(found, killedExitWait)
	return len(found)
}

// killedExitWait bounds the wait for processes to die after SIGKILL. It
// is usually over in milliseconds, but a process in uninterruptible sleep
// dies only when the sleep ends.
const killedExitWait = 5 * time.Second

// environHas reports whether pid's environment has one of the entries.
func environHas(pid int, entries map[string]bool) bool {
	for entry := range bytes.SplitSeq(readEnviron(pid), []byte{0}) {
		if entries[string(entry)] {
			return true
		}
	}
	return false
}

// environRetries bounds the rereads of an empty environment.
const environRetries = 20

// readEnviron returns pid's environment block, or nil if it cannot be
// read. A process inside execve shows an empty block until the kernel
// has copied the new one, so an empty block is read again a millisecond
// later. Kernel threads and zombies have no block and are not retried.
//
// NOTE: a live process whose environment is really empty costs about
// 20 ms of rereads, one such process after another.
func readEnviron(pid int) []byte {
	path := "/proc/" + strconv.Itoa(pid) + "/environ"
	for try := 0; ; try++ {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		if len(data) > 0 || try == environRetries || (try == 0 && !canHaveEnviron(pid)) {
			return data
		}
		time.Sleep(time.Millisecond)
	}
}

// pfKthread is the kernel's PF_KTHREAD task flag.
const pfKthread = 0x00200000

// canHaveEnviron reports whether pid is a live user process, the kind
// that has an environment.
func canHaveEnviron(pid int) bool {
	fields := statFields(pid)
	if len(fields) < 7 || fields[0] == "Z" || fields[0] == "X" {
		return false
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	return err == nil && flags&pfKthread == 0
}
