package state

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// insertRun assigns the run the next ID of the store-wide sequence, stores
// it in the job's history and prunes that history.
func (s *Store) insertRun(tx *bolt.Tx, run Run) (Run, error) {
	all := tx.Bucket(bucketRuns)
	seq, err := all.NextSequence()
	if err != nil {
		return Run{}, fmt.Errorf("assign run ID: %w", err)
	}
	runs, err := all.CreateBucketIfNotExists([]byte(run.Job))
	if err != nil {
		return Run{}, fmt.Errorf("create run bucket: %w", err)
	}
	run.ID = strconv.FormatUint(seq, 10)
	run = run.inUTC()
	if err := putRun(runs, seq, run); err != nil {
		return Run{}, err
	}
	return run, pruneRuns(runs, s.historyLimit)
}

// jobRuns returns the job's history bucket, or nil when it has none.
func jobRuns(tx *bolt.Tx, name string) *bolt.Bucket {
	return tx.Bucket(bucketRuns).Bucket([]byte(name))
}

func putRun(runs *bolt.Bucket, seq uint64, run Run) error {
	value, err := encodeRun(run.inUTC())
	if err != nil {
		return fmt.Errorf("encode run %s: %w", run.ID, err)
	}
	if err := runs.Put(runKey(seq), value); err != nil {
		return fmt.Errorf("store run %s: %w", run.ID, err)
	}
	return nil
}

func getRun(runs *bolt.Bucket, seq uint64) (Run, bool, error) {
	if runs == nil {
		return Run{}, false, nil
	}
	key := runKey(seq)
	value := runs.Get(key)
	if value == nil {
		return Run{}, false, nil
	}
	run, err := decodeRun(key, value)
	return run, err == nil, err
}

func decodeRun(key, value []byte) (Run, error) {
	var run Run
	if err := unmarshalRun(value, &run); err != nil {
		return Run{}, fmt.Errorf("decode run %d: %w", binary.BigEndian.Uint64(key), err)
	}
	return run, nil
}

// pruneRuns deletes the oldest runs beyond limit. It keeps "running"
// records at any age, because Finish and RecoverInterrupted still need them.
func pruneRuns(runs *bolt.Bucket, limit int) error {
	// Bucket.Stats would miss this transaction's writes, so count with a
	// cursor.
	count := 0
	cursor := runs.Cursor()
	for key, _ := cursor.First(); key != nil; key, _ = cursor.Next() {
		count++
	}
	excess := count - limit
	if excess <= 0 {
		return nil
	}
	var doomed [][]byte
	for key, value := cursor.First(); key != nil && len(doomed) < excess; key, value = cursor.Next() {
		if !isRunning(value) {
			doomed = append(doomed, append([]byte(nil), key...))
		}
	}
	// Keys are deleted after the scan, because bbolt's README (v1.5.0) warns
	// that Next may skip a key after a delete during iteration.
	for _, key := range doomed {
		if err := runs.Delete(key); err != nil {
			return fmt.Errorf("prune run %d: %w", binary.BigEndian.Uint64(key), err)
		}
	}
	return nil
}

// resultField is the start of a record's result as the encoders, and
// json.Marshal before them, write it. In compact JSON these bytes appear
// only there, because every quote inside a string is escaped.
var resultField = []byte(`"result":"`)

// isRunning reports whether a stored run has Result "running". A record
// that does not decode counts as finished, so pruning can remove it.
// A start reads every record of every job twice, and most records contain
// an output tail with escapes, which only encoding/json decodes. So a
// record whose result bytes show another result is not decoded at all.
func isRunning(value []byte) bool {
	if i := bytes.Index(value, resultField); i >= 0 {
		rest := value[i+len(resultField):]
		if !bytes.HasPrefix(rest, []byte(ResultRunning+`"`)) {
			return false
		}
	}
	var run Run
	return unmarshalRun(value, &run) == nil && run.Result == ResultRunning
}

// runKey encodes a run ID big-endian, so bbolt's byte order is ID order.
func runKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, seq)
}

// ParseRunID returns the sequence number of a run ID, a positive decimal.
func ParseRunID(id string) (uint64, error) {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("invalid run ID %q: want a positive decimal number", id)
	}
	return seq, nil
}

// CompareRunIDs orders run IDs as numbers. IDs that do not parse sort first.
func CompareRunIDs(a, b string) int {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	return cmp.Compare(x, y)
}

func (r Run) inUTC() Run {
	r.Slot = r.Slot.UTC()
	r.Start = r.Start.UTC()
	r.Finish = r.Finish.UTC()
	return r
}
