package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"unsafe"

	"github.com/agent-runner/agent-runner/config"
)

// readEnvFile reads the env file of a child that runs as identity. A
// daemon that runs as root first reads the file of a child that switches
// to another user with that user's file system IDs and groups. When that
// user may not read it, the daemon reads it as root only if the user
// cannot change the path. That means no folder on it, as written or with
// links resolved, belongs to the user or is open to its writes. Otherwise a
// user that may write the file's folder could link the file to one only
// root may read, such as another service's env file, and get its
// KEY=VALUE lines in the child's environment. A root-only env file in a
// root-owned folder, as systemd's EnvironmentFile= allows, still works.
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
	if err == nil {
		return env, nil
	}
	if !errors.Is(err, fs.ErrPermission) {
		return nil, err
	}
	if folder, ok := userMayChange(path, identity); ok {
		return nil, fmt.Errorf("%w: user %s (uid %d) may not read it, and agent-runner does not read it as root, because that user may change %s on its path", err, identityName(identity), identity.UID, folder)
	}
	return config.ReadEnvFile(path)
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

// userMayChange returns a folder on path, as written or with links
// resolved, or the file itself, that identity's user owns or may write,
// so that it could make path name another file. A path that does not
// resolve counts as changeable. Folders with the sticky bit, such as
// /tmp, count as closed, because the user may not rename or remove
// entries of other users there.
//
// NOTE: the links of a chain are resolved at once, so a link that another
// link points at is checked only through the folders of the final path.
func userMayChange(path string, identity config.Identity) (string, bool) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return path, true
	}
	folders := append(dirChain(filepath.Dir(path)), dirChain(filepath.Dir(resolved))...)
	for _, folder := range folders {
		info, err := os.Stat(folder)
		if err != nil {
			return folder, true
		}
		if userMayWrite(info, identity) {
			return folder, true
		}
	}
	for _, file := range []string{path, resolved} {
		info, err := os.Lstat(file)
		if err != nil {
			return file, true
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == identity.UID {
			return file, true
		}
	}
	return "", false
}

// userMayWrite reports whether identity's user owns the folder of info
// or may add, rename and remove entries of other users in it.
func userMayWrite(info os.FileInfo, identity config.Identity) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	if st.Uid == identity.UID {
		return true
	}
	if info.Mode()&os.ModeSticky != 0 {
		return false
	}
	mode := uint32(info.Mode().Perm())
	if st.Gid == identity.GID || slices.Contains(identity.Groups, st.Gid) {
		return mode&0o020 != 0
	}
	return mode&0o002 != 0
}
