package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/state"
)

// statusTimeout bounds the etcd reads of one status request.
const statusTimeout = 3 * time.Second

// errStandby is returned for requests that only the leader serves.
var errStandby = errors.New("this node is a standby")

func (n *clusterNode) standbyError() error {
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	leader, ok, err := n.elector.Leader(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("%w and cannot read the leader: %w", errStandby, err)
	case !ok:
		return fmt.Errorf("%w and no node leads right now: try again in a few seconds", errStandby)
	default:
		return fmt.Errorf("%w: send the request to the leader, node %s", errStandby, leader.Node)
	}
}

// RunJob runs a job by hand on the leader. A standby rejects it, because
// only the leader's runs are recorded.
func (n *clusterNode) RunJob(ctx context.Context, req jobs.Request) (state.Run, error) {
	work := n.current()
	if work == nil {
		return state.Run{}, n.standbyError()
	}
	if next, ok := work.sched.Next(req.Job); ok {
		req.Next = next
	}
	return work.runner.Run(ctx, req)
}

func (n *clusterNode) Send(ctx context.Context, listener, target, text string) (string, error) {
	work := n.current()
	if work == nil {
		return "", n.standbyError()
	}
	return work.set.send(ctx, listener, target, text)
}

// RecordRun is not served by a cluster node, whose runs live in etcd, not
// in the local store that a CLI without a daemon writes.
func (n *clusterNode) RecordRun(run state.Run) error {
	return fmt.Errorf("record run %s of %s: a cluster node keeps runs in etcd, not in the local store", run.ID, run.Job)
}

func (n *clusterNode) Runs(job string, limit int, id string) ([]state.Run, error) {
	if id == "" {
		return n.store.Runs(job, limit)
	}
	run, ok, err := n.store.Run(job, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("job %s has no run %s in its history (run IDs are shared by all jobs; agent-runner runs %s lists this job's)", job, id, job)
	}
	return []state.Run{run}, nil
}

// Status returns the jobs as etcd records them, the listeners of the
// current term, and this node's view of the cluster.
func (n *clusterNode) Status() (control.Status, error) {
	work := n.current()
	statuses, err := n.jobStatuses(work)
	if err != nil {
		return control.Status{}, err
	}
	n.mu.Lock()
	info := n.info
	n.mu.Unlock()
	status := control.Status{Daemon: &info, Jobs: statuses, Listeners: nil, Cluster: n.clusterStatus(work)}
	if work != nil {
		status.Listeners = work.set.health()
	}
	return status, nil
}

func (n *clusterNode) jobStatuses(work *termWork) ([]jobs.JobStatus, error) {
	list, err := n.store.Jobs()
	if err != nil {
		return nil, fmt.Errorf("read job states: %w", err)
	}
	stored := make(map[string]state.JobState, len(list))
	for _, st := range list {
		stored[st.Name] = st
	}
	running := map[string]bool{}
	if work != nil {
		for _, name := range work.runner.Running() {
			running[name] = true
		}
	}
	now := n.opts.Clock.Now()
	cfg := n.config()
	var nextRuns map[string]time.Time
	if work != nil {
		nextRuns = work.sched.NextRuns()
	}
	out := make([]jobs.JobStatus, 0, len(cfg.Jobs))
	for _, job := range cfg.Jobs {
		st := stored[job.Name]
		next := st.NextRun
		if work != nil {
			next = nextRuns[job.Name]
		}
		// The stored flag is the leader's, which runs on another node
		// when this one is a standby.
		status := jobs.StatusOf(job, st, running[job.Name] || (work == nil && st.Running), next, now)
		if status.PositionAhead > 0 {
			status.StaleReason = jobs.ClusterAheadReason(st, status.PositionAhead)
		}
		out = append(out, status)
	}
	return out, nil
}

func (n *clusterNode) clusterStatus(work *termWork) *control.ClusterStatus {
	status := &control.ClusterStatus{Node: n.elector.Node(), Role: "standby", LeaseTTL: n.config().Cluster.LeaseTTL}
	if work != nil {
		status.Role = "leader"
		status.ListenersWaitUntil, _ = work.gate.waiting()
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	leader, ok, err := n.elector.Leader(ctx)
	if err != nil {
		status.Error = err.Error()
		return status
	}
	if ok {
		status.Leader, status.LeaderSince, status.Term = leader.Node, leader.Since, leader.Term
		if left, granted, err := n.elector.LeaseLeft(ctx, leader.Lease); err == nil {
			status.LeaseTTL, status.LeaseAge = granted, granted-left
		}
	}
	members, err := n.elector.Members(ctx)
	if err != nil {
		status.Error = err.Error()
	}
	for _, m := range members {
		status.Members = append(status.Members, control.ClusterMember{Node: m.Node, Started: m.Started})
	}
	return status
}
