//go:build linux && (386 || arm)

package process

import "golang.org/x/sys/unix"

// The calls that take 32-bit user and group IDs; the ones without the
// suffix take 16-bit IDs on these architectures.
const (
	sysSetgroups = unix.SYS_SETGROUPS32
	sysSetresgid = unix.SYS_SETRESGID32
	sysSetresuid = unix.SYS_SETRESUID32
)

// The calls that set the file system user and group IDs of one thread.
const (
	sysSetfsuid = unix.SYS_SETFSUID32
	sysSetfsgid = unix.SYS_SETFSGID32
)
