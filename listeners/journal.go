package listeners

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// journalSyncInterval is how often buffered events are written and
// fsync'd. An event is on disk at most this long after Append.
const journalSyncInterval = time.Second

// maxKeptLine is the largest encoding buffer a journal keeps for the next
// event, so one huge event does not hold its memory for good.
const maxKeptLine = 64 << 10

// Journal appends events to a JSONL file, one object per line, so that
// scheduled jobs can read chat history from a file. Writes are buffered
// and fsync'd in batches; the file is rotated to PATH.1 once it grows
// past its size limit, replacing the previous PATH.1.
type Journal struct {
	path string
	// maxBytes is atomic so that a reload can set it while a write that
	// holds mu waits for a hung disk.
	maxBytes atomic.Int64
	log      *slog.Logger
	// users counts the routers that use the journal, each of which calls
	// Close once. It is atomic for the same reason as maxBytes.
	users atomic.Int32

	mu   sync.Mutex
	file *os.File
	buf  *bufio.Writer
	// line is the buffer Append encodes each event into.
	line  []byte
	size  int64
	dirty bool
	// closed is set by Close. An event that a client library delivers
	// late must not rotate or reopen the file after that.
	closed bool
	// failed is set after a write to the file failed. bufio.Writer then
	// returns that error for good, and the file may end inside a line,
	// so the next write calls resume first.
	failed bool
	stop   chan struct{}
	done   chan struct{}
}

// errJournalClosed is the error of Append after Close. A write to a file
// that a failed reopen left closed returns os.ErrClosed instead, and the
// sync loop tries to reopen that file every second.
var errJournalClosed = errors.New("event log closed")

// OpenJournal opens or creates the file at path, mode 0600.
func OpenJournal(path string, maxBytes int64, log *slog.Logger) (*Journal, error) {
	j := &Journal{path: path, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	j.maxBytes.Store(maxBytes)
	j.users.Store(1)
	if err := j.open(); err != nil {
		return nil, err
	}
	go j.syncLoop()
	return j, nil
}

// SetMaxBytes sets the size past which the file rotates, for a reload
// that changes log_max_bytes and keeps the journal open.
func (j *Journal) SetMaxBytes(maxBytes int64) {
	j.maxBytes.Store(maxBytes)
}

func (j *Journal) open() error {
	if err := os.MkdirAll(filepath.Dir(j.path), 0o700); err != nil {
		return fmt.Errorf("create event log folder: %w", err)
	}
	// O_NOFOLLOW keeps a user who may write the folder from pointing the
	// path at a file of the daemon's user, such as a root-owned config,
	// and getting chat text appended to it. O_NONBLOCK keeps a named pipe
	// put at the path from blocking the open, which runs with the
	// journal's lock held and so would stop every Append.
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return fmt.Errorf("open event log: %s is a symbolic link, which is not followed: set log_to to the file it names", j.path)
	}
	if errors.Is(err, syscall.ENXIO) {
		// Opening a named pipe that has no reader, or a socket, fails so.
		return fmt.Errorf("open event log: %s is not a regular file: remove it or set log_to to another path", j.path)
	}
	if err != nil {
		return fmt.Errorf("open event log: %w", err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("inspect event log: %w", err)
	}
	// A reader of a named pipe could stop reading and so block Append.
	// A character device, such as /dev/null, is kept.
	if !info.Mode().IsRegular() && info.Mode()&fs.ModeCharDevice == 0 {
		f.Close()
		return fmt.Errorf("open event log: %s is not a regular file: remove it or set log_to to another path", j.path)
	}
	j.file, j.buf, j.size = f, bufio.NewWriterSize(journalWriter(f), 64<<10), info.Size()
	j.failed = false
	return nil
}

// journalWriter returns the writer under a journal's buffer, replaced
// in tests to make writes fail.
var journalWriter = func(f *os.File) io.Writer { return f }

// resume starts a new buffer after a failed write, such as one that
// found the disk full, and ends the line that the write may have cut
// short, so that later events are written again once the write works.
// The events that the failed buffer held are lost.
func (j *Journal) resume() error {
	j.buf.Reset(journalWriter(j.file))
	info, err := j.file.Stat()
	if err != nil {
		return fmt.Errorf("inspect event log: %w", err)
	}
	j.size = info.Size()
	if info.Mode().IsRegular() && j.size > 0 {
		last, err := lastByte(j.file, j.size)
		if err != nil {
			return fmt.Errorf("read event log: %w", err)
		}
		if last != '\n' {
			if _, err := j.file.Write([]byte{'\n'}); err != nil {
				return fmt.Errorf("end the line a failed write cut short: %w", err)
			}
			j.size++
		}
	}
	j.failed = false
	return nil
}

// lastByte reads the last byte of the regular file open for writing as
// file, of size bytes, through /proc/self/fd, which opens the same file
// for reading even after it was moved.
func lastByte(file *os.File, size int64) (byte, error) {
	raw, err := file.SyscallConn()
	if err != nil {
		return 0, err
	}
	// Control rather than Fd, which would switch the file to blocking mode.
	var reader *os.File
	controlErr := raw.Control(func(fd uintptr) {
		reader, err = os.Open("/proc/self/fd/" + strconv.FormatUint(uint64(fd), 10))
	})
	if controlErr != nil {
		return 0, controlErr
	}
	if err != nil {
		return 0, err
	}
	defer reader.Close()
	last := make([]byte, 1)
	if _, err := reader.ReadAt(last, size-1); err != nil {
		return 0, err
	}
	return last[0], nil
}

// flushBuffer writes the buffer to the file, after resume when an
// earlier write failed.
func (j *Journal) flushBuffer() error {
	if j.failed {
		if err := j.resume(); err != nil {
			return err
		}
	}
	err := j.buf.Flush()
	if err != nil && !errors.Is(err, os.ErrClosed) {
		j.failed = true
	}
	return err
}

// Append adds one event.
func (j *Journal) Append(ev Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("write event log: %w", errJournalClosed)
	}
	line, err := appendEvent(j.line[:0], ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	line = append(line, '\n')
	if cap(line) <= maxKeptLine {
		j.line = line
	}
	if j.failed {
		if err := j.resume(); err != nil {
			return err
		}
	}
	// A failed rotation is reported, and the event is still written when
	// the file is open.
	var rotateErr error
	if j.size+int64(len(line)) > j.maxBytes.Load() && j.size > 0 {
		rotateErr = j.rotate()
	}
	if _, err := j.buf.Write(line); err != nil {
		if !errors.Is(err, os.ErrClosed) {
			j.failed = true
		}
		return errors.Join(rotateErr, fmt.Errorf("write event log: %w", err))
	}
	j.size += int64(len(line))
	j.dirty = true
	return rotateErr
}

// rotate moves the full file to PATH.1 and starts a new one. It syncs
// the file even when nothing is buffered, because the sync loop may be
// syncing it without the lock and counts a closed file as synced here.
// When the rename fails, the log goes on in the same file, and the next
// rotation is tried once it has grown by another maxBytes. A file that
// is already closed, because reopening failed in an earlier rotation,
// was synced before it was closed.
func (j *Journal) rotate() error {
	if err := j.flushBuffer(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("write event log: %w", err)
	}
	if err := syncFile(j.file); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("sync event log: %w", err)
	}
	j.dirty = false
	j.file.Close()
	renameErr := os.Rename(j.path, j.path+".1")
	if err := j.open(); err != nil {
		return err
	}
	if renameErr != nil {
		j.size = 0
		return fmt.Errorf("rotate event log: %w", renameErr)
	}
	return nil
}

