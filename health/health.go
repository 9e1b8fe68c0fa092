// Package health is the daemon's HTTP health surface: /healthz for load
// balancers and service monitors, /metrics for Prometheus, and a status
// page at / for people. Everything it shows comes from the same
// control.Status that the list command prints, so the three views agree.
package health

import (
	"fmt"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

// Source returns the current status. The daemon passes its control
// handler's Status.
type Source func() (control.Status, error)

// Values of Report.Status.
const (
	StatusOK        = "ok"
	StatusUnhealthy = "unhealthy"
)

// Values of Problem.Kind.
const (
	KindJob      = "job"
	KindListener = "listener"
	// KindDaemon is a problem of the daemon itself, such as a lost state
	// folder.
	KindDaemon = "daemon"
)

// maxReasonRunes caps a problem's reason, because a run's error can carry
// a whole panic stack.
const maxReasonRunes = 200

// Report is the verdict of Evaluate, served as the /healthz body.
type Report struct {
	Status  string `json:"status"`
	Summary string `json:"summary"`
	// Problems is never nil, so the JSON shows an empty list rather than
	// null when all is well.
	Problems []Problem `json:"problems"`
	// Role is "leader" or "standby" on a node with [cluster], and Leader
	// the node that leads.
	Role   string `json:"role,omitempty"`
	Leader string `json:"leader,omitempty"`
	// ListenersWaitUntil is when a new leader starts its listeners, while
	// it waits out the handover from a leader that did not resign.
	ListenersWaitUntil time.Time `json:"listeners_wait_until,omitzero"`
}

// Healthy reports whether the report found no problem.
func (r Report) Healthy() bool { return r.Status == StatusOK }

// Problem is one reason a job or listener makes the daemon unhealthy.
type Problem struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// A jobRule returns why a job is unhealthy at now, or "" when the job
// passes the rule.
type jobRule func(job jobs.JobStatus, now time.Time) string

// A listenerRule returns why a listener is unhealthy at now, or "" when
// the listener passes the rule.
type listenerRule func(listener listeners.Health, now time.Time) string

// jobRules and listenerRules are checked in order, and every rule that
// fails adds its own Problem. Rules that need the clock, such as
// staleness, use the now that Evaluate passes.
var (
	jobRules      = []jobRule{misconfiguredJob, failingJob, staleJob}
	listenerRules = []listenerRule{downListener, staleListener}
)

// Evaluate decides whether status is healthy at now. Reasons are built
// from states, results, counts and the first line of errors, never from
// a job's output or environment.
func Evaluate(status control.Status, now time.Time) Report {
	problems := []Problem{}
	badJobs := make(map[string]bool)
	for _, job := range status.Jobs {
		for _, rule := range jobRules {
			if reason := rule(job, now); reason != "" {
				problems = append(problems, Problem{Kind: KindJob, Name: job.Name, State: job.State, Reason: reason})
				badJobs[job.Name] = true
			}
		}
	}
	badListeners := make(map[string]bool)
	for _, listener := range status.Listeners {
		for _, rule := range listenerRules {
			if reason := rule(listener, now); reason != "" {
				problems = append(problems, Problem{Kind: KindListener, Name: listener.Name, State: listener.State, Reason: reason})
				badListeners[listener.Name] = true
			}
		}
	}
	report := Report{Status: StatusOK, Problems: problems}
	report.Summary = summarize(len(badJobs), len(status.Jobs), len(badListeners), len(status.Listeners))
	if d := status.Daemon; d != nil && d.StateError != "" {
		report.Problems = append(report.Problems, Problem{Kind: KindDaemon, Name: "state_dir", State: "failed", Reason: firstLine(d.StateError)})
		report.Summary = "state folder failing; " + report.Summary
	}
	addCluster(&report, status.Cluster)
	if len(report.Problems) > 0 {
		report.Status = StatusUnhealthy
	}
	return report
}

// misconfiguredJob flags a job that cannot run as configured, such as one
// whose command is not on PATH.
func misconfiguredJob(job jobs.JobStatus, _ time.Time) string {
	if job.State != jobs.StateFailed {
		return ""
	}
	if job.Problem == "" {
		return "job cannot run as configured"
	}
	return "job cannot run as configured: " + firstLine(job.Problem)
}

// failingJob flags a job whose latest runs failed, timed out or panicked.
// A success resets ConsecutiveFailures, so a recovered job passes, and a
// skipped or interrupted run leaves the verdict where it was.
func failingJob(job jobs.JobStatus, _ time.Time) string {
	if job.State == jobs.StateDisabled || job.ConsecutiveFailures == 0 {
		return ""
	}
	switch job.LastResult {
	case state.ResultFailed, state.ResultTimeout, state.ResultPanic:
	default:
		return ""
	}
	reason := fmt.Sprintf("%s, %s in a row", describeResult(job.JobState), plural(job.ConsecutiveFailures, "failure"))
	if job.LastError != "" {
		reason += ": " + firstLine(job.LastError)
	}
	return reason
}

// describeResult describes a job's failed last run, as in "last run
// failed (exit 2)" or "last run timed out".
func describeResult(st state.JobState) string {
	switch st.LastResult {
	case state.ResultTimeout:
		return "last run timed out"
	case state.ResultPanic:
		return "last run panicked"
	}
	if st.LastExitCode > 0 {
		return fmt.Sprintf("last run failed (exit %d)", st.LastExitCode)
	}
	return "last run failed"
}

// staleJob flags a job that has not done its work in time: no success
// within max_age, or a heartbeat file that is missing or too old. The
// jobs package judges staleness when it builds the status.
func staleJob(job jobs.JobStatus, _ time.Time) string {
	if !job.Stale {
		return ""
	}
	return firstLine(job.StaleReason)
}

// staleListener flags a running listener with no event within its
// stale_after.
func staleListener(listener listeners.Health, _ time.Time) string {
	if !listener.Stale {
		return ""
	}
	return firstLine(listener.StaleReason)
}

// downListener flags a listener that is waiting to restart after a
// failure or connecting again after one, or whose credentials were
// rejected.
func downListener(listener listeners.Health, _ time.Time) string {
	var reason string
	switch {
	case listener.State == listeners.StateBackoff:
		reason = "listener is waiting to restart after a failure"
	case listener.State == listeners.StateStarting && listener.Retrying:
		reason = "listener is connecting again after a failure"
	case listener.State == listeners.StateFailed:
		reason = "listener failed"
	default:
		return ""
	}
	if listener.LastError != "" {
		reason += ": " + firstLine(listener.LastError)
	}
	return reason
}

// summarize writes one line such as "1 of 4 jobs and 0 of 2 listeners
// unhealthy".
func summarize(badJobs, allJobs, badListeners, allListeners int) string {
	if badJobs == 0 && badListeners == 0 {
		return fmt.Sprintf("%s and %s healthy", plural(allJobs, "job"), plural(allListeners, "listener"))
	}
	return fmt.Sprintf("%d of %s and %d of %s unhealthy",
		badJobs, plural(allJobs, "job"), badListeners, plural(allListeners, "listener"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// firstLine returns the first line of text, cut to maxReasonRunes.
func firstLine(text string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
	line = strings.TrimSpace(line)
	if runes := []rune(line); len(runes) > maxReasonRunes {
		return string(runes[:maxReasonRunes]) + "…"
	}
	return line
}
