package state

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TriggerReset marks the record of a position that agent-runner reset
// moved.
const TriggerReset = "reset"

// ResetPosition sets the job's LastSlot to slot and its FirstSeen to
// firstSeen, also backward, which Claim and Skip never do, and stores a
// run record with Result "skipped", Trigger "reset" and reason as its
// Error. It sets NextRun=next and leaves the job's health as it is.
//
// Moving LastSlot backward lets every slot after it run, including those
// already claimed, so the caller decides that no slot after slot ran by
// the right clock. The write commits, so no claim in the claim log is
// replayed over it after a crash.
func (s *Store) ResetPosition(name string, slot, firstSeen time.Time, reason string, now, next time.Time) (Run, error) {
	if slot.IsZero() || firstSeen.IsZero() {
		return Run{}, fmt.Errorf("reset position of job %s: slot or first-seen time is zero", name)
	}
	if firstSeen.After(slot) {
		return Run{}, fmt.Errorf("reset position of job %s: first-seen time %s is after the slot %s", name, formatTime(firstSeen), formatTime(slot))
	}
	run := Run{Job: name, Trigger: TriggerReset, Slot: slot, Start: now, Finish: now, Result: ResultSkipped, Error: reason}
	var stored Run
	err := s.update(func(tx *bolt.Tx) error {
		state, err := existingJob(tx, name)
		if err != nil {
			return err
		}
		if stored, err = s.insertRun(tx, run); err != nil {
			return err
		}
		state.LastSlot = slot
		state.FirstSeen = firstSeen
		state.NextRun = next
		return putJob(tx, state)
	})
	if err != nil {
		return Run{}, fmt.Errorf("reset position of job %s: %w", name, err)
	}
	return stored, nil
}
