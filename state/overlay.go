package state

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// overlayClaimLog makes a read-only store show the claim log's entries,
// the claims and finishes that no bbolt commit contains yet, as a
// read-write Open shows them after its replay. The store file and the log
// stay untouched, because the entries are redone in a copy of the store
// in memory, which then serves every read. The store file stays open too, so
// its shared lock keeps a daemon from opening the store, which would
// write the log, until Close.
//
// The copy costs memory and time in proportion to the store file's size,
// only while the log has entries, as after a kill of the daemon. When the
// log cannot be read or redone, or the store is above maxOverlayBytes,
// the store serves the last commit, with a warning.
func (s *Store) overlayClaimLog(opts Options) {
	logPath := s.path + claimLogSuffix
	entries, err := readOnlyEntries(logPath, opts.Logger)
	if err != nil {
		opts.Logger.Warn("read claim log failed, so runs claimed or finished since the last commit of the state store are missing",
			"path", logPath, "err", err)
		return
	}
	if len(entries) == 0 {
		return
	}
	if size, err := fileSize(s.db.Path()); err == nil && size > maxOverlayBytes {
		opts.Logger.Warn("state store is too large to copy into memory, so reads leave out the claim log's runs until the daemon's next start replays them",
			"path", s.path, "bytes", size, "max_bytes", maxOverlayBytes, "entries", len(entries))
		return
	}
	overlay, err := copyWithEntries(s.db, entries, opts)
	if err != nil {
		opts.Logger.Warn("apply claim log failed, so runs claimed or finished since the last commit of the state store are missing",
			"path", logPath, "err", err)
		return
	}
	s.source = s.db
	s.db = overlay
}

// maxOverlayBytes bounds the store file that overlayClaimLog copies into
// memory, so that a read-only open of a large store cannot exhaust the
// machine's memory. Tests lower it.
//
// NOTE: above it, a daemon start on a full disk stops the leftovers of
// only the runs that the last commit has as running, not of those that
// only the claim log contains.
var maxOverlayBytes int64 = 256 << 20

func fileSize(path string) (int64, error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// readOnlyEntries returns the claim log entries that a read-write Open
// would replay. Replay stops at a torn or corrupt record, and so does
// this. A log that is not a regular file with one link is left out,
// because a read-write Open moves it aside unreplayed.
func readOnlyEntries(path string, logger *slog.Logger) ([]logEntry, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stat claim log: %w", err)
	}
	if !info.Mode().IsRegular() || links(info) > 1 {
		logger.Warn("claim log is not a regular file with one link, so reads leave it out and the daemon's next start moves it aside",
			"path", path, "type", info.Mode().Type().String(), "links", links(info))
		return nil, nil
	}
	data, err := readClaimLog(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	parsed := parseClaimLog(data)
	if parsed.problem != nil {
		// A kill during a write leaves a torn record, which was never
		// acknowledged. The daemon's replay warns about it at its start.
		logger.Debug("claim log ends in a torn or corrupt record, so reads stop there",
			"path", path, "offset", parsed.end, "records", len(parsed.entries), "err", parsed.problem)
	}
	return parsed.entries, nil
}

// copyWithEntries copies db into an anonymous file in memory (memfd), so
// that nothing is written on a disk that may be full, and redoes entries
// in the copy as replay does. Job records that do not decode are replaced
// first, as a read-write Open replaces them before its replay.
func copyWithEntries(db *bolt.DB, entries []logEntry, opts Options) (*bolt.DB, error) {
	fd, err := unix.MemfdCreate("agent-runner-state", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create memory file for a copy of the state store: %w", err)
	}

	// Named after the store, so that errors of reads name it.
	file := os.NewFile(uintptr(fd), db.Path())
	err = db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(file)
		return err
	})
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("copy state store into memory: %w", err)
	}

	// bbolt closes file when Open fails and at the copy's Close.
	copied, err := bolt.Open(db.Path(), 0o600, &bolt.Options{
		FreelistType: bolt.FreelistMapType,
		OpenFile:     func(string, int, os.FileMode) (*os.File, error) { return file, nil },
	})
	if err != nil {
		return nil, fmt.Errorf("open copy of state store: %w", err)
	}

	err = copied.Update(func(tx *bolt.Tx) error {
		if err := putNewJobs(tx, damagedJobs(tx), time.Now().UTC()); err != nil {
			return err
		}
		_, err := redoEntries(tx, entries, opts.HistoryLimit, opts.Logger)
		return err
	})
	if err != nil {
		_ = copied.Close()
		return nil, fmt.Errorf("redo claim log in copy of state store: %w", err)
	}
	return copied, nil
}
