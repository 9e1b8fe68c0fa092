package state

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// damagedRecord is a stored value that does not decode, with the reason.
type damagedRecord struct {
	key string
	err error
}

// replaceDamagedJobs replaces the job records that do not decode with new
// ones, after saving a copy of the whole store as PATH.corrupt-<UTC time>.
//
// bbolt checks pages and keys, not the values in them, so a flipped bit in
// a job record passes checkFile. Every start decodes every job record, and
// one that fails would fail every start. A new record makes its job start
// over as a new one, which never runs a slot twice: a new job catches up
// nothing from before it was first seen. The record is replaced, not
// deleted, because recovery finds runs left running through the job
// records. Run records need no such pass: readers skip a damaged run
// (see Store.Runs), and recovery counts one that may be running as
// running (see runningRuns).
func replaceDamagedJobs(db *bolt.DB, path string, logger *slog.Logger) error {
	var damaged []damagedRecord
	copyPath := ""
	err := db.View(func(tx *bolt.Tx) error {
		damaged = damagedJobs(tx)
		if len(damaged) == 0 {
			return nil
		}
		dest, err := unusedCorruptPath(path, time.Now())
		if err != nil {
			return err
		}
		copyPath = dest
		return tx.CopyFile(dest, 0o600)
	})
	if err != nil {
		return fmt.Errorf("save copy of state store %s before replacing damaged job records: %w", path, err)
	}
	if len(damaged) == 0 {
		return nil
	}
	syncDir(filepath.Dir(path), logger)
	now := time.Now().UTC()
	err = db.Update(func(tx *bolt.Tx) error { return putNewJobs(tx, damaged, now) })
	if err != nil {
		return fmt.Errorf("replace damaged job records in state store %s: %w", path, err)
	}
	for _, record := range damaged {
		logger.Error("replaced damaged job record in state store, so the job starts over as new with its run history kept",
			"path", path, "job", record.key, "copy", copyPath, "err", record.err)
	}
	return nil
}

// putNewJobs replaces the damaged job records with new ones first seen
// at now.
func putNewJobs(tx *bolt.Tx, damaged []damagedRecord, now time.Time) error {
	jobs := tx.Bucket(bucketJobs)
	for _, record := range damaged {
		if err := deleteRecord(jobs, []byte(record.key)); err != nil {
			return err
		}
		if err := putJob(tx, JobState{Name: record.key, FirstSeen: now}); err != nil {
			return err
		}
	}
	return nil
}

// damagedJobs lists the job records that do not decode.
func damagedJobs(tx *bolt.Tx) []damagedRecord {
	var damaged []damagedRecord
	_ = tx.Bucket(bucketJobs).ForEach(func(key, value []byte) error {
		var job JobState
		if value == nil {
			damaged = append(damaged, damagedRecord{key: string(key), err: errors.New("found a bucket where a job record belongs")})
		} else if err := unmarshalJob(value, &job); err != nil {
			damaged = append(damaged, damagedRecord{key: string(key), err: err})
		}
		return nil
	})
	return damaged
}

// deleteRecord deletes a value or a nested bucket.
func deleteRecord(bucket *bolt.Bucket, key []byte) error {
	if bucket.Bucket(key) != nil {
		return bucket.DeleteBucket(key)
	}
	return bucket.Delete(key)
}
