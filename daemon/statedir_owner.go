package daemon

import (
	"fmt"
	"os"
	"syscall"
)

// PrepareStateDir creates the state folder, mode 0700, and checks that
// only this process's user may change what is in it. The daemon creates,
// truncates and chowns files and folders there by path. A user who may
// write the folder could replace them with links, such as the job folder
// that a root daemon chowns to a job's user, and take over the targets.
// It checks the folder itself, not the folders above it.
func PrepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state folder: %w", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("inspect state folder: %w", err)
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("state_dir %s belongs to uid %d, not to uid %d that agent-runner runs as, and a process of its owner could replace files that agent-runner writes there with links: chown it to uid %d, or run agent-runner as its owner", dir, st.Uid, uid, uid)
	}
	// Write access for the daemon's own group is allowed: a user's
	// private group, as Debian gives each user, has no other members.
	perm := info.Mode().Perm()
	if perm&0o002 != 0 || (perm&0o020 != 0 && int(st.Gid) != os.Getegid()) {
		return fmt.Errorf("state_dir %s is writable by other users (mode %o, group %d), who could replace files that agent-runner writes there with links: chmod go-w it", dir, perm, st.Gid)
	}
	return nil
}
