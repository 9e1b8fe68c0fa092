package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// claimLogSuffix names the claim log beside the store file,
// PATH-claimlog.
const claimLogSuffix = "-claimlog"

// claimLogSize is the preallocated size of the claim log. Records are
// written in place inside it, so a sync flushes data blocks only and
// never changes the file's size or extents. A batch that does not fit
// commits bbolt instead, which empties the log.
const claimLogSize = 1 << 20

// recordHeaderSize is the size of a record's header: the payload length
// (uint32), the CRC-32C of the rest of the record (uint32) and the
// generation (uint64), all little-endian.
const recordHeaderSize = 16

// castagnoli is made at the first record rather than at package init,
// where its tables took about 0.2 ms of every start of every command.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// errClaimLogFull means a batch's records do not fit in the rest of the
// claim log.
var errClaimLogFull = errors.New("claim log is full")

// errClaimLogMoved means the claim log's path no longer names the open
// file, so records appended to it would not survive a restart.
var errClaimLogMoved = errors.New("claim log was deleted or replaced")

// Kinds of log entries.
const (
	entryClaim  = "claim"
	entryFinish = "finish"
)

// logEntry is one write that the claim log makes durable ahead of bbolt:
// a claimed run with its assigned ID and the job's next run, or a final
// run record. It contains what replay needs to redo the write.
type logEntry struct {
	Op   string    `json:"op"`
	Run  Run       `json:"run"`
	Next time.Time `json:"next,omitzero"`
}

// claimLog is the append-only file that makes claims durable with one
// fdatasync, ahead of the bbolt commit that contains them. It contains
// only the entries of the open write transaction, because each commit
// resets it by starting a new generation at offset 0. Records of an older
// generation that follow are never replayed. The store's bbolt file lock
// also guards the log, which has no lock of its own.
type claimLog struct {
	file *os.File
	path string
	// info identifies file, to tell whether path still names it.
	info       fs.FileInfo
	generation uint64
	// size is the length of this generation's records from offset 0.
	size int64
	// syncs counts fdatasync calls, for tests.
	syncs  int
	closed bool
}

// openClaimLog opens the claim log at path for writing, creating and
// preallocating it as needed, and starts a generation after lastGeneration.
func openClaimLog(path string, lastGeneration uint64, logger *slog.Logger) (*claimLog, error) {
	_, statErr := os.Lstat(path)
	file, err := openClaimLogFile(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("open claim log: %w", err)
	}
	if err := preallocate(file); err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("preallocate claim log %s: %w", path, err)
	}
	info, err := file.Stat()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("stat claim log: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// A claim synced to a file whose folder entry was not is lost
		// with the file on power loss.
		syncDir(filepath.Dir(path), logger)
	}
	l := &claimLog{file: file, path: path, info: info, generation: lastGeneration}
	if err := l.reset(); err != nil {
		_ = file.Close()
		return nil, err
	}
	return l, nil
}

// reopen opens a new claim log at l's path, for a log that was deleted or
// replaced there, and closes l. The caller commits l's entries to bbolt
// first, because the new log starts empty. Anything at the path that is
// not a regular file with one link is moved aside, as at Open.
func (l *claimLog) reopen(logger *slog.Logger) (*claimLog, error) {
	if err := setAsideIrregularLog(l.path, logger); err != nil {
		return nil, err
	}
	fresh, err := openClaimLog(l.path, l.generation, logger)
	if err != nil {
		return nil, err
	}
	fresh.syncs = l.syncs
	if err := l.close(); err != nil {
		logger.Warn("close deleted or replaced claim log failed", "path", l.path, "err", err)
	}
	return fresh, nil
}

// moved reports whether l's path no longer names its open file, because
// something deleted, renamed or replaced it. A restart replays only the
// file at the path, so a record appended to l would be lost in a crash.
// A failed Lstat counts as moved, so claims commit bbolt while the path
// cannot be checked.
func (l *claimLog) moved() bool {
	info, err := os.Lstat(l.path)
	if err != nil || !os.SameFile(info, l.info) {
		return true
	}
	// A second link, as a backup tool's cp -al makes, gets the log set
	// aside unreplayed at the next open, so it counts as moved too: the
	// log is recreated as a file of its own.
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Nlink != 1
}

