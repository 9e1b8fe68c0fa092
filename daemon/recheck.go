package daemon

import (
	"log/slog"
	"slices"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// A daemon whose config has problems on this machine loads the config
// again recheckInterval after the load. The wait then doubles while
// nothing changes, up to maxRecheckInterval. A problem that stays, such
// as a job for a tool this machine lacks, then costs a large config one
// load in minutes. Runs of a job with a problem ask sooner.
const (
	recheckInterval    = 30 * time.Second
	maxRecheckInterval = 8 * time.Minute
)

// recheckSpacing is the least time between two rechecks, so that many
// runs of jobs with problems cost at most one load in that time.
const recheckSpacing = 5 * time.Second

// problemRecheck lets a daemon notice that a problem found when it loaded
// the config, such as a script that was not executable, is gone. The
// loader checks commands, folders and files only at a load, so a fixed
// job would otherwise fail until the next reload. Only the reloader's
// goroutine rechecks, so last and interval need no lock; the zero value
// is ready to use.
type problemRecheck struct {
	// requests merges the requests of runs not yet received into one.
	requests loadSignal
	last     time.Time
	// interval is the wait before the next timed recheck, zero for
	// recheckInterval.
	interval time.Duration
}

// recheckDelay returns the wait before the next timed recheck.
func (p *problemRecheck) recheckDelay() time.Duration {
	if p.interval == 0 {
		return recheckInterval
	}
	return p.interval
}

// requestRecheck queues a recheck. A run of a job with a problem calls
// it, so a fixed job runs again at one of its next slots rather than
// after the interval.
func (p *problemRecheck) requestRecheck() { p.requests.loaded() }

// rechecks receives after each request.
func (p *problemRecheck) rechecks() <-chan struct{} { return p.requests.loads() }

// recheck reloads through reload when the config files are as cfg was
// loaded from but a fresh load finds other problems on this machine. A
// reload of edited files is left to watch = true or to the user. Within
// recheckSpacing of the previous recheck it does nothing.
func (p *problemRecheck) recheck(cfg *config.Config, log *slog.Logger, reload func(seen string) (string, error)) {
	if len(problemTexts(cfg)) == 0 || time.Since(p.last) < recheckSpacing {
		return
	}
	p.last = time.Now()
	if filesFingerprint(cfg.Path) != cfg.Hash {
		return
	}
	next, err := loadConfig(cfg.Path)
	if err != nil || next.Hash != cfg.Hash || slices.Equal(problemTexts(cfg), problemTexts(next)) {
		p.interval = min(2*p.recheckDelay(), maxRecheckInterval)
		return
	}
	p.interval = 0
	log.Info("problems that the last load found on this machine changed, so the unchanged config is reloaded",
		"config", cfg.Path, "problems", len(problemTexts(next)))
	_, _ = reload(cfg.Hash)
}

// problemTexts returns the problem messages of cfg's jobs and enabled
// listeners. Alert sinks are left out because a reload keeps the ones
// built at start, and a disabled listener does not start whatever its
// problem, while run-job still runs a disabled job.
func problemTexts(cfg *config.Config) []string {
	var texts []string
	for _, job := range cfg.Jobs {
		if job.Problem != nil {
			texts = append(texts, job.Problem.Error())
		}
	}
	for _, listener := range cfg.Listeners {
		if listener.Problem != nil && listener.Enabled {
			texts = append(texts, listener.Problem.Error())
		}
	}
	return texts
}

func (h *handler) hasProblems() bool { return len(problemTexts(h.config())) > 0 }

// recheckProblems reloads when a problem of the running config on this
// machine changed while its files stayed the same.
func (h *handler) recheckProblems() {
	h.reloadLock.Lock()
	defer h.reloadLock.Unlock()
	h.recheck(h.config(), h.log, h.reload)
}

func (n *clusterNode) hasProblems() bool { return len(problemTexts(n.config())) > 0 }

// recheckProblems is the handler's for a cluster node.
func (n *clusterNode) recheckProblems() {
	n.reloadLock.Lock()
	defer n.reloadLock.Unlock()
	n.recheck(n.config(), n.log, n.reload)
}
