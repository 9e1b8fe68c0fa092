package health

import (
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

var testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func job(name, st string, edit func(*jobs.JobStatus)) jobs.JobStatus {
	status := jobs.JobStatus{Schedule: "*/5 * * * *", State: st}
	status.Name = name
	if edit != nil {
		edit(&status)
	}
	return status
}

func listener(name, st string) listeners.Health {
	return listeners.Health{Name: name, Kind: "twitch", State: st, Since: testNow.Add(-time.Hour)}
}

func failing(result string, failures int) func(*jobs.JobStatus) {
	return func(s *jobs.JobStatus) {
		s.LastResult = result
		s.LastExitCode = 2
		s.LastError = "exit status 2\nsecond line"
		s.ConsecutiveFailures = failures
	}
}

func TestEvaluate(t *testing.T) {
	recovered := func(s *jobs.JobStatus) {
		s.LastResult = state.ResultOK
		s.LastSuccess = testNow.Add(-time.Minute)
		s.ConsecutiveFailures = 0
	}
	tests := []struct {
		name     string
		status   control.Status
		problems []Problem
	}{
		{
			name: "healthy",
			status: control.Status{
				Jobs:      []jobs.JobStatus{job("a", jobs.StateScheduled, recovered), job("b", jobs.StateRunning, nil)},
				Listeners: []listeners.Health{listener("chat", listeners.StateRunning), listener("feed", listeners.StateStarting)},
			},
		},
		{
			name:   "empty",
			status: control.Status{},
		},
		{
			name:   "failing job",
			status: control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateScheduled, failing(state.ResultFailed, 3))}},
			problems: []Problem{{Kind: KindJob, Name: "a", State: jobs.StateScheduled,
				Reason: "last run failed (exit 2), 3 failures in a row: exit status 2"}},
		},
		{
			name:     "timed out job",
			status:   control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateScheduled, failing(state.ResultTimeout, 1))}},
			problems: []Problem{{Kind: KindJob, Name: "a", State: jobs.StateScheduled, Reason: "last run timed out, 1 failure in a row: exit status 2"}},
		},
		{
			name:     "panicked job while running again",
			status:   control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateRunning, failing(state.ResultPanic, 1))}},
			problems: []Problem{{Kind: KindJob, Name: "a", State: jobs.StateRunning, Reason: "last run panicked, 1 failure in a row: exit status 2"}},
		},
		{
			name:   "recovered job",
			status: control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateScheduled, recovered)}},
		},
		{
			name:   "interrupted after failures",
			status: control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateScheduled, failing(state.ResultInterrupted, 2))}},
		},
		{
			name: "misconfigured job",
			status: control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateFailed, func(s *jobs.JobStatus) {
				s.Problem = `command "nope" not found on PATH`
			})}},
			problems: []Problem{{Kind: KindJob, Name: "a", State: jobs.StateFailed, Reason: `job cannot run as configured: command "nope" not found on PATH`}},
		},
		{
			name:   "disabled job with old failures",
			status: control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateDisabled, failing(state.ResultFailed, 4))}},
		},
		{
			name:   "disabled and stopped listeners",
			status: control.Status{Listeners: []listeners.Health{listener("bot", listeners.StateDisabled), listener("web", listeners.StateStopped)}},
		},
		{
			name: "listener backoff",
			status: control.Status{Listeners: []listeners.Health{func() listeners.Health {
				h := listener("chat", listeners.StateBackoff)
				h.LastError = "dial tcp: connection refused"
				return h
			}()}},
			problems: []Problem{{Kind: KindListener, Name: "chat", State: listeners.StateBackoff,
				Reason: "listener is waiting to restart after a failure: dial tcp: connection refused"}},
		},
		{
			name: "listener connecting again after a failure",
			status: control.Status{Listeners: []listeners.Health{func() listeners.Health {
				h := listener("chat", listeners.StateStarting)
				h.Retrying = true
				h.LastError = "no welcome within 30s"
				return h
			}()}},
			problems: []Problem{{Kind: KindListener, Name: "chat", State: listeners.StateStarting,
				Reason: "listener is connecting again after a failure: no welcome within 30s"}},
		},
		{
			name:   "listener starting",
			status: control.Status{Listeners: []listeners.Health{listener("chat", listeners.StateStarting)}},
		},
		{
			name:     "listener failed",
			status:   control.Status{Listeners: []listeners.Health{listener("bot", listeners.StateFailed)}},
			problems: []Problem{{Kind: KindListener, Name: "bot", State: listeners.StateFailed, Reason: "listener failed"}},
		},
		{
			name: "stale job",
			status: control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateScheduled, func(s *jobs.JobStatus) {
				recovered(s)
				s.Stale = true
				s.StaleReason = "no successful run for 3h (max_age 2h)"
			})}},
			problems: []Problem{{Kind: KindJob, Name: "a", State: jobs.StateScheduled, Reason: "no successful run for 3h (max_age 2h)"}},
		},
		{
			name: "stale and failing job",
			status: control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateScheduled, func(s *jobs.JobStatus) {
				failing(state.ResultFailed, 1)(s)
				s.Stale = true
				s.StaleReason = "heartbeat file /var/digest.heartbeat is missing"
			})}},
			problems: []Problem{
				{Kind: KindJob, Name: "a", State: jobs.StateScheduled, Reason: "last run failed (exit 2), 1 failure in a row: exit status 2"},
				{Kind: KindJob, Name: "a", State: jobs.StateScheduled, Reason: "heartbeat file /var/digest.heartbeat is missing"},
			},
		},
		{
			name: "stale listener",
			status: control.Status{Listeners: []listeners.Health{func() listeners.Health {
				h := listener("chat", listeners.StateRunning)
				h.Stale = true
				h.StaleReason = "no event for 20m0s (stale_after 15m0s)"
				return h
			}()}},
			problems: []Problem{{Kind: KindListener, Name: "chat", State: listeners.StateRunning, Reason: "no event for 20m0s (stale_after 15m0s)"}},
		},
		{
			name: "job and listener",
			status: control.Status{
				Jobs:      []jobs.JobStatus{job("ok", jobs.StateScheduled, nil), job("bad", jobs.StateScheduled, failing(state.ResultFailed, 1))},
				Listeners: []listeners.Health{listener("bot", listeners.StateFailed)},
			},
			problems: []Problem{
				{Kind: KindJob, Name: "bad", State: jobs.StateScheduled, Reason: "last run failed (exit 2), 1 failure in a row: exit status 2"},
				{Kind: KindListener, Name: "bot", State: listeners.StateFailed, Reason: "listener failed"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			report := Evaluate(tt.status, testNow)
			wantStatus := StatusOK
			if len(tt.problems) > 0 {
				wantStatus = StatusUnhealthy
			}
			if report.Status != wantStatus {
				t.Errorf("Status = %q, want %q", report.Status, wantStatus)
			}
			if report.Problems == nil {
				t.Error("Problems is nil, want an empty list")
			}
			if len(report.Problems) != len(tt.problems) {
				t.Fatalf("Problems = %+v, want %+v", report.Problems, tt.problems)
			}
			for i, want := range tt.problems {
				if report.Problems[i] != want {
					t.Errorf("Problems[%d] = %+v, want %+v", i, report.Problems[i], want)
				}
			}
			if report.Summary == "" {
				t.Error("Summary is empty")
			}
		})
	}
}

