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
