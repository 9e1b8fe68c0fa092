package state

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// commitDelay bounds how long claims and finished runs that the claim log
// made durable wait in the open transaction for a bbolt commit. bbolt
// syncs every commit twice (data pages, then the meta page), so runs in a
// row cost one claim log sync each plus at most two syncs per commitDelay.
const commitDelay = time.Second

// writer turns concurrent writes into group commits: the first caller
// leads and applies every write queued meanwhile to one open bbolt write
// transaction, then hands the lead to the next waiting caller.
//
// A batch of claims and finishes stays in the open transaction and is made
// durable by one claim log write and one fdatasync, without one for
// finishes alone. Any other write commits the open transaction. Readers
// through db.View keep seeing the last commit, so view commits first.
type writer struct {
	mu      sync.Mutex
	leading bool
	queue   []*writeOp
	// pending is set while writes wait for a commit, for callers that do
	// not lead.
	pending bool
	timer   *time.Timer
	// flushFailed is set while commits of pending writes fail.
	flushFailed bool
	// recreateFailed is set while a deleted or replaced claim log cannot
	// be recreated, so that the failure is logged once.
	recreateFailed bool
	// closed is set by Close, after which the timer stays off.
	closed bool
	// timerFlushes counts the timer's flushes in progress, which Close
	// waits for before it commits and closes the files under them.
	timerFlushes sync.WaitGroup
	// delay is commitDelay, which tests raise to keep the transaction
	// open.
	delay time.Duration
	log   *slog.Logger

	// tx is the open write transaction, nil when none. Its changes beyond
	// the last commit are exactly the entries in claims, so it can be
	// rebuilt from them. Only the leader uses tx and claims.
	tx     *bolt.Tx
	claims *claimLog
	// deferred contains finishes that neither the claim log nor a commit
	// could take, such as on a full disk. They are redone in every new
	// transaction after the claim log's entries until a commit contains
	// them, so that a finished run does not stay "running" and is not
	// marked interrupted at the next start. While it is not empty, every
	// write commits, because a claim logged after a deferred finish would
	// be redone before it.
	deferred []logEntry
	// commits counts bbolt commits, for tests.
	commits int
	// commitFailure is the error of the last failed commit, or begin of a
	// write transaction, until a commit succeeds. logFailure is that of
	// the last failed claim log write, until one succeeds. They are kept
	// apart because on a full disk claims still fit in the preallocated
	// log while commits fail. mu guards both.
	commitFailure, logFailure error
}

// opKind is the durability that a write needs before it returns.
type opKind int

const (
	// opCommit commits the open transaction before update returns.
	opCommit opKind = iota
	// opClaim is synced to the claim log before update returns.
	opClaim
	// opFinish is written to the claim log without a sync, so it becomes
	// durable with the next claim or commit.
	opFinish
	// opRead only reads the open transaction and needs no durability.
	opRead
)

// writeOp is one caller's write. ready is closed once err is set, or once
// the caller is to lead; the leader reads its own result without it.
type writeOp struct {
	kind opKind
	// fn applies the write to tx, and returns the entry that redoes it
	// for opClaim and opFinish.
	fn    func(tx *bolt.Tx) (*logEntry, error)
	entry *logEntry
	err   error
	lead  bool
	ready chan struct{}
}

// rejection is a write's error raised before the write changed anything,
// such as a slot that is not after the last one, so the open transaction
// needs no rollback.
type rejection struct{ err error }

func (e *rejection) Error() string { return e.err.Error() }
func (e *rejection) Unwrap() error { return e.err }

// update runs fn in the open write transaction and commits it, with
// bbolt's two fdatasync calls, before update returns. The commit may
// contain the writes of other callers and the pending claims and
// finishes. When fn fails, the batch is retried one write at a time, so
// fn's error undoes only fn's own writes.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	return s.write(opCommit, func(tx *bolt.Tx) (*logEntry, error) { return nil, fn(tx) })
}

