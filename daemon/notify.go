package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
)

// notify sends a state to the service manager. Outside a Type=notify
// unit, NOTIFY_SOCKET is unset and this does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("notify service manager failed", "state", state, "err", err)
	}
}

// pingTimeout is how long the scheduler may take to answer a watchdog
// ping before the daemon counts as wedged.
const pingTimeout = 5 * time.Second

// addWatchdog adds an actor that sends WATCHDOG=1 at half the interval
// the unit's WatchdogSec sets, but only while the scheduler answers, so
// that systemd restarts a daemon whose scheduler is stuck. It also keeps
// STATUS= current. Without WatchdogSec it only updates STATUS=.
func addWatchdog(group *run.Group, sched *jobs.Scheduler, h *handler, log *slog.Logger) {
	addHeartbeat(group, log, func() (string, error) {
		if err := sched.Ping(pingTimeout); err != nil {
			return "", err
		}
		return summary(h), nil
	})
}

// addHeartbeat adds the actor behind the watchdog: every half watchdog
// interval (or 30 s) it calls check, and sends WATCHDOG=1 and the
// status line check returns unless check failed.
func addHeartbeat(group *run.Group, log *slog.Logger, check func() (string, error)) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("read watchdog interval failed", "err", err)
	}
	period := 30 * time.Second
	if interval > 0 {
		period = interval / 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		ticker := time.NewTicker(period)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
			}
			status, err := check()
			if err != nil {
				log.Error("scheduler does not respond; withholding the watchdog ping", "err", err)
				continue
			}
			if interval > 0 {
				notify(log, "WATCHDOG=1")
			}
			notify(log, "STATUS="+status)
		}
	}, func(error) { cancel() })
}

// summary is the one-line state shown in systemctl status.
func summary(h *handler) string {
	status, err := h.Status()
	if err != nil {
		return "status unavailable: " + err.Error()
	}
	return Summary(status)
}

// Summary counts jobs and listeners by state in one line. Stale jobs and
// listeners are counted too, because /healthz reports them as unhealthy.
func Summary(status control.Status) string {
	running, failing, staleJobs := 0, 0, 0
	for _, j := range status.Jobs {
		switch {
		case j.State == jobs.StateRunning:
			running++
		case j.State == jobs.StateFailed, j.ConsecutiveFailures > 0:
			failing++
		}
		if j.Stale {
			staleJobs++
		}
	}
	up, down, staleListeners := 0, 0, 0
	for _, l := range status.Listeners {
		switch {
		case l.State == listeners.StateRunning:
			up++
		case l.State == listeners.StateBackoff, l.State == listeners.StateFailed, l.Retrying:
			down++
		}
		if l.Stale {
			staleListeners++
		}
	}
	line := fmt.Sprintf("%s (%d running, %d failing), %s (%d connected, %d failing)",
		Count(len(status.Jobs), "job"), running, failing, Count(len(status.Listeners), "listener"), up, down)
	if staleJobs > 0 {
		line += fmt.Sprintf("; %s stale", Count(staleJobs, "job"))
	}
	if staleListeners > 0 {
		line += fmt.Sprintf("; %s stale", Count(staleListeners, "listener"))
	}
	if d := status.Daemon; d != nil && d.StateError != "" {
		line += "; state folder failing"
	}
	return line
}

// Count writes n with noun, in the plural unless n is 1.
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
