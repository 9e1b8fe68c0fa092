package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/alerts"
	"github.com/agent-runner/agent-runner/cluster"
	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// handler serves control requests and reloads for the running daemon. It
// owns the loaded config, which a reload replaces.
type handler struct {
	runner    *jobs.Runner
	sched     *jobs.Scheduler
	listeners *listenerSet
	store     *state.Store
	reaper    *process.Reaper
	log       *slog.Logger
	// alerts receives reload failures; nil without alert sinks.
	alerts *alerts.Dispatcher

	mu   sync.Mutex
	cfg  *config.Config
	info control.DaemonInfo
	watchState
	reloadLock sync.Mutex
	loadSignal
	problemRecheck
	stopMark
}

func newHandler(cfg *config.Config, version string, runner *jobs.Runner, sched *jobs.Scheduler, set *listenerSet,
	store *state.Store, reaper *process.Reaper, log *slog.Logger) *handler {
	return &handler{
		runner: runner, sched: sched, listeners: set, store: store, reaper: reaper, log: log, cfg: cfg,
		info: control.DaemonInfo{
			Version: version, Config: cfg.Path, ConfigHash: cfg.Hash,
			LoadedAt: time.Now().UTC(), StartedAt: time.Now().UTC(),
		},
	}
}

func (h *handler) config() *config.Config {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cfg
}

func (h *handler) RunJob(ctx context.Context, req jobs.Request) (state.Run, error) {
	if next, ok := h.sched.Next(req.Job); ok {
		// A manual run never moves the schedule; it records the same next
		// slot the scheduler holds.
		req.Next = next
	}
	return h.runner.Run(ctx, req)
}

// RecordRun stores a CLI's final record of a run that the CLI claimed
// before this daemon started. The daemon's start left the run alone
// because the CLI held the job's lock.
func (h *handler) RecordRun(run state.Run) error {
	if run.Result == state.ResultRunning || run.Result == "" {
		return fmt.Errorf("record run %s of %s: the record is not final", run.ID, run.Job)
	}
	if slices.Contains(h.runner.Running(), run.Job) {
		return fmt.Errorf("record run %s of %s: this daemon runs the job itself", run.ID, run.Job)
	}
	if err := h.store.Finish(run); err != nil {
		return fmt.Errorf("record run %s of %s: %w", run.ID, run.Job, err)
	}
	h.log.Info("recorded the result of a run-job that started without a daemon", "job", run.Job, "run", run.ID, "result", run.Result)
	return nil
}

func (h *handler) Runs(job string, limit int, id string) ([]state.Run, error) {
	return jobRuns(h.store, job, limit, id)
}

// jobRuns reads runs from an open store: the newest limit, or one by ID.
func jobRuns(store *state.Store, job string, limit int, id string) ([]state.Run, error) {
	if id == "" {
		return store.Runs(job, limit)
	}
	run, ok, err := store.Run(job, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("job %s has no run %s in its history (run IDs are shared by all jobs; agent-runner runs %s lists this job's)", job, id, job)
	}
	return []state.Run{run}, nil
}

// JobRuns is jobRuns for a CLI that opened the store itself.
func JobRuns(store *state.Store, job string, limit int, id string) ([]state.Run, error) {
	return jobRuns(store, job, limit, id)
}

func (h *handler) Send(ctx context.Context, listener, target, text string) (string, error) {
	return h.listeners.send(ctx, listener, target, text)
}

func (h *handler) Status() (control.Status, error) {
	statuses, err := h.sched.Status(h.config())
	if err != nil {
		return control.Status{}, err
	}
	statuses = withRemovedRuns(statuses, h.runner.Running())
	h.mu.Lock()
	info := h.info
	h.mu.Unlock()
	return control.Status{Daemon: &info, Jobs: statuses, Listeners: h.listeners.health()}, nil
}

// withRemovedRuns adds a row for each running job that a reload removed,
// whose run goes on to its end, so that status counts it and list shows
// it until it ends.
func withRemovedRuns(statuses []jobs.JobStatus, running []string) []jobs.JobStatus {
	for _, name := range running {
		known := slices.ContainsFunc(statuses, func(s jobs.JobStatus) bool { return s.Name == name })
		if !known {
			status := jobs.JobStatus{Schedule: "removed by a reload", State: jobs.StateRunning}
			status.Name = name
			statuses = append(statuses, status)
		}
	}
	return statuses
}

// Reload re-reads the config file and applies it as a diff. An invalid
// file is rejected and the running config stays; the error is logged and
// shown in status. It returns a one-line description of what changed.
func (h *handler) Reload() (string, error) {
	h.reloadLock.Lock()
	defer h.reloadLock.Unlock()
	return h.reload("")
}

