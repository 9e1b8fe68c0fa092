package daemon

import (
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/alerts"
	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
)

func TestStaleTrackerAlertsOnChange(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tracker := newStaleTracker(nil)
	staleJob := jobs.JobStatus{Stale: true, StaleReason: "no successful run for 3h (max_age 2h)"}
	staleJob.Name = "digest"
	status := control.Status{
		Jobs:      []jobs.JobStatus{staleJob},
		Listeners: []listeners.Health{{Name: "chat", Stale: true, StaleReason: "no event for 20m0s (stale_after 15m0s)"}},
	}

	first := tracker.alerts(status, now)
	if len(first) != 2 {
		t.Fatalf("first check: got %d alerts %+v, want 2", len(first), first)
	}
	if first[0].Event != alerts.EventStale || first[0].Kind != alerts.KindJob || first[0].Summary != staleJob.StaleReason {
		t.Errorf("job alert: got %+v, want a stale job alert with the reason", first[0])
	}
	if first[1].Event != alerts.EventStale || first[1].Kind != alerts.KindListener {
		t.Errorf("listener alert: got %+v, want a stale listener alert", first[1])
	}

	if again := tracker.alerts(status, now); len(again) != 0 {
		t.Errorf("second check: got %+v, want no repeat", again)
	}

	status.Jobs[0].Stale = false
	status.Listeners[0].Stale = false
	recovered := tracker.alerts(status, now)
	if len(recovered) != 2 {
		t.Fatalf("after recovery: got %d alerts %+v, want 2", len(recovered), recovered)
	}
	for _, a := range recovered {
		if a.Event != alerts.EventRecovered {
			t.Errorf("after recovery: got event %q for %s, want recovered", a.Event, a.Key)
		}
	}
	if recovered[0].Key != "job:digest:stale" {
		t.Errorf("key: got %q, want job:digest:stale", recovered[0].Key)
	}
}

func TestStaleTrackerSeededFromMemory(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tracker := newStaleTracker(map[string]bool{"job:digest:stale": true, "job:collect:stale": true, "job:digest": true})
	stillStale := jobs.JobStatus{Stale: true, StaleReason: "no successful run for 3h (max_age 2h)"}
	stillStale.Name = "collect"
	fresh := jobs.JobStatus{}
	fresh.Name = "digest"

	got := tracker.alerts(control.Status{Jobs: []jobs.JobStatus{stillStale, fresh}}, now)
	if len(got) != 1 {
		t.Fatalf("got %d alerts %+v, want only the recovery of digest", len(got), got)
	}
	if got[0].Key != "job:digest:stale" || got[0].Event != alerts.EventRecovered {
		t.Errorf("alert: got %s %s, want job:digest:stale recovered", got[0].Key, got[0].Event)
	}
}

func TestConfiguredKeyForgetsRemoved(t *testing.T) {
	cfg := &config.Config{
		Jobs:      []*config.Job{{Name: "digest"}},
		Listeners: []*config.Listener{{Name: "chat"}},
	}
	keep := configuredKey(cfg)
	for key, want := range map[string]bool{
		"job:digest":          true,
		"job:digest:stale":    true,
		"listener:chat":       true,
		"listener:chat:stale": true,
		"job:gone":            false,
		"job:gone:stale":      false,
		"listener:old":        false,
		"reload":              true,
		"daemon:state_dir":    true,
	} {
		if got := keep(key); got != want {
			t.Errorf("configuredKey(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestListenerAlertRecoveredOnceStable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		health listeners.Health
		event  string
	}{
		{"crash-looping", listeners.Health{State: listeners.StateBackoff, Restarts: crashLoopRestarts, LastError: "exit status 1"}, alerts.EventCrashLooping},
		{"running for seconds", listeners.Health{State: listeners.StateRunning, Since: now.Add(-5 * time.Second)}, ""},
		{"running for a minute", listeners.Health{State: listeners.StateRunning, Since: now.Add(-time.Minute)}, alerts.EventRecovered},
		{"failed", listeners.Health{State: listeners.StateFailed, LastError: "login rejected"}, alerts.EventFailed},
	}
	for _, c := range cases {
		c.health.Name = "chat"
		a, ok := listenerAlert(c.health, now)
		got := ""
		if ok {
			got = a.Event
		}
		if got != c.event {
			t.Errorf("%s: got event %q, want %q", c.name, got, c.event)
		}
	}
}
