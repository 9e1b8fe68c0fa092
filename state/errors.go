package state

import "errors"

// Sentinel errors of the store. Callers test for them with errors.Is, and
// the returned errors wrap them with the path, job or run involved.
var (
	// ErrLocked means another process holds the store's file lock.
	ErrLocked = errors.New("locked by another agent-runner process")
	// ErrNewerSchema means the store was written by a newer agent-runner.
	ErrNewerSchema = errors.New("newer than this agent-runner supports")
	// ErrOlderSchema means a read-only Open found a store that needs a
	// migration, which only a read-write Open performs.
	ErrOlderSchema = errors.New("older than this agent-runner uses")
	// ErrCorrupt means the file failed bbolt's format checks or lacks the
	// store's layout. A read-write Open moves such a file aside instead.
	ErrCorrupt = errors.New("corrupt state store")
	// ErrReadOnly means a write was attempted on a store opened read-only.
	ErrReadOnly = errors.New("state store is open read-only")
	// ErrSlotClaimed means the slot is not after the job's last claimed or
	// skipped slot, so running it would run a slot twice.
	ErrSlotClaimed = errors.New("slot already claimed")
	// ErrJobNotFound means the store has no state for the job.
	ErrJobNotFound = errors.New("job not found in state store")
	// ErrRunNotFound means the job's history has no run with the ID.
	ErrRunNotFound = errors.New("run not found in state store")
	// ErrRunFinished means Finish was called for a run already finished.
	ErrRunFinished = errors.New("run already finished")
)
