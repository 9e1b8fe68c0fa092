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
// returns how many processes it signalled.
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
	return len(found)
}

// environHas reports whether pid's environment has one of the entries.
func environHas(pid int, entries map[string]bool) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, entry := range bytes.Split(data, []byte{0}) {
		if entries[string(entry)] {
			return true
		}
	}
	return false
}