// write queues a write of the given kind and returns its result once it
// is durable as that kind promises.
func (s *Store) write(kind opKind, fn func(tx *bolt.Tx) (*logEntry, error)) error {
	if s.readOnly {
		return fmt.Errorf("write state store %s: %w", s.path, ErrReadOnly)
	}
	w := &s.writer
	op := &writeOp{kind: kind, fn: fn, ready: make(chan struct{})}
	w.mu.Lock()
	w.queue = append(w.queue, op)
	lead := !w.leading
	w.leading = true
	w.mu.Unlock()
	if !lead {
		<-op.ready
		if !op.lead {
			return op.err
		}
	}
	s.commitQueued(op)
	return op.err
}

// commitQueued applies every queued write, then passes the lead to the
// oldest write that arrived meanwhile.
func (s *Store) commitQueued(self *writeOp) {
	w := &s.writer
	w.mu.Lock()
	batch := w.queue
	w.queue = nil
	w.mu.Unlock()

	s.commitBatch(batch)

	w.mu.Lock()
	defer w.mu.Unlock()
	// After a rollback, the claim log alone contains the pending writes.
	w.pending = w.tx != nil || (w.claims != nil && w.claims.size > 0) || len(w.deferred) > 0
	if w.pending && w.timer == nil && !w.closed {
		s.armTimer()
	}
	if !w.pending && w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	for _, op := range batch {
		if op != self {
			close(op.ready)
		}
	}
	if len(w.queue) == 0 {
		w.leading = false
		return
	}
	next := w.queue[0]
	next.lead = true
	close(next.ready)
}

// commitBatch applies batch to the open transaction and makes it durable,
// setting each write's error. When a write fails after it may have
// changed the transaction, the transaction is rolled back and every write
// is retried alone, so one write's own error never fails another. A read
// that ran before the failed write keeps its result and is not run again.
// A failed commit or claim log write still fails every write it contained.
func (s *Store) commitBatch(batch []*writeOp) {
	tx, err := s.openTx()
	if err != nil {
		for _, op := range batch {
			op.err = err
		}
		return
	}
	for i, op := range batch {
		op.entry, op.err = op.fn(tx)
		var rejected *rejection
		if op.err == nil || errors.As(op.err, &rejected) {
			continue
		}
		s.abortTx()
		if len(batch) == 1 {
			return
		}
		for j, op := range batch {
			if op.kind == opRead && j < i {
				// The read has its result, and running it again would
				// hand its caller every record twice.
				continue
			}
			op.err, op.entry = nil, nil
			s.commitBatch([]*writeOp{op})
		}
		return
	}
	s.persist(batch)
}

// persist makes the applied writes of batch durable. Claims and finishes
// alone go to the claim log when they fit in it and the log is still at
// its path, and everything else commits the open transaction.
func (s *Store) persist(batch []*writeOp) {
	w := &s.writer
	var done []*writeOp
	commit, sync := false, false
	for _, op := range batch {
		if op.err != nil || op.kind == opRead {
			continue
		}
		done = append(done, op)
		commit = commit || op.kind == opCommit
		sync = sync || op.kind == opClaim
	}
	if len(done) == 0 {
		if w.claims.size == 0 {
			// The transaction has no changes to keep.
			s.abortTx()
		}
		return
	}
	if !commit {
		err := s.appendEntries(done, sync)
		if err == nil {
			w.setFailure(&w.logFailure, nil)
			return
		}
		if !errors.Is(err, errClaimLogFull) && !errors.Is(err, errClaimLogMoved) && !errors.Is(err, errFinishesDeferred) {
			w.setFailure(&w.logFailure, err)
			s.abortTx()
			s.deferFinishes(done, err)
			return
		}
	}

	err := w.tx.Commit()
	w.tx = nil
	if err != nil {
		err = fmt.Errorf("commit state store %s: %w", s.path, err)
		w.setFailure(&w.commitFailure, err)
		// bbolt rolled the transaction back, and the next write rebuilds
		// it from the claim log and the deferred finishes.
		s.keepLoggable(done, err)
		return
	}
	w.setFailure(&w.commitFailure, nil)
	w.commits++
	w.deferred = nil
	s.restartClaimLog()
}

