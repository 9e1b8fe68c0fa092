package state

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// replayClaimLog redoes the claim log's entries in the store in one
// transaction, at a read-write Open before anything else uses it, and
// returns the log's generation. The caller resets the log when it opens
// it for writing.
func replayClaimLog(db *bolt.DB, path string, opts Options) (uint64, error) {
	data, err := readClaimLog(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read claim log: %w", err)
	}
	parsed := parseClaimLog(data)
	if parsed.problem != nil {
		// A torn record was never acknowledged, so its run never started.
		opts.Logger.Warn("claim log ends in a torn or corrupt record, so replay stops there",
			"path", path, "offset", parsed.end, "replayed_records", len(parsed.entries), "err", parsed.problem)
	}
	if len(parsed.entries) == 0 {
		return parsed.generation, nil
	}

	var redone int
	err = db.Update(func(tx *bolt.Tx) error {
		var err error
		redone, err = redoEntries(tx, parsed.entries, opts.HistoryLimit, opts.Logger)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replay claim log %s: %w", path, err)
	}
	if redone > 0 {
		opts.Logger.Info("replayed claim log into the state store", "path", path, "records", redone)
	}
	return parsed.generation, nil
}

// redoEntries applies log entries to tx and returns how many changed it.
// Entries that the store already contains are skipped, which makes replay
// idempotent. These are claims whose run ID is not above the runs
// sequence, and finishes whose run is gone or no longer running.
func redoEntries(tx *bolt.Tx, entries []logEntry, historyLimit int, log *slog.Logger) (int, error) {
	redone := 0
	for _, entry := range entries {
		var (
			changed bool
			err     error
		)
		switch entry.Op {
		case entryClaim:
			changed, err = redoClaim(tx, entry.Run, entry.Next, historyLimit)
		case entryFinish:
			changed, err = redoFinish(tx, entry.Run)
		default:
			log.Warn("claim log entry of unknown kind skipped", "op", entry.Op, "job", entry.Run.Job, "run", entry.Run.ID)
		}
		if err != nil {
			return redone, fmt.Errorf("redo %s of run %s of job %s: %w", entry.Op, entry.Run.ID, entry.Run.Job, err)
		}
		if changed {
			redone++
		}
	}
	return redone, nil
}

// redoClaim stores a claimed run under its logged ID and updates its job
// as Claim did, unless the runs sequence shows that bbolt already
// committed it. The sequence, unlike a lookup of the run, also covers
// runs that pruning removed since.
func redoClaim(tx *bolt.Tx, run Run, next time.Time, historyLimit int) (bool, error) {
	seq, err := ParseRunID(run.ID)
	if err != nil {
		return false, err
	}
	all := tx.Bucket(bucketRuns)
	if seq <= all.Sequence() {
		return false, nil
	}
	if err := all.SetSequence(seq); err != nil {
		return false, fmt.Errorf("raise runs sequence: %w", err)
	}
	runs, err := all.CreateBucketIfNotExists([]byte(run.Job))
	if err != nil {
		return false, fmt.Errorf("create run bucket: %w", err)
	}
	if err := putRun(runs, seq, run); err != nil {
		return false, err
	}
	if err := pruneRuns(runs, historyLimit); err != nil {
		return false, err
	}

	state, found, err := getJob(tx, run.Job)
	if err != nil {
		return false, err
	}
	if !found {
		state = JobState{Name: run.Job, FirstSeen: run.Start}
	}
	if run.Slot.After(state.LastSlot) {
		state.LastSlot = run.Slot
	}
	markClaimed(&state, run, next)
	return true, putJob(tx, state)
}

// redoFinish writes a logged final record if its run is still running.
func redoFinish(tx *bolt.Tx, run Run) (bool, error) {
	err := finishIn(tx, run)
	var rejected *rejection
	if errors.As(err, &rejected) {
		return false, nil
	}
	return err == nil, err
}

// discardClaimLog removes a claim log left beside a store file that was
// missing or empty, because its entries belong to a store that is gone
// and must never be replayed into a fresh one.
func discardClaimLog(path string, logger *slog.Logger) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove claim log of a missing or empty state store: %w", err)
	}
	syncDir(filepath.Dir(path), logger)
	logger.Warn("removed the claim log of a missing or empty state store, so its claims are not replayed into the fresh store", "path", path)
	return nil
}

// readClaimLog returns the claim log's contents, or only its first header
// when that is the end marker, as after a clean stop. The preallocated
// file is 1 MiB, and reading it whole would cost every start. Bytes past
// claimLogSize are never read, because no record is written there.
func readClaimLog(path string) ([]byte, error) {
	file, err := openClaimLogFile(path, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var header [recordHeaderSize]byte
	n, err := io.ReadFull(file, header[:])
	if err != nil || header == [recordHeaderSize]byte{} {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			err = nil
		}
		return header[:n], err
	}
	rest, err := io.ReadAll(io.LimitReader(file, claimLogSize-recordHeaderSize))
	return append(header[:], rest...), err
}