// setAsideIrregularLog moves a claim log that is not a regular file, such
// as a symbolic link or a FIFO, or that has another hard link, to
// PATH.corrupt-<UTC time>, and logs it. The store writes only regular
// files with one link, so such a log contains none of its claims. A new
// log takes its place, because rejecting it would fail every start until
// someone removed it, and writing it would change the file it links to.
func setAsideIrregularLog(path string, logger *slog.Logger) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) || err == nil && info.Mode().IsRegular() && links(info) <= 1 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat claim log: %w", err)
	}
	dest, err := unusedCorruptPath(path, time.Now())
	if err != nil {
		return err
	}
	if err := os.Rename(path, dest); err != nil {
		return fmt.Errorf("move claim log %s aside: %w", path, err)
	}
	logger.Error("claim log was not a regular file: moved it aside and started a new one",
		"path", path, "type", info.Mode().Type().String(), "moved_to", dest)
	return nil
}

// links returns a file's hard link count, or 1 when the file system does
// not report one.
func links(info fs.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// openClaimLogFile opens the claim log and rejects anything but a regular
// file. It follows no symbolic link, because the daemon writes the log in
// place and must not write to a file outside state_dir, and it does not
// block on a FIFO, which would stop the daemon's start.
func openClaimLogFile(path string, flag int) (*os.File, error) {
	file, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("claim log %s is a symbolic link: remove it, then start agent-runner again", path)
	}
	if err != nil {
		return nil, err
	}
	info, err := file.Stat()
	if err != nil {
		_ = file.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		_ = file.Close()
		return nil, fmt.Errorf("claim log %s is not a regular file (mode %s): remove it, then start agent-runner again", path, info.Mode())
	}
	return file, nil
}

// preallocate extends file to claimLogSize with written zeros and syncs
// it, so that later syncs of records inside it change no metadata. Zeros
// are written rather than fallocated, because the first write to an
// unwritten extent changes the extent, which fdatasync must then commit.
func preallocate(file *os.File) error {
	info, err := file.Stat()
	if err != nil {
		return err
	}
	if info.Size() >= claimLogSize {
		return nil
	}
	zeros := make([]byte, claimLogSize-info.Size())
	if _, err := file.WriteAt(zeros, info.Size()); err != nil {
		return err
	}
	return file.Sync()
}

// reset starts a new generation at offset 0 after a commit made the
// log's entries redundant. It overwrites the first header with zeros,
// without a sync, so a clean restart finds the log empty. Should that
// write not reach the disk, replay skips the old entries because bbolt
// already contains them.
func (l *claimLog) reset() error {
	// A generation from the clock also differs from those of records an
	// earlier process left further into the file.
	l.generation = max(l.generation+1, uint64(time.Now().UnixNano()))
	l.size = 0
	if _, err := l.file.WriteAt(make([]byte, recordHeaderSize), 0); err != nil {
		return fmt.Errorf("reset claim log %s: %w", l.path, err)
	}
	return nil
}

// append writes records, encoded by appendRecord with l.generation, after
// the log's current ones, followed by a zero header that marks the end,
// and syncs the data when sync is set. It returns errClaimLogFull,
// writing nothing, when they do not fit. After a failed write or sync the
// records count as not written, and the end marker is put back in front
// of them.
func (l *claimLog) append(records []byte, sync bool) error {
	end := l.size + int64(len(records))
	if end+recordHeaderSize > claimLogSize {
		return errClaimLogFull
	}
	buf := make([]byte, len(records)+recordHeaderSize)
	copy(buf, records)
	_, err := l.file.WriteAt(buf, l.size)
	if err == nil && sync {
		l.syncs++
		err = unix.Fdatasync(int(l.file.Fd()))
	}
	if err != nil {
		// NOTE: after a failed fdatasync the kernel may still write the
		// records later, and if it writes them but not this end marker, a
		// restart replays claims that Claim reported as failed. Their runs
		// then show as interrupted, so no slot runs twice.
		_, _ = l.file.WriteAt(make([]byte, recordHeaderSize), l.size)
		return fmt.Errorf("write claim log %s: %w", l.path, err)
	}
	l.size = end
	return nil
}

