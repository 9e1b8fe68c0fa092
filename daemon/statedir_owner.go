package daemon

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
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
		return foreignOwnerError(dir, int(st.Uid), uid)
	}
	// Write access for the daemon's own group is allowed: a user's
	// private group, as Debian gives each user, has no other members.
	perm := info.Mode().Perm()
	if perm&0o002 != 0 || (perm&0o020 != 0 && int(st.Gid) != os.Getegid()) {
		return fmt.Errorf("state_dir %s is writable by other users (mode %o, group %d), who could replace files that agent-runner writes there with links: chmod go-w it", dir, perm, st.Gid)
	}
	return nil
}

// foreignOwnerError reports a state folder of another user. It suggests
// running as the owner first, because the owner is usually the service's
// user. A chown to the user of a command run by hand, often root, would
// stop the service from opening its state at its next start.
func foreignOwnerError(dir string, owner, uid int) error {
	ownerName, name := userName(owner), userName(uid)
	return fmt.Errorf("state_dir %s belongs to %s, not to %s that agent-runner runs as, and a process of its owner could replace files that agent-runner writes there with links: run agent-runner as %s, such as with sudo -u %s, or chown the folder to %s only if %s runs the daemon from now on",
		dir, userLabel(owner), userLabel(uid), ownerName, ownerName, name, name)
}

// userName returns the login name of uid, or "#UID", the form sudo -u
// takes for a uid without a name.
func userName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return "#" + id
}

// userLabel returns "user NAME (uid UID)", or "uid UID" without a name.
func userLabel(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("user %s (uid %s)", u.Username, id)
	}
	return "uid " + id
}