// restartClaimLog empties the claim log after a commit made its entries
// redundant. A log that is no longer at its path is replaced by a new one
// there, because a restart would not find the old one. The reset is a
// claim log write, so it also sets or clears the claim log failure that
// WriteError reports, which otherwise stays until the next claim.
func (s *Store) restartClaimLog() {
	w := &s.writer
	if w.claims.moved() && s.recreateClaimLog() {
		w.setFailure(&w.logFailure, nil)
		return
	}
	err := w.claims.reset()
	w.setFailure(&w.logFailure, err)
	if err != nil {
		w.log.Warn("reset claim log failed, so a restart replays entries that the store already contains", "err", err)
	}
}

// recreateClaimLog opens a new claim log at the path of a log that was
// deleted or replaced, and reports whether it did. It runs right after a
// commit, so the old file contains nothing that bbolt lacks and a crash
// during it loses no claim. While it fails, the old file stays open and
// every claim commits bbolt instead, at two syncs rather than one.
func (s *Store) recreateClaimLog() bool {
	w := &s.writer
	path := w.claims.path
	fresh, err := w.claims.reopen(w.log)
	if err != nil {
		if !w.recreateFailed {
			w.log.Error("recreate claim log failed, so every claim commits the state store until it succeeds", "path", path, "err", err)
		}
		w.recreateFailed = true
		return false
	}
	w.claims = fresh
	w.recreateFailed = false
	w.log.Warn("claim log was deleted or replaced; recreated it", "path", path)
	return true
}

// keepLoggable handles a failed commit of done. The claims and finishes
// among done are written to the claim log, as they would have been
// without a commit in their batch, so that only the writes that needed
// the commit fail with err. When the log has no room for them, or is no
// longer at its path, they fail too.
func (s *Store) keepLoggable(done []*writeOp, err error) {
	var loggable, committed []*writeOp
	sync := false
	for _, op := range done {
		if op.kind == opCommit {
			committed = append(committed, op)
			continue
		}
		loggable = append(loggable, op)
		sync = sync || op.kind == opClaim
	}
	setErrors(committed, err)
	if len(loggable) == 0 {
		return
	}
	if logErr := s.appendEntries(loggable, sync); logErr != nil {
		s.deferFinishes(loggable, err)
	}
}

// deferFinishes handles writes of done that neither the claim log nor a
// commit took. Claims fail with err, because a claim must be durable
// before its run starts. Finishes succeed and are kept in memory until a
// commit contains them. As with an unsynced finish in the claim log, a
// process exit before then loses them, and the next start marks their
// runs interrupted.
func (s *Store) deferFinishes(done []*writeOp, err error) {
	w := &s.writer
	for _, op := range done {
		if op.kind != opFinish {
			op.err = err
			continue
		}
		if len(w.deferred) == 0 {
			w.log.Warn("claim log and state store cannot take finished runs, so they stay in memory until a commit succeeds", "err", err)
		}
		w.deferred = append(w.deferred, *op.entry)
	}
}

// appendEntries writes the entries of done to the claim log in one write,
// synced when sync is set. It returns errClaimLogMoved, writing nothing,
// when the log is no longer at its path. That check is one lstat, which
// took about 2 µs against 0.13 ms for an fdatasync in a Go benchmark on a
// 2-core VM with ext4.
func (s *Store) appendEntries(done []*writeOp, sync bool) error {
	claims := s.writer.claims
	if len(s.writer.deferred) > 0 {
		return errFinishesDeferred
	}
	if claims.moved() {
		return errClaimLogMoved
	}
	var records []byte
	for _, op := range done {
		var err error
		if records, err = appendRecord(records, claims.generation, *op.entry); err != nil {
			return err
		}
	}
	return claims.append(records, sync)
}

func setErrors(ops []*writeOp, err error) {
	for _, op := range ops {
		op.err = err
	}
}

// openTx returns the open write transaction, beginning one when there is
// none. A new transaction first redoes the claim log's entries, which
// are in the log but not yet in bbolt after a rollback or a failed commit.
func (s *Store) openTx() (*bolt.Tx, error) {
	w := &s.writer
	if w.tx != nil {
		return w.tx, nil
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		err = fmt.Errorf("begin write to state store %s: %w", s.path, err)
		w.setFailure(&w.commitFailure, err)
		return nil, err
	}
	if (w.claims != nil && w.claims.size > 0) || len(w.deferred) > 0 {
		err := s.redoClaimLog(tx)
		if err != nil {
			_ = tx.Rollback()
			return nil, err
		}
	}
	w.tx = tx
	return tx, nil
}

