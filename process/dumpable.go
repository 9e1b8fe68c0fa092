package process

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ForbidInspection marks this process non-dumpable. The daemon holds every
// secret of the config and whatever environment systemd gave it, while its
// jobs usually run as the same user; without this, any of them could read
// those through /proc/PID/environ and /proc/PID/mem or attach a debugger.
// A non-dumpable process needs CAP_SYS_PTRACE for that, and writes no core
// file. Children get the default back when they exec.
func ForbidInspection() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("mark process non-dumpable: %w", err)
	}
	return nil
}