func TestEvaluateSummary(t *testing.T) {
	status := control.Status{
		Jobs:      []jobs.JobStatus{job("a", jobs.StateScheduled, nil), job("b", jobs.StateFailed, nil)},
		Listeners: []listeners.Health{listener("chat", listeners.StateRunning)},
	}
	if got, want := Evaluate(status, testNow).Summary, "1 of 2 jobs and 0 of 1 listener unhealthy"; got != want {
		t.Errorf("unhealthy Summary = %q, want %q", got, want)
	}
	status.Jobs = status.Jobs[:1]
	if got, want := Evaluate(status, testNow).Summary, "1 job and 1 listener healthy"; got != want {
		t.Errorf("healthy Summary = %q, want %q", got, want)
	}
}

func TestEvaluateReasonIsBounded(t *testing.T) {
	long := strings.Repeat("x", 1000)
	status := control.Status{Jobs: []jobs.JobStatus{job("a", jobs.StateScheduled, func(s *jobs.JobStatus) {
		s.LastResult = state.ResultPanic
		s.ConsecutiveFailures = 1
		s.LastError = "panic: " + long + "\ngoroutine 1 [running]:\nmain.main()"
	})}}
	reason := Evaluate(status, testNow).Problems[0].Reason
	if strings.Contains(reason, "goroutine") {
		t.Errorf("reason contains the stack: %q", reason)
	}
	if n := len([]rune(reason)); n > 300 {
		t.Errorf("reason has %d runes, want at most 300", n)
	}
}
