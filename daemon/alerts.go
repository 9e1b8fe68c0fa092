package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/alerts"
	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// listenerCheckInterval is how often listener health and the staleness
// of jobs and listeners are turned into alerts.
const listenerCheckInterval = 10 * time.Second

// alertMemoryFile is the file in the state folder that keeps the alert
// sinks' deduplication state across restarts.
const alertMemoryFile = "alerts.json"

// crashLoopRestarts is how many restarts without staying connected make
// a listener crash-looping.
const crashLoopRestarts = 3

// newDispatcher builds the alert sinks of cfg. A sink that cannot work is
// logged and left out; without sinks it returns nil.
//
// NOTE: sinks are built once at start; a reload that changes [alerts]
// takes effect after a restart.
func newDispatcher(cfg *config.Config, reaper *process.Reaper, log *slog.Logger) *alerts.Dispatcher {
	client := &http.Client{Timeout: 30 * time.Second}
	var sinks []alerts.SinkConfigured
	for _, a := range cfg.Alerts {
		if a.Problem != nil {
			log.Error("alert sink cannot work as configured", "alert", a.Name, "err", a.Problem)
			continue
		}
		sc := alerts.SinkConfig{
			Name: a.Name, Kind: a.Kind, URL: a.URL, Command: a.Command, Events: a.Events,
			Cooldown: a.Cooldown, IncludeOutput: a.IncludeOutput, Timeout: a.Timeout,
		}
		sink, err := alerts.NewSink(sc, client, reaper, cfg.Runner.Path, cfg.Dir, process.DaemonMarker(cfg.Runner.StateDir))
		if err != nil {
			log.Error("alert sink cannot work as configured", "alert", a.Name, "err", err)
			continue
		}
		sinks = append(sinks, alerts.SinkConfigured{Sink: sink, Config: sc})
	}
	if len(sinks) == 0 {
		return nil
	}
	d := alerts.NewDispatcher(sinks, log)
	memory := alerts.OpenMemory(filepath.Join(cfg.Runner.StateDir, alertMemoryFile), log)
	memory.Forget(configuredKey(cfg))
	d.Remember(memory)
	return d
}

// configuredKey returns whether an alert key belongs to a job or listener
// of cfg, or to something else, such as a reload, that every config has.
// The alert memory drops the other keys, so that a removed job's stale
// episode neither stays in the file nor seeds the stale tracker.
func configuredKey(cfg *config.Config) func(key string) bool {
	names := make(map[string]bool, len(cfg.Jobs)+len(cfg.Listeners))
	for _, job := range cfg.Jobs {
		names[alerts.KindJob+":"+job.Name] = true
	}
	for _, lc := range cfg.Listeners {
		names[alerts.KindListener+":"+lc.Name] = true
	}
	return func(key string) bool {
		kind, _, _ := strings.Cut(key, ":")
		if kind != alerts.KindJob && kind != alerts.KindListener {
			return true
		}
		return names[strings.TrimSuffix(key, staleKeySuffix)]
	}
}

// jobAlert turns the final run of a request into an alert: a failure
// event, or recovered after a success. Other results say nothing.
func jobAlert(run state.Run) (alerts.Alert, bool) {
	a := alerts.Alert{
		Kind: alerts.KindJob, Name: run.Job, Time: run.Finish, RunID: run.ID,
		ExitCode: run.ExitCode, Output: run.Output,
	}
	switch run.Result {
	case state.ResultOK:
		a.Event, a.Summary = alerts.EventRecovered, "ran successfully again"
	case state.ResultFailed, state.ResultTimeout, state.ResultPanic:
		a.Event = run.Result
		a.Summary = fmt.Sprintf("run %s %s: %s", run.ID, run.Result, firstLine(run.Error))
	default:
		return a, false
	}
	return a, true
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// listenerAlert turns a listener's health into an alert.
func listenerAlert(h listeners.Health, now time.Time) (alerts.Alert, bool) {
	a := alerts.Alert{Kind: alerts.KindListener, Name: h.Name, Time: now}
	switch {
	case h.State == listeners.StateFailed:
		a.Event, a.Summary = alerts.EventFailed, "failed: "+firstLine(h.LastError)
	case h.State == listeners.StateBackoff && h.Restarts >= crashLoopRestarts:
		a.Event = alerts.EventCrashLooping
		a.Summary = fmt.Sprintf("restarted %d times: %s", h.Restarts, firstLine(h.LastError))
	case h.State == listeners.StateRunning && now.Sub(h.Since) >= listeners.DefaultBackoff.Stable:
		// A listener counts as recovered once it stayed connected as long
		// as the supervisor needs to forget its failures. A crash-looping
		// one that connects for a few seconds each time would otherwise
		// send a crash-looping and a recovered alert per cycle, and each
		// recovery would end the cooldown of the next.
		a.Event, a.Summary = alerts.EventRecovered, "connected again"
	default:
		return a, false
	}
	return a, true
}

// addAlerts wires the dispatcher to job results, listener health and
// reloads, and adds its delivery loop to the group.
func addAlerts(group *run.Group, d *alerts.Dispatcher, h *handler) {
	h.runner.SetFinalHook(func(r state.Run) {
		if a, ok := jobAlert(r); ok {
			d.Notify(a)
		}
	})
	h.alerts = d
	ctx, cancel := context.WithCancel(context.Background())
	stale := newStaleTracker(d.Alerted())
	group.Add(func() error {
		// The dispatcher drains and stops its alert commands once ctx
		// ends, and the daemon waits for that, so that no command outlives
		// a clean stop.
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			d.Run(ctx)
		}()
		ticker := time.NewTicker(listenerCheckInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				<-stopped
				return nil
			case <-ticker.C:
			}
			for _, health := range h.listeners.health() {
				if a, ok := listenerAlert(health, time.Now()); ok {
					d.Notify(a)
				}
			}
			notifyStale(d, h, stale)
		}
	}, func(error) { cancel() })
}
