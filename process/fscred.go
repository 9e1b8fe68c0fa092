package process

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/agent-runner/agent-runner/config"
)

// readEnvFile reads the env file of a child that runs as identity. A
// daemon that runs as root reads the file of a child that switches to
// another user with that user's file system IDs and groups, so the file
// and every folder above it must be open to that user. Without this, a
// user that may write the file's folder could link the file to one only
// root may read, such as a root-owned env file of another service, and
// get its KEY=VALUE lines in the child's environment.
func readEnvFile(path string, identity config.Identity) (map[string]string, error) {
	if !identity.Set || identity.UID == 0 || os.Geteuid() != 0 {
		return config.ReadEnvFile(path)
	}
	var env map[string]string
	err := asFileUser(identity, func() error {
		var err error
		env, err = config.ReadEnvFile(path)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w (read as user %s, uid %d)", err, identityName(identity), identity.UID)
	}
	return env, nil
}

func identityName(identity config.Identity) string {
	if identity.User != "" {
		return identity.User
	}
	return fmt.Sprint(identity.UID)
}

// asFileUser calls fn on a thread whose file system IDs and supplementary
// groups are those of identity. Linux keeps these per thread, and the raw
// system calls change only the calling thread, so the rest of the daemon
// keeps running as root. Setting a non-zero fsuid also clears the file
// capabilities, such as CAP_DAC_OVERRIDE, from the thread's effective set,
// and setting fsuid 0 again restores them. A thread whose IDs could not be
// restored stays locked, so Go ends it when fn's goroutine returns and
// never runs other code on it.
func asFileUser(identity config.Identity, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		groups, err := syscall.Getgroups()
		if err != nil {
			done <- fmt.Errorf("read supplementary groups: %w", err)
			restored = true
			return
		}
		uid, gid := os.Geteuid(), os.Getegid()
		if err := setFileIDs(identity.UID, identity.GID, identity.Groups); err != nil {
			restored = setFileIDs(uint32(uid), uint32(gid), toUint32(groups)) == nil
			done <- err
			return
		}
		err = fn()
		restored = setFileIDs(uint32(uid), uint32(gid), toUint32(groups)) == nil
		done <- err
	}()
	return <-done
}

// setFileIDs sets the supplementary groups, the fsgid and the fsuid of
// the calling thread. setfsuid(2) and setfsgid(2) return the previous ID
// instead of an error, so each is called twice to check the result.
func setFileIDs(uid, gid uint32, groups []uint32) error {
	var list unsafe.Pointer
	if len(groups) > 0 {
		list = unsafe.Pointer(&groups[0])
	}
	if _, _, errno := syscall.RawSyscall(sysSetgroups, uintptr(len(groups)), uintptr(list), 0); errno != 0 {
		return fmt.Errorf("set supplementary groups %v: %w", groups, errno)
	}
	syscall.RawSyscall(sysSetfsgid, uintptr(gid), 0, 0)
	if now, _, _ := syscall.RawSyscall(sysSetfsgid, uintptr(gid), 0, 0); uint32(now) != gid {
		return fmt.Errorf("set file system gid %d: the thread has gid %d", gid, now)
	}
	syscall.RawSyscall(sysSetfsuid, uintptr(uid), 0, 0)
	if now, _, _ := syscall.RawSyscall(sysSetfsuid, uintptr(uid), 0, 0); uint32(now) != uid {
		return fmt.Errorf("set file system uid %d: the thread has uid %d", uid, now)
	}
	return nil
}

func toUint32(ids []int) []uint32 {
	out := make([]uint32, len(ids))
	for i, id := range ids {
		out[i] = uint32(id)
	}
	return out
}