// redoClaimLog rebuilds the open transaction's pending writes from the
// claim log, then from the deferred finishes, which came after them.
func (s *Store) redoClaimLog(tx *bolt.Tx) error {
	entries, err := s.writer.claims.entries()
	if err == nil {
		entries = append(entries, s.writer.deferred...)
		_, err = redoEntries(tx, entries, s.historyLimit, s.writer.log)
	}
	if err != nil {
		return fmt.Errorf("rebuild pending claims of state store %s: %w", s.path, err)
	}
	return nil
}

// abortTx rolls back the open transaction. The next write rebuilds it
// from the claim log, which contains only acknowledged writes.
func (s *Store) abortTx() {
	w := &s.writer
	if w.tx == nil {
		return
	}
	if err := w.tx.Rollback(); err != nil {
		w.log.Warn("roll back state store transaction failed", "err", err)
	}
	w.tx = nil
}

// setFailure sets *failure, one of the writer's failure fields, to err.
func (w *writer) setFailure(failure *error, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*failure = err
}

// failureLocked returns the commit failure, else the claim log
// failure. The caller holds w.mu.
func (w *writer) failureLocked() error {
	if w.commitFailure != nil {
		return w.commitFailure
	}
	return w.logFailure
}

// WriteError returns the error of the last commit that failed to reach
// the disk, as on a full or read-only file system, until a commit
// succeeds. Without one, it returns the error of the last failed claim
// log write until one succeeds, or nil. While a write failed, it first
// tries an empty commit, so that a store that accepts writes again shows
// it before the next run writes. An error of the write's own, such as a
// slot that is already claimed, does not count.
func (s *Store) WriteError() error {
	if s.readOnly {
		return nil
	}
	w := &s.writer
	w.mu.Lock()
	failed := w.failureLocked() != nil
	w.mu.Unlock()
	if failed {
		_ = s.update(func(*bolt.Tx) error { return nil })
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failureLocked()
}

// commitsFailing reports whether writes wait for a commit that failed.
func (s *Store) commitsFailing() bool {
	w := &s.writer
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending && w.commitFailure != nil
}

// viewPending runs fn in the open write transaction, which contains the
// claims and finishes that no commit took yet. fn must not write.
func (s *Store) viewPending(fn func(tx *bolt.Tx) error) error {
	err := s.write(opRead, func(tx *bolt.Tx) (*logEntry, error) {
		if err := fn(tx); err != nil {
			// A rejection keeps the open transaction, which fn did not
			// change.
			return nil, &rejection{err}
		}
		return nil, nil
	})
	if rejected, ok := errors.AsType[*rejection](err); ok {
		return rejected.err
	}
	return err
}

// armTimer starts the timer that commits pending writes after the delay.
// The caller holds w.mu. A commit that fails arms it again, so pending
// claims are retried every delay until a commit succeeds.
func (s *Store) armTimer() {
	w := &s.writer
	var timer *time.Timer
	timer = time.AfterFunc(w.delay, func() {
		w.mu.Lock()
		if w.timer == timer {
			w.timer = nil
		}
		if w.closed {
			w.mu.Unlock()
			return
		}
		w.timerFlushes.Add(1)
		w.mu.Unlock()
		defer w.timerFlushes.Done()
		s.flush()
	})
	w.timer = timer
}

// stopTimer stops the commit timer for good, at Close.
func (w *writer) stopTimer() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

// flush commits the open transaction, if any, so that db.View sees every
// write that returned before. Of failures in a row, only the first is
// logged.
func (s *Store) flush() {
	w := &s.writer
	w.mu.Lock()
	pending := w.pending
	w.mu.Unlock()
	if !pending {
		return
	}
	err := s.update(func(*bolt.Tx) error { return nil })

	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil && !w.flushFailed {
		w.log.Error("commit pending claims and finished runs failed, so they stay in the claim log until a commit succeeds", "err", err)
	}
	if err == nil && w.flushFailed {
		w.log.Info("committed pending claims and finished runs again")
	}
	w.flushFailed = err != nil
}
