package state

import "time"

// Recorder is the part of the store that the run boundary writes to.
// *Store is one; Transient is another, for a CLI that must not hold the
// file lock while a job runs.
type Recorder interface {
	Claim(run Run, next time.Time) (Run, error)
	Skip(name string, slot time.Time, trigger, reason string, now, next time.Time) error
	Finish(run Run) error
	RecordSkipped(run Run) (Run, error)
}

var (
	_ Recorder = (*Store)(nil)
	_ Recorder = Transient{}
)

// Transient opens the store for each write and closes it right after, so
// the file lock is held for one transaction at a time. A CLI running a job
// in-process uses it, which leaves the store free for list and for a
// daemon that starts meanwhile.
type Transient struct {
	Path    string
	Options Options
}

// with opens the store, calls fn and closes it.
func (t Transient) with(fn func(*Store) error) error {
	s, err := Open(t.Path, t.Options)
	if err != nil {
		return err
	}
	err = fn(s)
	if closeErr := s.Close(); err == nil {
		err = closeErr
	}
	return err
}

// Claim opens the store and claims the run; see Store.Claim.
func (t Transient) Claim(run Run, next time.Time) (Run, error) {
	var stored Run
	err := t.with(func(s *Store) (err error) {
		stored, err = s.Claim(run, next)
		return err
	})
	return stored, err
}

// Skip opens the store and skips the slot; see Store.Skip.
func (t Transient) Skip(name string, slot time.Time, trigger, reason string, now, next time.Time) error {
	return t.with(func(s *Store) error { return s.Skip(name, slot, trigger, reason, now, next) })
}

// Finish opens the store and records the result; see Store.Finish.
func (t Transient) Finish(run Run) error {
	return t.with(func(s *Store) error { return s.Finish(run) })
}

// RecordSkipped opens the store and records the run; see
// Store.RecordSkipped.
func (t Transient) RecordSkipped(run Run) (Run, error) {
	var stored Run
	err := t.with(func(s *Store) (err error) {
		stored, err = s.RecordSkipped(run)
		return err
	})
	return stored, err
}