// entries reads back and decodes the records of the current generation.
func (l *claimLog) entries() ([]logEntry, error) {
	data := make([]byte, l.size)
	if _, err := l.file.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read claim log %s: %w", l.path, err)
	}
	parsed := parseClaimLog(data)
	if parsed.problem != nil {
		return nil, fmt.Errorf("read claim log %s: %w", l.path, parsed.problem)
	}
	return parsed.entries, nil
}

// close closes the file. Closing it again does nothing, as for the
// store's bbolt file.
func (l *claimLog) close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	return l.file.Close()
}

// appendRecord appends the framed record of entry to buf.
func appendRecord(buf []byte, generation uint64, entry logEntry) ([]byte, error) {
	payload, err := encodeEntry(entry)
	if err != nil {
		return buf, fmt.Errorf("encode claim log entry for run %s: %w", entry.Run.ID, err)
	}
	var header [recordHeaderSize]byte
	binary.LittleEndian.PutUint32(header[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint64(header[8:16], generation)
	binary.LittleEndian.PutUint32(header[4:8], recordChecksum(header[:], payload))
	buf = append(buf, header[:]...)
	return append(buf, payload...), nil
}

// recordChecksum is the CRC-32C of a record's length, generation and
// payload: everything but the checksum field itself.
func recordChecksum(header, payload []byte) uint32 {
	table := castagnoli()
	sum := crc32.Update(0, table, header[0:4])
	sum = crc32.Update(sum, table, header[8:16])
	return crc32.Update(sum, table, payload)
}

// parsedLog is the readable start of a claim log.
type parsedLog struct {
	entries []logEntry
	// ends[i] is the offset just past entries[i].
	ends []int64
	// generation is that of the first record, 0 when there is none.
	generation uint64
	// problem describes a torn or corrupt record at offset end, where
	// reading stopped. It is nil when the log ended cleanly.
	problem error
	end     int64
}

// parseClaimLog reads records from offset 0 until a zero header (the end
// marker), a record of another generation than the first (left from
// before a reset), the end of data, or a record that fails its checks.
// Only the last is a problem: a record torn by a crash during its write,
// which was never acknowledged.
func parseClaimLog(data []byte) parsedLog {
	var parsed parsedLog
	var zero [recordHeaderSize]byte
	for {
		offset := parsed.end
		rest := data[offset:]
		if len(rest) < recordHeaderSize || [recordHeaderSize]byte(rest[:recordHeaderSize]) == zero {
			return parsed
		}
		entry, generation, size, err := parseRecord(rest)
		if err != nil {
			parsed.problem = fmt.Errorf("record at offset %d: %w", offset, err)
			return parsed
		}
		if len(parsed.entries) == 0 {
			parsed.generation = generation
		} else if generation != parsed.generation {
			return parsed
		}
		parsed.end = offset + int64(size)
		parsed.entries = append(parsed.entries, entry)
		parsed.ends = append(parsed.ends, parsed.end)
	}
}

// parseRecord decodes the record at the start of data and returns its
// size.
func parseRecord(data []byte) (logEntry, uint64, int, error) {
	length := binary.LittleEndian.Uint32(data[0:4])
	if length == 0 || uint64(length) > uint64(len(data)-recordHeaderSize) {
		return logEntry{}, 0, 0, fmt.Errorf("length %d does not fit in the %d bytes after the header", length, len(data)-recordHeaderSize)
	}
	size := recordHeaderSize + int(length)
	payload := data[recordHeaderSize:size]
	if got, want := recordChecksum(data, payload), binary.LittleEndian.Uint32(data[4:8]); got != want {
		return logEntry{}, 0, 0, fmt.Errorf("checksum %08x does not match the stored %08x", got, want)
	}
	var entry logEntry
	if err := json.Unmarshal(payload, &entry); err != nil {
		return logEntry{}, 0, 0, fmt.Errorf("decode entry: %w", err)
	}
	return entry, binary.LittleEndian.Uint64(data[8:16]), size, nil
}

// errFinishesDeferred means finishes wait in memory for a commit, so a
// claim appended to the log now would be redone before them.
var errFinishesDeferred = errors.New("finished runs wait for a commit")
