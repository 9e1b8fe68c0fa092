// Package state is the embedded store: per-job schedule position and
// health, and a bounded history of runs. It lives in one bbolt file with
// one writer at a time.
package state

import (
	"time"
)

// Results of a run.
const (
	ResultRunning     = "running"
	ResultOK          = "ok"
	ResultFailed      = "failed"
	ResultTimeout     = "timeout"
	ResultPanic       = "panic"
	ResultSkipped     = "skipped"
	ResultInterrupted = "interrupted"
)

// Triggers of a run.
const (
	TriggerSchedule = "schedule"
	TriggerCatchUp  = "catch-up"
	TriggerManual   = "manual"
	// TriggerRetry runs again a scheduled run that failed.
	TriggerRetry = "retry"
	// TriggerChain runs a job named in another job's on_success or
	// on_failure.
	TriggerChain = "chain"
)

// JobState is the persisted position and health of one job.
type JobState struct {
	Name string `json:"name"`
	// FirstSeen anchors an every-job's slots and bounds catch-up of a new
	// job, so a job added today never catches up slots from before.
	FirstSeen time.Time `json:"first_seen"`
	// LastSlot is the last schedule slot that was claimed for a run or
	// deliberately skipped; zero when none was.
	LastSlot time.Time `json:"last_slot,omitzero"`

	Running             bool          `json:"running"`
	LastStart           time.Time     `json:"last_start,omitzero"`
	LastFinish          time.Time     `json:"last_finish,omitzero"`
	LastResult          string        `json:"last_result,omitempty"`
	LastExitCode        int           `json:"last_exit_code"`
	LastDuration        time.Duration `json:"last_duration"`
	LastError           string        `json:"last_error,omitempty"`
	LastSuccess         time.Time     `json:"last_success,omitzero"`
	ConsecutiveFailures int           `json:"consecutive_failures"`
	NextRun             time.Time     `json:"next_run,omitzero"`
}

// Run is one run record.
type Run struct {
	// ID is a decimal number from a store-wide sequence, so it is unique
	// across jobs. Compared as numbers, IDs sort by claim time, which is
	// start order.
	ID      string `json:"id"`
	Job     string `json:"job"`
	Trigger string `json:"trigger"`
	// Slot is the schedule slot the run serves; zero for manual runs.
	Slot     time.Time     `json:"slot,omitzero"`
	Start    time.Time     `json:"start"`
	Finish   time.Time     `json:"finish,omitzero"`
	Result   string        `json:"result"`
	ExitCode int           `json:"exit_code"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	// Output is the tail of the run's combined output.
	Output string `json:"output,omitempty"`
}