// reloadIfChanged reloads when fileChanged. It checks under the reload
// lock, so that content a concurrent Reload just loaded is not loaded
// twice.
func (h *handler) reloadIfChanged() {
	h.reloadLock.Lock()
	defer h.reloadLock.Unlock()
	if hash, changed := h.fileChanged(); changed {
		_, _ = h.reload(hash)
	}
}

// reload is Reload under the reload lock. A reload by watch passes the
// fingerprint that two checks saw as seen, and applies nothing when the
// files it reads differ from it.
func (h *handler) reload(seen string) (string, error) {
	old := h.config()
	if h.stopping() {
		h.log.Info("reload ignored because the daemon is stopping", "config", old.Path)
		return "", errStopping
	}
	notify(h.log, "RELOADING=1")
	defer notify(h.log, "READY=1")

	h.log.Info("reloading config", "config", old.Path)
	next, err := loadConfig(old.Path)
	if read, changed := changedDuringRead(seen, next, err, old.Path); changed {
		h.log.Info("config files changed while they were read, so the reload waits for the next check", "config", old.Path)
		h.mu.Lock()
		h.unsettled(read)
		h.mu.Unlock()
		return "", nil
	}
	if err != nil {
		h.log.Error("reload rejected: the running config stays", "config", old.Path, "err", err)
		h.setReloadError(err)
		h.mu.Lock()
		h.rejected(filesFingerprint(old.Path))
		h.mu.Unlock()
		h.notifyReload(alerts.EventReloadFailed, "config reload rejected: "+firstLine(err.Error()))
		return "", fmt.Errorf("reload rejected, the running config stays: %w", err)
	}
	restartOnly := keepRestartOnly(old, next, h.log)
	applied := runnerChanges(old, next)
	logJobProblems(next, h.log)

	h.runner.SetJobs(next)
	schedErr := h.sched.Apply(next)
	changes := h.listeners.apply(next, cluster.Local{Store: h.store}, h.reaper, h.log)
	if schedErr != nil {
		h.log.Error("apply reloaded jobs failed", "err", schedErr)
	}
	h.mu.Lock()
	h.cfg = next
	h.info.ConfigHash, h.info.LoadedAt, h.info.ReloadError = next.Hash, time.Now().UTC(), ""
	h.reloaded()
	h.mu.Unlock()
	h.loaded()
	summary := fmt.Sprintf("%s; %s%s%s", jobChanges(old, next), changes, appliedNote(applied), restartNote(restartOnly))
	h.log.Info("config reloaded", "changes", summary, "hash", next.Hash[:12])
	h.notifyReload(alerts.EventRecovered, "config reloaded")
	return summary + problemNote(next), schedErr
}

// problemNote lists, for the reply to a reload, what the new config has
// that cannot run on this machine. The daemon logs each problem too, but
// a user who reloads by hand reads the reply, not the log.
func problemNote(cfg *config.Config) string {
	problems := cfg.Problems()
	if len(problems) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\ncannot run on this machine:")
	for _, problem := range problems {
		for line := range strings.SplitSeq(problem.Error(), "\n") {
			b.WriteString("\n  " + line)
		}
	}
	return b.String()
}

func (h *handler) notifyReload(event, summary string) {
	if h.alerts != nil {
		h.alerts.Notify(alerts.Alert{Kind: alerts.KindReload, Key: "reload", Event: event, Summary: summary, Time: time.Now()})
	}
}

func (h *handler) watching() bool { return h.config().Runner.Watch }

// fileChanged reports, with watch = true, whether the content of the
// config file or of the files it includes differs from the last one
// loaded or rejected, and is the same as at the previous check. A file
// added to or removed from an included folder counts as a change, and so
// does a main file that cannot be read. Files that match the loaded
// content again clear a reload error.
func (h *handler) fileChanged() (string, bool) {
	cfg := h.config()
	if !cfg.Runner.Watch {
		return "", false
	}
	hash := filesFingerprint(cfg.Path)
	h.mu.Lock()
	verdict := h.watchState.compare(hash, &h.info)
	h.mu.Unlock()
	if verdict == watchReverted {
		h.log.Info("config files match the running config again; the reload error is cleared", "config", cfg.Path)
		h.notifyReload(alerts.EventRecovered, "config files match the running config again")
	}
	return hash, verdict == watchChanged
}

func (h *handler) setReloadError(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.info.ReloadError = err.Error()
	h.info.ReloadFailedAt = time.Now().UTC()
}