func (j *Journal) flushLocked() error {
	if !j.dirty {
		return nil
	}
	if err := j.flushBuffer(); err != nil {
		return fmt.Errorf("write event log: %w", err)
	}
	if err := syncFile(j.file); err != nil {
		return fmt.Errorf("sync event log: %w", err)
	}
	j.dirty = false
	return nil
}

// syncFile is (*os.File).Sync, replaced in tests to make a sync slow.
var syncFile = (*os.File).Sync

func (j *Journal) syncLoop() {
	defer close(j.done)
	ticker := time.NewTicker(journalSyncInterval)
	defer ticker.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-ticker.C:
			if err := j.flush(); err != nil {
				j.log.Error("flush event log failed", "path", j.path, "err", err)
			}
			if err := j.reopenIfMoved(); err != nil {
				j.log.Error("reopen moved or deleted event log failed", "path", j.path, "err", err)
			}
		}
	}
}

// reopenIfMoved starts a new file at the path when the open file is no
// longer there, because it was deleted or moved away, as logrotate does
// without copytruncate. Events would otherwise go to a file that no
// reader of the path finds, until it grew past the size limit. The
// events buffered since the last flush go to the old file.
func (j *Journal) reopenIfMoved() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}

	current, err := j.file.Stat()
	if errors.Is(err, os.ErrClosed) {
		// A rotation or an earlier reopen closed the file and could not
		// open a new one. Writes fail until this succeeds, because
		// the size that would start the next rotation no longer grows.
		if err := j.open(); err != nil {
			return err
		}
		j.log.Info("event log reopened after a failed open", "path", j.path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect event log: %w", err)
	}

	atPath, err := os.Stat(j.path)
	if err == nil && os.SameFile(current, atPath) {
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("inspect event log: %w", err)
	}

	if err := j.flushBuffer(); err != nil && !errors.Is(err, os.ErrClosed) {
		j.log.Warn("write events to the moved event log failed", "path", j.path, "err", err)
	}
	if err := syncFile(j.file); err != nil {
		j.log.Warn("sync the moved event log failed", "path", j.path, "err", err)
	}
	j.dirty = false
	j.file.Close()
	if err := j.open(); err != nil {
		return err
	}
	j.log.Info("event log was moved or deleted; started a new one", "path", j.path)
	return nil
}

// flush writes what Append buffered and syncs the file. The sync waits
// for the disk, so it runs without the lock: Append runs on the
// listener's reading goroutine and must not wait with it.
func (j *Journal) flush() error {
	j.mu.Lock()
	if !j.dirty {
		j.mu.Unlock()
		return nil
	}
	err := j.flushBuffer()
	file := j.file
	j.dirty = err != nil
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write event log: %w", err)
	}

	err = syncFile(file)
	if errors.Is(err, os.ErrClosed) {
		// A rotation synced and closed the file meanwhile.
		return nil
	}
	if err != nil {
		j.mu.Lock()
		if j.file == file {
			j.dirty = true
		}
		j.mu.Unlock()
		return fmt.Errorf("sync event log: %w", err)
	}
	return nil
}

// share adds a user, which must call Close once it no longer appends.
// The caller is a user already, so the file is still open.
func (j *Journal) share() {
	j.users.Add(1)
}

// Close ends one user's use of the journal. The last user's Close writes
// what is buffered, syncs and closes the file.
func (j *Journal) Close() error {
	if j.users.Add(-1) > 0 {
		return nil
	}
	close(j.stop)
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closed = true
	err := j.flushLocked()
	if closeErr := j.file.Close(); err == nil {
		err = closeErr
	}
	return err
}
