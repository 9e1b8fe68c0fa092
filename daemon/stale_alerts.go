package daemon

import (
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/alerts"
	"github.com/agent-runner/agent-runner/control"
)

// staleTracker remembers which jobs and listeners were stale at the last
// check, so that only changes become alerts.
type staleTracker struct {
	// stale maps an alert key to true while its job or listener is stale.
	stale map[string]bool
}

// newStaleTracker returns a tracker that counts as stale the stale keys
// among alerted, the keys whose failure alert a sink delivered before
// this start. A job or listener that recovered while the daemon was down
// then gets its recovered alert, and one still stale no second alert.
func newStaleTracker(alerted map[string]bool) *staleTracker {
	t := &staleTracker{stale: make(map[string]bool)}
	for key := range alerted {
		if strings.HasSuffix(key, staleKeySuffix) {
			t.stale[key] = true
		}
	}
	return t
}

// staleKeySuffix ends the alert key of each stale episode.
const staleKeySuffix = ":stale"

// notifyStale sends the stale and recovered alerts that the handler's
// current status calls for.
func notifyStale(d *alerts.Dispatcher, h *handler, tracker *staleTracker) {
	status, err := h.Status()
	if err != nil {
		h.log.Error("read status for stale alerts failed", "err", err)
		return
	}
	for _, a := range tracker.alerts(status, time.Now()) {
		d.Notify(a)
	}
}

// alerts returns a stale alert for each job and listener that became
// stale since the last call, and a recovered alert for each that stopped
// being stale. The alerts use their own key, so that a run's failure and
// recovery alerts do not end a stale episode or the reverse.
func (t *staleTracker) alerts(status control.Status, now time.Time) []alerts.Alert {
	var out []alerts.Alert
	for _, job := range status.Jobs {
		if a, ok := t.change(alerts.KindJob, job.Name, job.Stale, job.StaleReason, now); ok {
			out = append(out, a)
		}
	}
	for _, listener := range status.Listeners {
		if a, ok := t.change(alerts.KindListener, listener.Name, listener.Stale, listener.StaleReason, now); ok {
			out = append(out, a)
		}
	}
	return out
}

// change records whether kind/name is stale now and returns the alert
// for a change since the last check.
func (t *staleTracker) change(kind, name string, stale bool, reason string, now time.Time) (alerts.Alert, bool) {
	key := kind + ":" + name + staleKeySuffix
	was := t.stale[key]
	a := alerts.Alert{Key: key, Kind: kind, Name: name, Time: now}
	switch {
	case stale && !was:
		t.stale[key] = true
		a.Event, a.Summary = alerts.EventStale, reason
		return a, true
	case !stale && was:
		delete(t.stale, key)
		a.Event, a.Summary = alerts.EventRecovered, "no longer stale"
		return a, true
	}
	return a, false
}
