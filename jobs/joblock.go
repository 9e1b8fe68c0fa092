package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// jobLocks keeps each job's lock file open from its first run on, so a
// run costs two flock calls instead of a folder check, an open and a
// close. flock excludes other processes, such as the CLI running a job
// by hand. Within the daemon the held flag excludes runs of the same job,
// because a second flock through the same open file would succeed.
//
// Only a quarter of the open-file limit stays open this way. Past it, a
// run opens its job's lock file and closes it at the end, so that a
// config with more jobs than the limit allows still leaves descriptors
// for the runs' pipes, the store and the control socket.
//
// NOTE: the daemon keeps a deleted lock file open, so a CLI would then
// lock a new file at the same path. Nothing in agent-runner deletes them.
type jobLocks struct {
	mu    sync.Mutex
	files map[string]*jobLock
	// capacity is how many lock files stay open, set from the open-file
	// limit at the first open when zero.
	capacity int
}

type jobLock struct {
	file *os.File
	// held is set while a run of this daemon has the lock.
	held bool
	// transient marks a file that the run opened past the capacity and
	// closes when it releases the lock. flock excludes other runs of the
	// job through their own open files.
	transient bool
}

// runLock is a job's run lock while a run holds it.
type runLock struct {
	locks *jobLocks
	lock  *jobLock
}

// lockError is a failure of the lock file itself, which no wait for a
// running run resolves.
type lockError struct{ err error }

func (e *lockError) Error() string { return e.err.Error() }
func (e *lockError) Unwrap() error { return e.err }

// errJobRemoved is the error of a run whose job a reload removed, or
// disabled for a scheduled run.
var errJobRemoved = errors.New("the job was removed or disabled by a reload")

// lockPollInterval is how often a run that waits for its job's lock tries
// again.
const lockPollInterval = 100 * time.Millisecond

// lock takes the job's run lock, so runs of one job never overlap, whether
// the daemon or a CLI started them. With wait it polls until the lock is
// free, ctx ends or stopped ends, and calls waiting, when set, before the
// first wait.
func (l *jobLocks) lock(ctx context.Context, stateDir, name string, wait bool, waiting func(), stopped context.Context) (*runLock, error) {
	for tries := 0; ; tries++ {
		held, err := l.tryLock(stateDir, name)
		if err != nil || held != nil {
			return held, err
		}
		if !wait {
			return nil, fmt.Errorf("run %s: %w", name, ErrBusy)
		}
		if tries == 0 && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-stopped.Done():
			return nil, ErrStopping
		case <-time.After(lockPollInterval):
		}
	}
}

// tryLock returns the held lock, or nil when a run holds it.
func (l *jobLocks) tryLock(stateDir, name string) (*runLock, error) {
	lock, err := l.open(stateDir, name)
	if err != nil {
		return nil, err
	}
	if lock.transient {
		return lockTransient(name, lock)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.files[name] != lock {
		return nil, fmt.Errorf("lock job %s: %w", name, errJobRemoved)
	}
	if lock.held {
		return nil, nil
	}
	err = unix.Flock(int(lock.file.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, nil
	}
	if err != nil {
		return nil, &lockError{fmt.Errorf("lock job %s: %w", name, err)}
	}
	lock.held = true
	return &runLock{locks: l, lock: lock}, nil
}

// lockTransient takes the lock through a file that open made past the
// capacity, and closes the file unless the lock is taken.
func lockTransient(name string, lock *jobLock) (*runLock, error) {
	err := unix.Flock(int(lock.file.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err != nil {
		lock.file.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, &lockError{fmt.Errorf("lock job %s: %w", name, err)}
	}
	lock.held = true
	return &runLock{lock: lock}, nil
}

// full reports whether the lock files kept open reached the capacity.
func (l *jobLocks) full() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.files) >= l.limit()
}

// limit returns the capacity, setting it at the first call. The caller
// holds l.mu.
func (l *jobLocks) limit() int {
	if l.capacity == 0 {
		l.capacity = 64
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil {
			l.capacity = max(int(min(lim.Cur, 1<<30)/4), 16)
		}
	}
	return l.capacity
}

// open returns the job's lock file, opening it on the job's first run.
// The open happens outside the mutex, so that the first runs of many jobs
// do not wait for each other's file creation.
func (l *jobLocks) open(stateDir, name string) (*jobLock, error) {
	l.mu.Lock()
	lock, ok := l.files[name]
	l.mu.Unlock()
	if ok {
		return lock, nil
	}
	path := lockPath(stateDir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, &lockError{fmt.Errorf("create lock folder: %w", err)}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, &lockError{fmt.Errorf("open job lock: %w", err)}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lock, ok := l.files[name]; ok {
		// Another run of the job opened it meanwhile.
		f.Close()
		return lock, nil
	}
	if len(l.files) >= l.limit() {
		return &jobLock{file: f, transient: true}, nil
	}
	if l.files == nil {
		l.files = make(map[string]*jobLock)
	}
	lock = &jobLock{file: f}
	l.files[name] = lock
	return lock, nil
}

// Close releases the lock; the file stays open for the job's next run,
// unless it was opened past the capacity.
func (h *runLock) Close() error {
	if h.lock.transient {
		h.lock.held = false
		defer h.lock.file.Close()
		if err := unix.Flock(int(h.lock.file.Fd()), unix.LOCK_UN); err != nil {
			return fmt.Errorf("unlock job: %w", err)
		}
		return nil
	}
	h.locks.mu.Lock()
	defer h.locks.mu.Unlock()
	h.lock.held = false
	if err := unix.Flock(int(h.lock.file.Fd()), unix.LOCK_UN); err != nil {
		return fmt.Errorf("unlock job: %w", err)
	}
	return nil
}

// closeExcept closes the lock files of jobs not in keep that no run
// holds, after a reload removed those jobs.
func (l *jobLocks) closeExcept(keep map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, lock := range l.files {
		if !keep[name] && !lock.held {
			lock.file.Close()
			delete(l.files, name)
		}
	}
}

func lockPath(stateDir, name string) string {
	return filepath.Join(stateDir, "locks", name+".lock")
}

// LockHeld reports whether some process, the daemon or a CLI, holds the
// job's run lock, which is the case exactly while a run of it goes on.
func LockHeld(stateDir, name string) bool {
	f, err := os.Open(lockPath(stateDir, name))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
