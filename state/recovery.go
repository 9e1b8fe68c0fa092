package state

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// corruptSuffixLayout formats the UTC time in the name a corrupt store is
// moved to, PATH.corrupt-20060102T150405Z.
const corruptSuffixLayout = "20060102T150405Z"

// lockRetryInterval is how often lockFile retries a held lock.
const lockRetryInterval = 50 * time.Millisecond

// moveAside renames the corrupt store at path to PATH.corrupt-<UTC time>
// and returns the new path. It holds the file's lock while renaming, so it
// never moves a store that another agent-runner has open. It returns ""
// without error when the file at path is already gone, or was replaced by
// another process that moved it first.
func moveAside(path string, cause error, opts Options) (string, error) {
	file, err := lockedFile(path, cause, opts.LockTimeout)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("move corrupt state store %s aside: %w", path, err)
	}
	defer file.Close()

	same, err := isFileAt(file, path)
	if err != nil || !same {
		return "", err
	}

	dest, err := unusedCorruptPath(path, time.Now())
	if err != nil {
		return "", err
	}
	if err := os.Rename(path, dest); err != nil {
		return "", fmt.Errorf("move corrupt state store %s aside: %w", path, err)
	}
	// The claim log goes along, so it is never replayed into the fresh
	// store. A failure here leaves the store missing, and the next Open
	// removes the log.
	logDest := dest + claimLogSuffix
	err = os.Rename(path+claimLogSuffix, logDest)
	if errors.Is(err, fs.ErrNotExist) {
		logDest = ""
	} else if err != nil {
		return "", fmt.Errorf("move claim log of corrupt state store %s aside: %w", path, err)
	}
	opts.Logger.Error("moved corrupt state store aside and started a fresh store",
		"path", path, "moved_to", dest, "claim_log_moved_to", logDest, "err", cause)
	syncDir(filepath.Dir(path), opts.Logger)
	return dest, nil
}

// lockedFile opens path and takes its lock. After a bbolt panic it returns
// the file bbolt opened instead, which still has the lock (see panicError),
// because a new descriptor would never get it.
func lockedFile(path string, cause error, timeout time.Duration) (*os.File, error) {
	var panicked *panicError
	if errors.As(cause, &panicked) && panicked.file != nil {
		return panicked.file, nil
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := lockFile(file, timeout); err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

// lockFile takes an exclusive flock on file, the same lock bbolt takes,
// retrying until timeout.
func lockFile(file *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(file.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EWOULDBLOCK):
			return fmt.Errorf("lock %s: %w", file.Name(), err)
		case time.Now().After(deadline):
			return fmt.Errorf("state store %s is %w (probably the daemon), which kept it for more than %s", file.Name(), ErrLocked, timeout)
		}
		time.Sleep(lockRetryInterval)
	}
}

// isFileAt reports whether path still names the open file.
func isFileAt(file *os.File, path string) (bool, error) {
	opened, err := file.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", file.Name(), err)
	}
	current, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	return os.SameFile(opened, current), nil
}

// unusedCorruptPath returns PATH.corrupt-<UTC time>, with a counter added
// when an earlier recovery in the same second took that name.
func unusedCorruptPath(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format(corruptSuffixLayout)
	dest := base
	for i := 2; ; i++ {
		_, err := os.Lstat(dest)
		if errors.Is(err, fs.ErrNotExist) {
			return dest, nil
		}
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", dest, err)
		}
		dest = fmt.Sprintf("%s-%d", base, i)
	}
}

// syncDir flushes a folder's entries, so a file created or renamed in it
// survives a power loss. A failure is logged, not returned, because the
// store itself is already consistent.
func syncDir(dir string, logger *slog.Logger) {
	f, err := os.Open(dir)
	if err == nil {
		err = f.Sync()
		_ = f.Close()
	}
	if err != nil {
		logger.Warn("sync state folder failed, so a power loss may undo the latest file creation or rename", "dir", dir, "err", err)
	}
}
