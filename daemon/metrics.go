package daemon

import (
	"time"

	"github.com/agent-runner/agent-runner/health"
	"github.com/agent-runner/agent-runner/state"
)

// timedRecorder times every store write of the run boundary for the
// agent_runner_store_write_seconds metric.
type timedRecorder struct {
	state.Recorder
	metrics *health.Metrics
}

func (t timedRecorder) observe(start time.Time) { t.metrics.ObserveStoreWrite(time.Since(start)) }

func (t timedRecorder) Claim(run state.Run, next time.Time) (state.Run, error) {
	defer t.observe(time.Now())
	return t.Recorder.Claim(run, next)
}

func (t timedRecorder) Skip(name string, slot time.Time, trigger, reason string, now, next time.Time) error {
	defer t.observe(time.Now())
	return t.Recorder.Skip(name, slot, trigger, reason, now, next)
}

func (t timedRecorder) Finish(run state.Run) error {
	defer t.observe(time.Now())
	return t.Recorder.Finish(run)
}

func (t timedRecorder) RecordSkipped(run state.Run) (state.Run, error) {
	defer t.observe(time.Now())
	return t.Recorder.RecordSkipped(run)
}
