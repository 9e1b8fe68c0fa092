package jobs

import (
	"fmt"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/schedule"
	"github.com/agent-runner/agent-runner/state"
)

// Job states shown by list and status.
const (
	StateDisabled  = "disabled"
	StateScheduled = "scheduled"
	StateRunning   = "running"
	// StateFailed marks a job that cannot run on this machine as
	// configured, such as one whose command is not on PATH.
	StateFailed = "failed"
	// StateDone and StateMissed describe a one-off at job whose instant
	// passed: it ran, or its slot was skipped.
	StateDone   = "done"
	StateMissed = "missed"
)

// JobStatus is what list and status show of one job.
type JobStatus struct {
	state.JobState
	Schedule string `json:"schedule"`
	State    string `json:"state"`
	// Problem says why a job is failed; empty otherwise.
	Problem string `json:"problem,omitempty"`
	// Stale is true when the job has not done its work in time: see
	// StaleReason.
	Stale bool `json:"stale"`
	// StaleReason is the reason the job is stale, such as "no successful run
	// for 3h (max_age 2h)"; empty otherwise.
	StaleReason string `json:"stale_reason,omitempty"`
	// PositionAhead is how far the job's stored position lies ahead of
	// the clock when that holds back its next slot (see PositionAhead),
	// and zero otherwise. Such a job is also stale, with the reset
	// command in StaleReason.
	PositionAhead time.Duration `json:"position_ahead,omitempty"`
}

// Describe returns the schedule of a job as written in the config.
func Describe(job *config.Job) string {
	switch {
	case job.Every > 0:
		return "every " + shortDuration(job.Every)
	case !job.At.IsZero():
		return "at " + job.At.UTC().Format(time.RFC3339)
	case len(job.Calendar) > 0:
		return strings.Join(job.Calendar, "; ")
	}
	if job.Location != nil && job.Location != time.UTC {
		return fmt.Sprintf("%s (%s)", job.Cron, job.Location)
	}
	return job.Cron
}

// shortDuration drops the zero units that time.Duration.String prints,
// so 5m0s reads 5m.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// StatusOf combines a job's config, its stored state and whether it runs
// now. next is the job's next slot, zero when unknown, and now is the
// time staleness is judged at.
func StatusOf(job *config.Job, st state.JobState, running bool, next, now time.Time) JobStatus {
	status := JobStatus{JobState: st, Schedule: Describe(job)}
	status.Name = job.Name
	status.NextRun = next
	switch {
	case running || st.Running:
		status.State = StateRunning
	case !job.Enabled:
		status.State = StateDisabled
		status.NextRun = time.Time{}
	case job.Problem != nil:
		status.State = StateFailed
		status.Problem = job.Problem.Error()
	case !job.At.IsZero() && !st.LastSlot.Before(job.At):
		status.State = StateDone
		if st.LastResult == state.ResultSkipped {
			status.State = StateMissed
		}
		status.NextRun = time.Time{}
	default:
		status.State = StateScheduled
	}
	status.StaleReason = staleReason(job, st, now)
	if job.Enabled {
		if ahead := PositionAhead(job, st, now); ahead > 0 {
			status.PositionAhead = ahead
			status.StaleReason = aheadReason(job.Name, st, ahead)
		}
	}
	status.Stale = status.StaleReason != ""
	return status
}

// Status returns the status of every configured job while the daemon runs.
func (s *Scheduler) Status(cfg *config.Config) ([]JobStatus, error) {
	stored, err := storedStates(s.store)
	if err != nil {
		return nil, err
	}
	running := make(map[string]bool)
	for _, name := range s.runner.Running() {
		running[name] = true
	}
	now := s.clock.Now()
	nextRuns := s.NextRuns()
	out := make([]JobStatus, 0, len(cfg.Jobs))
	for _, job := range cfg.Jobs {
		out = append(out, StatusOf(job, stored[job.Name], running[job.Name], nextRuns[job.Name], now))
	}
	return out, nil
}

// OfflineStatus returns the status of every configured job from the store
// alone, for a CLI when no daemon runs. A job whose passed slots a start
// would catch up, under catch_up "once" or "all", shows its next run as
// now.
func OfflineStatus(cfg *config.Config, store *state.Store, now time.Time) ([]JobStatus, error) {
	stored, err := storedStates(store)
	if err != nil {
		return nil, err
	}
	out := make([]JobStatus, 0, len(cfg.Jobs))
	for _, job := range cfg.Jobs {
		st, seen := stored[job.Name]
		if !seen {
			st.FirstSeen = now
		}
		var next time.Time
		if sched, err := Schedule(job, st); err == nil {
			next = sched.Next(position(st))
			if !next.IsZero() && next.Before(now) && catchesUp(job, sched, position(st), now) {
				// A start runs the catch-up at once, under "all" as
				// under "once". Under "skip", or when catch_up_deadline
				// drops every missed slot, the next slot comes first.
				next = now
			} else if next.Before(now) {
				next = sched.Next(now)
			}
		}
		// The stored flag outlives a crash, while the run lock dies with
		// the process that holds it.
		st.Running = false
		out = append(out, StatusOf(job, st, LockHeld(cfg.Runner.StateDir, job.Name), next, now))
	}
	return out, nil
}

// catchesUp reports whether a start at now would run a catch-up of the
// slots of job that passed since from, as PlanCatchUp would plan it.
// It looks only at the newest missed slot, since every policy but "skip"
// runs that one unless catch_up_deadline drops it, so that list does not
// walk each of the slots a long outage missed, up to maxCountedSlots per
// job.
func catchesUp(job *config.Job, sched schedule.Schedule, from, now time.Time) bool {
	if job.CatchUp == config.CatchUpSkip {
		return false
	}
	newest, ok := schedule.Latest(sched, from, now)
	if !ok {
		return false
	}
	return job.CatchUpDeadline <= 0 || !newest.Before(now.Add(-job.CatchUpDeadline))
}

// storedStates reads every job's state; a nil store, one not created
// yet, has none.
func storedStates(store *state.Store) (map[string]state.JobState, error) {
	if store == nil {
		return nil, nil
	}
	list, err := store.Jobs()
	if err != nil {
		return nil, fmt.Errorf("read job states: %w", err)
	}
	stored := make(map[string]state.JobState, len(list))
	for _, st := range list {
		stored[st.Name] = st
	}
	return stored, nil
}
