package state

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// finishDelay bounds how long a finished run's record waits in memory for
// a commit that some other write makes anyway. bbolt syncs every commit
// twice (data pages, then the meta page), so a finish that rides along
// with the next claim costs no sync of its own. A record lost to a crash
// in that window shows as interrupted after the restart, as a crash during
// the run does.
const finishDelay = time.Second

// writer turns concurrent writes into group commits: the first caller
// leads and commits every write queued meanwhile in one bbolt transaction,
// then hands the lead to the next waiting caller. Under load, claims of a
// slot's runs share a commit; alone, a write commits at once, as before.
type writer struct {
	mu      sync.Mutex
	leading bool
	queue   []*writeOp
	// finishes are final run records not yet written. Every transaction
	// writes them first, and a timer writes them after finishDelay.
	finishes []Run
	pending  map[string]bool
	timer    *time.Timer
	log      *slog.Logger
}

// writeOp is one caller's write. ready is closed once err is set, or once
// the caller is to lead; the leader reads its own result without it.
type writeOp struct {
	fn    func(tx *bolt.Tx) error
	err   error
	lead  bool
	ready chan struct{}
}

// opError marks a failure of one write in a batch, as opposed to a failed
// commit.
type opError struct{ err error }

func (e *opError) Error() string { return e.err.Error() }

// update runs fn in a write transaction that bbolt commits with its two
// fdatasync calls before update returns. The transaction may contain the
// writes of other callers and the pending finished runs. When fn fails,
// the batch is retried one write per transaction, so fn's error undoes
// only fn's own writes.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	if s.readOnly {
		return fmt.Errorf("write state store %s: %w", s.path, ErrReadOnly)
	}
	w := &s.writer
	op := &writeOp{fn: fn, ready: make(chan struct{})}
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

// commitQueued commits every queued write and every pending finish, then
// passes the lead to the oldest write that arrived during the commit.
func (s *Store) commitQueued(self *writeOp) {
	w := &s.writer
	w.mu.Lock()
	batch, finishes := w.queue, w.finishes
	w.queue, w.finishes, w.pending = nil, nil, nil
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.mu.Unlock()

	s.commitBatch(batch, finishes)
	for _, op := range batch {
		if op != self {
			close(op.ready)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		w.leading = false
		return
	}
	next := w.queue[0]
	next.lead = true
	close(next.ready)
}

// commitBatch writes finishes and batch in one transaction and sets each
// write's error. When one write fails, the transaction is rolled back and
// every write is retried alone, so a write never fails for another's
// error.
func (s *Store) commitBatch(batch []*writeOp, finishes []Run) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.writeFinishes(tx, finishes); err != nil {
			return err
		}
		for _, op := range batch {
			if err := op.fn(tx); err != nil {
				return &opError{err}
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	var failed *opError
	if !errors.As(err, &failed) {
		// The commit itself failed, so every write did.
		for _, op := range batch {
			op.err = err
		}
		s.commitFinishes(finishes)
		return
	}
	// Finishes go first, as in the batch, so that a job's earlier run is
	// finished before its next one is claimed.
	s.commitFinishes(finishes)
	if len(batch) == 1 {
		batch[0].err = failed.err
		return
	}
	for _, op := range batch {
		op.err = s.db.Update(op.fn)
	}
}

// commitFinishes writes finished runs in a transaction of their own.
func (s *Store) commitFinishes(finishes []Run) {
	if len(finishes) == 0 {
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return s.writeFinishes(tx, finishes) })
	if err != nil {
		s.writer.log.Error("record finished runs failed; they will show as interrupted after a restart",
			"runs", len(finishes), "err", err)
	}
}

// writeFinishes stores pending final records. A record whose run is gone
// or no longer running is logged and dropped, because its job was
// forgotten or recovered meanwhile. Only a failed bbolt write is returned.
func (s *Store) writeFinishes(tx *bolt.Tx, finishes []Run) error {
	for _, run := range finishes {
		err := s.finishIn(tx, run)
		var skip *finishConflict
		if errors.As(err, &skip) {
			s.writer.log.Warn("finished run not recorded", "job", run.Job, "run", run.ID, "err", skip.err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// queueFinish adds a checked final record to the pending ones and arms the
// timer that writes them when no other write comes first.
func (s *Store) queueFinish(run Run) error {
	w := &s.writer
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending[run.ID] {
		return fmt.Errorf("run %s is already finished: %w", run.ID, ErrRunFinished)
	}
	if w.pending == nil {
		w.pending = make(map[string]bool)
	}
	w.pending[run.ID] = true
	w.finishes = append(w.finishes, run)
	if w.timer == nil {
		w.timer = time.AfterFunc(finishDelay, s.flushFinishes)
	}
	return nil
}

// flushFinishes commits the pending finished runs, if any.
func (s *Store) flushFinishes() {
	w := &s.writer
	w.mu.Lock()
	empty := len(w.finishes) == 0
	w.mu.Unlock()
	if empty {
		return
	}
	if err := s.update(func(*bolt.Tx) error { return nil }); err != nil {
		w.log.Error("record finished runs failed", "err", err)
	}
}
