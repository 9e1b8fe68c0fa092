package process

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseInheritedOnExec marks every descriptor above standard error that
// this process inherited without FD_CLOEXEC as close-on-exec. Go opens
// its own files with the flag, but a descriptor that the parent leaked,
// such as a shell's or a terminal multiplexer's, would otherwise pass to
// every child, jobs that run as another user included. A failure leaves
// that descriptor as it is, since there is nothing better to do with it.
func CloseInheritedOnExec() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, entry := range entries {
		fd, err := strconv.Atoi(entry.Name())
		if err != nil || fd <= 2 {
			continue
		}
		unix.CloseOnExec(fd)
	}
}
