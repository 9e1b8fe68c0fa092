package state

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Defaults applied by Open to zero Options fields.
const (
	defaultLockTimeout  = time.Second
	defaultHistoryLimit = 50
)

// Options configures Open.
type Options struct {
	// ReadOnly opens the store with a shared lock and rejects writes. A
	// read-only Open never creates, migrates or moves the file, and
	// writes neither it nor its claim log. Reads include the claim log's
	// entries, which it redoes in a copy of the store in memory.
	ReadOnly bool
	// LockTimeout is how long Open waits for the file lock. Zero or less
	// means one second.
	LockTimeout time.Duration
	// HistoryLimit is the number of run records kept per job. Zero or less
	// means 50.
	HistoryLimit int
	// Logger receives corruption, recovery and migration events. Nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = defaultLockTimeout
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = defaultHistoryLimit
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Store is the open state file. All methods are safe for concurrent use,
// because bbolt serializes write transactions.
type Store struct {
	db *bolt.DB
	// source is the store file under db when db is a copy in memory
	// with the claim log's entries redone, for a read-only Open.
	source       *bolt.DB
	path         string
	recovered    string
	readOnly     bool
	historyLimit int
	writer       writer
}

// Open opens the store at path and migrates it to the current schema. A
// missing file is created with mode 0600, and a missing folder with 0700.
//
// A file that fails bbolt's format checks, or lacks the store's layout, is
// logged at ERROR, moved to PATH.corrupt-<UTC timestamp> and replaced with a
// fresh store, and Recovered returns the path it was moved to. A zero-length
// file is initialized in place, since it contains nothing to keep. Job
// records that do not decode are replaced with new ones after a copy of
// the store is saved the same way (see replaceDamagedJobs). Errors
// unrelated to the file's contents, such as permission denied or ErrLocked,
// are returned and never move the file.
//
// With opts.ReadOnly, a missing or zero-length file returns an error
// wrapping fs.ErrNotExist, and a corrupt one an error wrapping ErrCorrupt.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	s := &Store{path: path, readOnly: opts.ReadOnly, historyLimit: opts.HistoryLimit}
	s.writer.log = opts.Logger
	s.writer.delay = commitDelay

	var err error
	if opts.ReadOnly {
		s.db, err = openReadOnly(path, opts)
		if err != nil {
			return nil, err
		}
		s.overlayClaimLog(opts)
		return s, nil
	}

	logPath := path + claimLogSuffix
	// Before the store opens, which removes the log beside a missing or
	// empty store and cannot remove a folder.
	if err := setAsideIrregularLog(logPath, opts.Logger); err != nil {
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	s.db, s.recovered, err = openReadWrite(path, opts)
	if err != nil {
		return nil, err
	}
	generation, err := replayClaimLog(s.db, logPath, opts)
	if err == nil {
		s.writer.claims, err = openClaimLog(logPath, generation, opts.Logger)
	}
	if err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	return s, nil
}

// openReadWrite opens the store for the daemon, moving a corrupt file aside
// and starting afresh once.
func openReadWrite(path string, opts Options) (*bolt.DB, string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", fmt.Errorf("create state folder: %w", err)
	}
	empty := warnIfEmpty(path, opts.Logger)
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)

	db, err := openStore(path, opts)
	if err == nil && created {
		syncDir(filepath.Dir(path), opts.Logger)
	}
	if err == nil && (created || empty) {
		// NOTE: a store that another process created between the Stat
		// above and the lock, and left with pending claims, loses its
		// claim log here.
		if err := discardClaimLog(path+claimLogSuffix, opts.Logger); err != nil {
			_ = db.Close()
			return nil, "", fmt.Errorf("open state store %s: %w", path, err)
		}
	}
	if err == nil {
		if err := replaceDamagedJobs(db, path, opts.Logger); err != nil {
			_ = db.Close()
			return nil, "", err
		}
	}
	if !errors.Is(err, ErrCorrupt) {
		return db, "", err
	}

	moved, err := moveAside(path, err, opts)
	if err != nil {
		return nil, "", err
	}
	db, err = openStore(path, opts)
	if err != nil {
		return nil, "", err
	}
	syncDir(filepath.Dir(path), opts.Logger)
	return db, moved, nil
}

func openReadOnly(path string, opts Options) (*bolt.DB, error) {
	info, err := os.Stat(path)
	if err == nil && info.Mode().IsRegular() && info.Size() == 0 {
		return nil, fmt.Errorf("open state store %s: file is empty, so it contains no state: %w", path, fs.ErrNotExist)
	}
	db, err := openStore(path, opts)
	var panicked *panicError
	if errors.As(err, &panicked) && panicked.file != nil {
		_ = panicked.file.Close()
	}
	if errors.Is(err, ErrCorrupt) {
		return nil, fmt.Errorf("%w (start the agent-runner daemon to move it aside and start afresh)", err)
	}
	return db, err
}

// openStore opens the bbolt file, checks it and brings its schema up to
// date. Every error names the path.
func openStore(path string, opts Options) (*bolt.DB, error) {
	db, err := openBolt(path, opts)
	if err != nil {
		return nil, err
	}
	if err := checkFile(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	if err := prepareSchema(db, opts); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// warnIfEmpty logs a zero-length store file, which bbolt initializes as a
// new database, and reports whether it found one. It can be left by a
// crash while the file was first created, or by something outside
// agent-runner truncating it.
func warnIfEmpty(path string, logger *slog.Logger) bool {
	info, err := os.Stat(path)
	if err != nil || !info.Mode().IsRegular() || info.Size() != 0 {
		return false
	}
	logger.Warn("state store file is empty, so a fresh store is started in it", "path", path)
	return true
}

// Close commits the pending claims and finished runs, closes the file and
// releases its lock. It waits for transactions in progress to finish. A
// failed commit leaves them in the claim log for the next Open, except
// finishes that did not fit in the log, which are lost.
func (s *Store) Close() error {
	s.writer.stopTimer()
	s.writer.timerFlushes.Wait()
	s.flush()
	if n := len(s.writer.deferred); n > 0 {
		s.writer.log.Warn("finished runs not stored, so the next start marks them interrupted", "runs", n)
	}
	var logErr error
	if s.writer.claims != nil {
		logErr = s.writer.claims.close()
	}
	err := s.db.Close()
	if s.source != nil {
		err = errors.Join(err, s.source.Close())
	}
	if err != nil {
		return fmt.Errorf("close state store %s: %w", s.path, err)
	}
	if logErr != nil {
		return fmt.Errorf("close state store %s: close claim log: %w", s.path, logErr)
	}
	return nil
}

// Path returns the path the store was opened at.
func (s *Store) Path() string { return s.path }

// Recovered returns the path a corrupt store was moved to by Open, or "".
func (s *Store) Recovered() string { return s.recovered }

// view runs fn in a read transaction after committing the open write
// transaction, so that a read sees every Claim and Finish that returned
// before it. When that commit fails, as on a full disk, fn runs in the
// open write transaction instead. That transaction contains them too, so
// status does not show the store as it was before the failure.
//
// While commits fail, a read does not try one of its own: each try
// rebuilds the transaction from the claim log, and a status that reads
// every job would make one per job. The commit timer keeps trying.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	if !s.commitsFailing() {
		s.flush()
	}
	if s.commitsFailing() {
		return s.viewPending(fn)
	}
	return s.db.View(fn)
}
