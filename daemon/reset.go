package daemon

import (
	"errors"
	"fmt"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/jobs"
)

// ResetJob moves the stored position of a job back to the clock and
// re-plans it in the scheduler, or with ahead that of every enabled job
// whose position is ahead. With ahead it returns only the jobs it reset.
func (h *handler) ResetJob(name string, force, ahead bool) ([]jobs.ResetResult, error) {
	cfg := h.config()
	if !ahead {
		job := cfg.Job(name)
		if job == nil {
			return nil, fmt.Errorf("reset %q: %w in the daemon's config", name, jobs.ErrUnknownJob)
		}
		result, err := h.sched.Reset(job, force)
		if err != nil {
			return nil, err
		}
		return []jobs.ResetResult{result}, nil
	}
	return jobs.ResetAhead(cfg.Jobs, func(job *config.Job) (jobs.ResetResult, error) {
		return h.sched.Reset(job, false)
	}), nil
}

// ResetJob is not served by a cluster node.
//
// NOTE: the leader's scheduler plans from a copy of the positions in
// etcd, and its claims are checked against etcd, so a reset would have to
// move both under the election fence. Until it does, a cluster's position
// that is ahead stays until the clock passes it.
func (n *clusterNode) ResetJob(name string, force, ahead bool) ([]jobs.ResetResult, error) {
	return nil, errors.New("reset is not supported with [cluster]: the positions live in etcd, and the job runs again once the clock passes its position")
}
