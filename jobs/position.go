package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// MaxPositionAhead is how far a job's stored position may lie ahead of the
// clock before it counts as ahead. A clock that ran ahead, here or on the
// machine a state folder came from, leaves the position in the future,
// and the job then runs no slot until the clock passes it. A position
// less than this far ahead heals by itself within the hour, and moving it
// back could run again a slot that already ran by a clock that was right,
// as after an NTP step back.
const MaxPositionAhead = time.Hour

// PositionAhead returns how far the job's stored position lies ahead of
// now when it is more than MaxPositionAhead ahead and holds back the job's
// next slot after now, and zero otherwise.
func PositionAhead(job *config.Job, st state.JobState, now time.Time) time.Duration {
	pos := position(st)
	ahead := pos.Sub(now)
	if ahead <= MaxPositionAhead {
		return 0
	}
	sched, err := Schedule(job, st)
	if err != nil {
		return 0
	}
	next := sched.Next(now)
	if next.IsZero() || next.After(pos) {
		return 0
	}
	if !job.At.IsZero() && !next.After(st.LastSlot) {
		// The one slot of an at job was claimed, so it ran or was
		// skipped, and a reset would run it a second time.
		return 0
	}
	return ahead
}

// aheadReason describes a position that PositionAhead reports, with the
// command that fixes it.
func aheadReason(name string, st state.JobState, ahead time.Duration) string {
	return fmt.Sprintf("stored position %s is %s ahead of the clock, so no slot runs until then: run agent-runner reset %s",
		position(st).UTC().Format(time.RFC3339), aheadText(ahead), name)
}

// ClusterAheadReason is the reason of a position that PositionAhead
// reports on a cluster node, where reset is not supported.
func ClusterAheadReason(st state.JobState, ahead time.Duration) string {
	return fmt.Sprintf("stored position %s is %s ahead of the clock, so no slot runs until then; reset is not supported with [cluster]",
		position(st).UTC().Format(time.RFC3339), aheadText(ahead))
}

// aheadText rounds how far a position is ahead to whole days from two
// days on, since a clock that ran ahead is often off by months or years.
func aheadText(ahead time.Duration) string {
	if day := 24 * time.Hour; ahead >= 2*day {
		return fmt.Sprintf("%dd", ahead/day)
	}
	return roundAge(ahead)
}

// ResetResult is the outcome of a reset of one job's position.
type ResetResult struct {
	Job string `json:"job"`
	// From is the stored position before the reset.
	From time.Time `json:"from"`
	// To is the position after the reset, the clock at the reset; zero
	// when nothing was reset.
	To time.Time `json:"to,omitzero"`
	// Next is the job's next slot after To; zero when it has none or
	// nothing was reset.
	Next time.Time `json:"next,omitzero"`
	// RunID is the ID of the "skipped" record that the reset stored.
	RunID string `json:"run_id,omitempty"`
	// Ahead is how far From lay ahead of the clock; zero or negative when
	// it was not ahead.
	Ahead time.Duration `json:"ahead"`
	// Unchanged is the reason nothing was reset; empty after a reset.
	Unchanged string `json:"unchanged,omitempty"`
	// Error is the reason the reset of this job failed, set when a reset
	// of every job that is ahead went on past the failure.
	Error string `json:"error,omitempty"`
}

// ResetAhead applies reset to every enabled job of list, as reset --ahead
// does, and returns the jobs it reset and those whose reset failed.
// Disabled jobs are skipped, because status and doctor report only
// enabled ones.
func ResetAhead(list []*config.Job, reset func(*config.Job) (ResetResult, error)) []ResetResult {
	var results []ResetResult
	for _, job := range list {
		if !job.Enabled {
			continue
		}
		result, err := reset(job)
		switch {
		case err != nil:
			results = append(results, ResetResult{Job: job.Name, Error: err.Error()})
		case !result.To.IsZero():
			results = append(results, result)
		}
	}
	return results
}

// ErrCatchUpQueued means a job has catch-up runs waiting, which a reset
// of its position would contradict.
var ErrCatchUpQueued = errors.New("catch-up runs of the job are queued")

