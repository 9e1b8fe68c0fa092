package state

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Layout of schema version 1:
//
//	meta             schema_version → 8-byte big-endian version
//	jobs             job name → JSON JobState
//	runs             one nested bucket per job, and the bucket sequence
//	                 (NextSequence) is the last run ID, shared by all jobs
//	runs/<job name>  8-byte big-endian run ID → JSON Run
//
// Version 2 adds:
//
//	listeners         one nested bucket per listener
//	listeners/<name>  key → value, a listener's cursors and sessions
var (
	bucketMeta       = []byte("meta")
	bucketJobs       = []byte("jobs")
	bucketRuns       = []byte("runs")
	bucketListeners  = []byte("listeners")
	keySchemaVersion = []byte("schema_version")
)

// migration brings a store from one schema version to the next.
type migration func(tx *bolt.Tx) error

// migrations[i] migrates version i to i+1, so the version this binary
// writes is len(migrations). Version 0 is a bbolt file with no buckets, or
// with a meta bucket recording version 0.
var migrations = []migration{
	createBuckets,
	createListenersBucket,
}

func supportedVersion() uint64 { return uint64(len(migrations)) }

func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeta, bucketJobs, bucketRuns} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return nil
}

func createListenersBucket(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketListeners); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketListeners, err)
	}
	return nil
}

// prepareSchema rejects a store from a newer binary and migrates an older
// one, each step in its own transaction together with its version bump.
// Every error names the path.
func prepareSchema(db *bolt.DB, opts Options) error {
	var version uint64
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		version, err = readSchemaVersion(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("open state store %s: %w", db.Path(), err)
	}

	supported := supportedVersion()
	switch {
	case version > supported:
		return fmt.Errorf("state store %s has schema version %d, %w (%d): upgrade agent-runner, or move the file aside to start afresh",
			db.Path(), version, ErrNewerSchema, supported)
	case version == supported:
		if err := db.View(checkLayout); err != nil {
			return fmt.Errorf("open state store %s: %w", db.Path(), err)
		}
		return nil
	case opts.ReadOnly:
		return fmt.Errorf("state store %s has schema version %d, %w (%d): start the agent-runner daemon once to migrate it",
			db.Path(), version, ErrOlderSchema, supported)
	}

	// A file that lost a bucket of its own version is corrupt; finding
	// out before migrating leaves it untouched for the move aside.
	if err := db.View(func(tx *bolt.Tx) error { return checkLayoutOf(tx, version) }); err != nil {
		return fmt.Errorf("open state store %s: %w", db.Path(), err)
	}
	for v := version; v < supported; v++ {
		if err := db.Update(func(tx *bolt.Tx) error { return migrate(tx, v) }); err != nil {
			return fmt.Errorf("migrate state store %s from schema version %d to %d: %w", db.Path(), v, v+1, err)
		}
		if version > 0 {
			opts.Logger.Info("migrated state store schema", "path", db.Path(), "from", v, "to", v+1)
		}
	}
	if version == 0 {
		// Version 0 is a new file, whose steps to the current version
		// need no log line each.
		opts.Logger.Info("created state store", "path", db.Path(), "schema", supported)
	}
	return nil
}

func migrate(tx *bolt.Tx, from uint64) error {
	if err := migrations[from](tx); err != nil {
		return err
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketMeta, err)
	}
	return meta.Put(keySchemaVersion, binary.BigEndian.AppendUint64(nil, from+1))
}

// readSchemaVersion returns the stored version. A file with buckets but no
// meta bucket, or with a meta bucket but no valid version, wraps ErrCorrupt.
func readSchemaVersion(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if hasBuckets(tx) {
			return 0, fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, bucketMeta)
		}
		return 0, nil
	}
	value := meta.Get(keySchemaVersion)
	if len(value) != 8 {
		return 0, fmt.Errorf("%w: schema version %x is not 8 bytes", ErrCorrupt, value)
	}
	return binary.BigEndian.Uint64(value), nil
}

func hasBuckets(tx *bolt.Tx) bool {
	key, _ := tx.Cursor().First()
	return key != nil
}

// checkLayout verifies that a store at the version this binary writes has
// the buckets that version defines.
func checkLayout(tx *bolt.Tx) error {
	return checkLayoutOf(tx, supportedVersion())
}

// checkLayoutOf verifies that a store has the buckets of schema version.
func checkLayoutOf(tx *bolt.Tx, version uint64) error {
	for _, name := range bucketsOf(version) {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, name)
		}
	}
	return nil
}

// bucketsOf lists the top-level buckets of a schema version.
func bucketsOf(version uint64) [][]byte {
	var names [][]byte
	if version >= 1 {
		names = append(names, bucketMeta, bucketJobs, bucketRuns)
	}
	if version >= 2 {
		names = append(names, bucketListeners)
	}
	return names
}
