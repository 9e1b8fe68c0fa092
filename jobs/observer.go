package jobs

import (
	"time"

	"github.com/agent-runner/agent-runner/state"
)

// Observer is told about runs as they happen, for metrics. Its methods
// must return quickly and never block a run.
type Observer interface {
	// RunStarted is called once a run is claimed. lateness is how long
	// after its slot the scheduler's dispatcher woke for it; zero for manual
	// runs.
	RunStarted(run state.Run, lateness time.Duration)
	// RunFinished is called with the final record of every run,
	// including skipped ones.
	RunFinished(run state.Run)
}

// SetObserver sets the observer of every later run.
func (r *Runner) SetObserver(o Observer) { r.observer = o }