// ResetPosition moves a job's stored position back to now when it lies
// more than MaxPositionAhead ahead of it and holds back the next slot, or
// with force whatever it is. The next slot after now then runs as
// scheduled, and no slot up to now is caught up. It returns the new state
// too, which is the stored one when nothing was reset.
//
// The position becomes now itself rather than the latest slot at or
// before now. Both give the same next slot, but now needs no backward
// search, and it exists for every schedule, also for one with no slot
// before now, such as an at job still to come.
func ResetPosition(store *state.Store, job *config.Job, now time.Time, force bool) (ResetResult, state.JobState, error) {
	st, found, err := store.Job(job.Name)
	if err != nil {
		return ResetResult{}, state.JobState{}, err
	}

	result := ResetResult{Job: job.Name}
	if !found {
		result.Unchanged = "it has no stored position yet; it counts its slots from its first start"
		return result, st, nil
	}

	result.From = position(st)
	result.Ahead = result.From.Sub(now)
	if result.Ahead > 0 && result.Ahead <= earlyTolerance {
		// A timer may claim a slot up to earlyTolerance before it, so a
		// position this close to the clock can be a slot that ran, and
		// moving it back even by force would run that slot again.
		result.Unchanged = fmt.Sprintf("its position %s is within %s of the clock, so it can be a slot that started early, which a reset would run again",
			result.From.UTC().Format(time.RFC3339), earlyTolerance)
		return result, st, nil
	}
	if !force && PositionAhead(job, st, now) == 0 {
		result.Unchanged = fmt.Sprintf("%s; agent-runner reset --force %s moves it to the clock anyway",
			notAheadReason(result.From, now), job.Name)
		return result, st, nil
	}

	reset := resetState(job, st, now)
	sched, err := Schedule(job, reset)
	if err != nil {
		return ResetResult{}, state.JobState{}, fmt.Errorf("schedule job %s: %w", job.Name, err)
	}
	next := sched.Next(now)

	reason := fmt.Sprintf("position moved from %s to the clock by agent-runner reset", result.From.UTC().Format(time.RFC3339))
	run, err := store.ResetPosition(job.Name, now, reset.FirstSeen, reason, now, next)
	if err != nil {
		return ResetResult{}, state.JobState{}, err
	}
	reset.LastSlot, reset.NextRun = now.UTC(), next
	result.To, result.Next, result.RunID = now, next, run.ID
	return result, reset, nil
}

// resetState returns st with FirstSeen moved to at most now. An every
// job's slots count from FirstSeen, so it moves back by whole intervals,
// which keeps the slots on the grid they had.
func resetState(job *config.Job, st state.JobState, now time.Time) state.JobState {
	if !st.FirstSeen.After(now) {
		return st
	}
	if job.Every <= 0 {
		st.FirstSeen = now
		return st
	}
	// Sub saturates for a first sighting more than about 292 years
	// ahead, so the gap may take more than one step.
	for st.FirstSeen.After(now) {
		intervals := max(st.FirstSeen.Sub(now)/job.Every, 1)
		st.FirstSeen = st.FirstSeen.Add(-intervals * job.Every)
	}
	return st
}

func notAheadReason(pos, now time.Time) string {
	at := pos.UTC().Format(time.RFC3339)
	switch ahead := pos.Sub(now); {
	case ahead <= 0:
		return fmt.Sprintf("its position %s is not ahead of the clock", at)
	case ahead <= MaxPositionAhead:
		return fmt.Sprintf("its position %s is %s ahead of the clock, within the %s that heals by itself", at, roundAge(ahead), shortDuration(MaxPositionAhead))
	default:
		return fmt.Sprintf("its position %s is %s ahead of the clock but holds back no slot", at, aheadText(ahead))
	}
}

// Reset moves the stored position of job back to the clock as
// ResetPosition does, and re-plans the job at once, so that its next slot
// after now runs as scheduled. A disabled job, which the scheduler does
// not hold, has only its stored position moved. It rejects a job whose
// catch-up runs are queued, with ErrCatchUpQueued.
//
// A job that the scheduler holds is reset by the schedule of its entry.
// A reload applies its config here before the daemon's config changes,
// so the caller's job may still have the old schedule.
func (s *Scheduler) Reset(job *config.Job, force bool) (ResetResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backlogs[job.Name] || s.delayed.has(job.Name) {
		return ResetResult{}, fmt.Errorf("reset job %s: %w; try again when they have run", job.Name, ErrCatchUpQueued)
	}
	e, ok := s.entries[job.Name]
	if ok {
		job = e.job
	}

	now := s.clock.Now()
	result, st, err := ResetPosition(s.store, job, now, force)
	if err != nil || result.To.IsZero() {
		return result, err
	}
	s.log.Info("job position reset to the clock", "job", job.Name, "from", result.From, "to", result.To,
		"ahead", result.Ahead.Round(time.Second), "next", result.Next, "run", result.RunID)
	if !ok {
		// A disabled job has no entry, so only its stored position moved.
		return result, nil
	}
	sched, err := Schedule(job, st)
	if err != nil {
		return result, fmt.Errorf("schedule job %s: %w", job.Name, err)
	}
	e.sched, e.next, e.missed = sched, sched.Next(position(st)), false
	s.slots.schedule(e)

	select {
	case s.wake <- struct{}{}:
	default:
	}
	return result, nil
}
