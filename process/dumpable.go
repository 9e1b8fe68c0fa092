package process

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ForbidInspection marks this process non-dumpable. The daemon contains
// every secret of the config and the environment systemd gave it, and its
// jobs usually run as the same user. Without this mark, any job could read
// those through /proc/PID/environ and /proc/PID/mem or attach a debugger.
// Reading a non-dumpable process needs CAP_SYS_PTRACE, and it writes no
// core file. Children become dumpable again when they exec.
func ForbidInspection() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("mark process non-dumpable: %w", err)
	}
	return nil
}
