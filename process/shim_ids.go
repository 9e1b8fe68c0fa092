//go:build linux && !386 && !arm

package process

import "golang.org/x/sys/unix"

// The calls that take 32-bit user and group IDs.
const (
	sysSetgroups = unix.SYS_SETGROUPS
	sysSetresgid = unix.SYS_SETRESGID
	sysSetresuid = unix.SYS_SETRESUID
)
