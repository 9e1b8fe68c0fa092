package state

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

// openBolt opens the bbolt file. A bbolt panic or memory fault while reading
// a damaged file is returned as an error wrapping ErrCorrupt, so a bad file
// cannot crash the daemon before it can be moved aside.
func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	var file *os.File
	boltOpts := &bolt.Options{
		Timeout:  opts.LockTimeout,
		ReadOnly: opts.ReadOnly,
		// A read-only Open otherwise loads the freelist lazily, inside the
		// goroutine of tx.Check, where a fault cannot be recovered.
		PreLoadFreelist: true,
		FreelistType:    bolt.FreelistMapType,
		// NoFreelistSync stays false. Without a synced freelist, bbolt v1.5.0
		// rebuilds it on every read-write Open by walking the file in its own
		// goroutine, where a damaged page panics the whole process.
		NoFreelistSync: false,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}

	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db = nil
			err = &panicError{
				err:  fmt.Errorf("open state store %s: %w: bbolt panicked: %v", path, ErrCorrupt, r),
				file: file,
			}
		}
	}()

	db, err = bolt.Open(path, 0o600, boltOpts)
	if err == nil {
		return db, nil
	}
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("state store %s is %w (probably the daemon), which kept it for more than %s", path, ErrLocked, opts.LockTimeout)
	case isFormatError(err):
		return nil, fmt.Errorf("open state store %s: %w: %w", path, ErrCorrupt, err)
	default:
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
}

// panicError is a bbolt panic during Open, with the file bbolt had opened
// and locked. The half-opened DB is out of reach, so its memory map of the
// file leaks. The map keeps the open file alive, so its lock also lasts
// until the process exits, even after file is closed.
//
// NOTE: after such a recovery, the moved-aside copy stays locked until the
// daemon exits, so bbolt tools opening it wait for the lock meanwhile.
type panicError struct {
	err  error
	file *os.File
}

func (e *panicError) Error() string { return e.err.Error() }
func (e *panicError) Unwrap() error { return e.err }

// isFormatError reports whether bolt.Open failed on the file's contents
// rather than on access to it.
func isFormatError(err error) bool {
	if errors.Is(err, bolt.ErrInvalid) || errors.Is(err, bolt.ErrVersionMismatch) || errors.Is(err, bolt.ErrChecksum) {
		return true
	}
	// bbolt v1.5.0 (DB.fileSize) returns this error, which has no sentinel,
	// for a file shorter than two pages whose first meta page is valid.
	// TestOpenMovesCorruptStoreAside fails if a bbolt upgrade changes it.
	return strings.HasPrefix(err.Error(), "file size too small")
}

// checkFile checks what bolt.Open does not: that no page lies past the end
// of the file, that every bucket and key can be read, and that bbolt's
// consistency check (tx.Check) passes. Problems wrap ErrCorrupt.
func checkFile(db *bolt.DB) error {
	info, err := os.Stat(db.Path())
	if err != nil {
		return fmt.Errorf("check file: %w", err)
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > info.Size() {
			return fmt.Errorf("%w: file is %d bytes but its pages reach byte %d, so it was truncated", ErrCorrupt, info.Size(), tx.Size())
		}
		if err := walkPages(db, tx); err != nil {
			return err
		}
		if err := readAllPages(tx); err != nil {
			return err
		}
		return firstCheckError(tx)
	})
}

// firstCheckError runs bbolt's consistency check and returns its first
// problem. It drains the channel, because the check goroutine blocks on
// each send and must finish before the transaction closes.
func firstCheckError(tx *bolt.Tx) error {
	var first error
	for err := range tx.Check() {
		if first == nil {
			first = fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}
	return first
}

// readAllPages walks every bucket and key in this goroutine, with faults
// turned into panics, before tx.Check walks them in a goroutine of its own.
func readAllPages(tx *bolt.Tx) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: reading pages panicked: %v", ErrCorrupt, r)
		}
	}()
	var sum uint64
	err = tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
		return readBucket(b, &sum)
	})
	touched.Add(sum)
	return err
}

// touched keeps the compiler from dropping the reads in readBucket.
var touched atomic.Uint64

func readBucket(b *bolt.Bucket, sum *uint64) error {
	return b.ForEach(func(key, value []byte) error {
		if value != nil {
			// Touch the value's last byte, which may sit on an overflow page.
			if len(value) > 0 {
				*sum += uint64(value[len(value)-1])
			}
			return nil
		}
		nested := b.Bucket(key)
		if nested == nil {
			return fmt.Errorf("%w: bucket entry %q is neither a value nor a bucket", ErrCorrupt, key)
		}
		return readBucket(nested, sum)
	})
}