// keepRestartOnly keeps the [runner] settings that only a restart can
// change, logs a warning for each one that the new file changes, and
// returns their keys. The daemon opens the state store, the control
// socket and the health server at start, and its stop uses the
// shutdown_timeout and catch-up uses the catch_up_spread of the config it
// started with. The [alerts] table is kept and reported the same way,
// because the alert sinks are built once at start.
func keepRestartOnly(old, next *config.Config, log *slog.Logger) []string {
	var changed []string
	keep := func(key string, differs bool) {
		if differs {
			log.Warn("config change takes effect after a restart", "key", "runner."+key)
			changed = append(changed, "runner."+key)
		}
	}
	was, now := &old.Runner, &next.Runner
	keep("state_dir", was.StateDir != now.StateDir)
	keep("socket", was.Socket != now.Socket)
	keep("socket_group", was.SocketGroup != now.SocketGroup)
	keep("history", was.HistoryLimit != now.HistoryLimit)
	keep("http", was.HTTP != now.HTTP)
	keep("shutdown_timeout", was.ShutdownTimeout != now.ShutdownTimeout)
	keep("catch_up_spread", was.CatchUpSpread != now.CatchUpSpread)
	now.StateDir, now.Socket, now.SocketGroup, now.HistoryLimit = was.StateDir, was.Socket, was.SocketGroup, was.HistoryLimit
	now.HTTP, now.ShutdownTimeout, now.CatchUpSpread = was.HTTP, was.ShutdownTimeout, was.CatchUpSpread
	if !sameAlerts(old.Alerts, next.Alerts) {
		log.Warn("config change takes effect after a restart", "key", "alerts")
		changed = append(changed, "alerts")
	}
	next.Alerts = old.Alerts
	return changed
}

// sameAlerts compares two versions of the alert sinks, ignoring where
// they sit in the file. Secrets compare by value through their pointers,
// and problems by their message.
func sameAlerts(a, b []*config.Alert) bool {
	return slices.EqualFunc(a, b, func(x, y *config.Alert) bool {
		xc, yc := *x, *y
		xc.Line, yc.Line = 0, 0
		xc.Problem, yc.Problem = nil, nil
		return reflect.DeepEqual(xc, yc) && errorText(x.Problem) == errorText(y.Problem)
	})
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// runnerChanges returns the keys of the [runner] settings that a reload
// applies and that next changes. Call it after keepRestartOnly, which
// leaves next with the old values of the others.
func runnerChanges(old, next *config.Config) []string {
	was, now := &old.Runner, &next.Runner
	var changed []string
	add := func(key string, differs bool) {
		if differs {
			changed = append(changed, "runner."+key)
		}
	}
	add("timezone", was.Location.String() != now.Location.String())
	add("path", !slices.Equal(was.Path, now.Path))
	add("kill_grace", was.KillGrace != now.KillGrace)
	add("watch", was.Watch != now.Watch)
	add("max_concurrent", was.MaxConcurrent != now.MaxConcurrent)
	return changed
}

// appliedNote describes the [runner] keys a reload applied for the reload
// summary, or returns "" when there are none.
func appliedNote(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return "; applied: " + strings.Join(keys, ", ")
}

// restartNote describes the keys a reload kept for the reload summary,
// or returns "" when there are none.
func restartNote(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return "; takes effect after a restart: " + strings.Join(keys, ", ")
}

// jobChanges counts the jobs a reload adds, removes and changes.
func jobChanges(old, next *config.Config) string {
	before := make(map[string]*config.Job, len(old.Jobs))
	for _, job := range old.Jobs {
		before[job.Name] = job
	}
	added, changed := 0, 0
	for _, job := range next.Jobs {
		prev, ok := before[job.Name]
		switch {
		case !ok:
			added++
		case !sameJob(prev, job):
			changed++
		}
		delete(before, job.Name)
	}
	return fmt.Sprintf("jobs: %d added, %d removed, %d changed", added, len(before), changed)
}

// sameJob compares two versions of a job, ignoring where it sits in the
// file.
func sameJob(a, b *config.Job) bool {
	x, y := *a, *b
	x.Line, y.Line = 0, 0
	// fmt prints a pointer field as its address, and every load allocates
	// new ones, so Post and Heartbeat are compared by value.
	if !reflect.DeepEqual(x.Post, y.Post) || !reflect.DeepEqual(x.Heartbeat, y.Heartbeat) {
		return false
	}
	x.Post, y.Post = nil, nil
	x.Heartbeat, y.Heartbeat = nil, nil
	return fmt.Sprintf("%v", x) == fmt.Sprintf("%v", y) && secretsEqual(x.Env, y.Env)
}

func secretsEqual(a, b map[string]config.Secret) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w.Reveal() != v.Reveal() || w.Source != v.Source {
			return false
		}
	}
	return true
}
