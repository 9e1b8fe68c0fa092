//go:build linux && !386 && !arm

package process

import "golang.org/x/sys/unix"

// The calls that take 32-bit user and group IDs.
const (
	sysSetgroups = unix.SYS_SETGROUPS
	sysSetresgid = unix.SYS_SETRESGID
	sysSetresuid = unix.SYS_SETRESUID
)

// The calls that set the file system user and group IDs of one thread.
const (
	sysSetfsuid = unix.SYS_SETFSUID
	sysSetfsgid = unix.SYS_SETFSGID
)
