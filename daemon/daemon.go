// Package daemon wires the long-running process: the state store, the
// scheduler, the run boundary and the control socket, each an actor of
// one oklog/run group. Signals stay in main; a context ends the daemon.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/cluster"
	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/health"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// storeLockTimeout is how long the daemon waits for the store lock. A CLI
// running a job in-process holds it only for short transactions.
const storeLockTimeout = 10 * time.Second

// Options configures Run.
type Options struct {
	Config  *config.Config
	Log     *slog.Logger
	Clock   clockwork.Clock
	Version string
	// Force, when closed, stops running jobs at once instead of waiting
	// out shutdown_timeout, as a second SIGTERM asks.
	Force <-chan struct{}
	// Reload receives a value for each SIGHUP: re-read the config file.
	Reload <-chan struct{}
}

// Run runs the daemon until ctx ends, then stops scheduling, stops the
// running jobs and records their results.
func Run(ctx context.Context, opts Options) error {
	cfg, log := opts.Config, opts.Log
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	log.Info("agent-runner starting", "version", opts.Version, "config", cfg.Path,
		"state_dir", cfg.Runner.StateDir, "jobs", len(cfg.Jobs), "listeners", len(cfg.Listeners))
	if cfg.Cluster != nil {
		return runCluster(ctx, opts)
	}

	store, err := openStore(ctx, cfg, log, opts.Clock.Now())
	if err != nil {
		return err
	}
	defer store.Close()
	// Deferred after the store's Close, so it runs before it, with the
	// store lock held, and after the listeners and the reaper stop.
	defer unmarkRunning(cfg.Runner.StateDir, log)

	reaper, err := process.NewReaper(log)
	if err != nil {
		return err
	}
	defer reaper.Close()

	logJobProblems(cfg, log)
	metrics := health.NewMetrics()
	runner := jobs.NewRunner(cfg, timedRecorder{store, metrics}, reaper, log, opts.Clock.Now)
	sched, err := jobs.NewScheduler(cfg, runner, store, opts.Clock, log)
	if err != nil {
		return err
	}
	set := newListenerSet(cfg, cluster.Local{Store: store}, reaper, log)
	defer set.close(log)
	runner.SetPoster(set)
	h := newHandler(cfg, opts.Version, runner, sched, set, store, reaper, log)
	runner.OnLoadProblem(h.requestRecheck)
	if err := shareStateDir(cfg.Runner.StateDir, cfg.Runner.Socket, cfg.Runner.SocketGroup); err != nil {
		_ = sched.Stop()
		return err
	}
	srv, err := control.Listen(cfg.Runner.Socket, cfg.Runner.SocketGroup, h, log)
	if err != nil {
		_ = sched.Stop()
		return err
	}

	var group run.Group
	addStopMark(&group, &h.stopMark)
	if cfg.Runner.HTTP != "" {
		if err := addHealthServer(&group, cfg.Runner.HTTP, metrics, h, runner, store, log); err != nil {
			_ = sched.Stop()
			_ = srv.Close()
			return err
		}
	}
	if d := newDispatcher(cfg, reaper, log); d != nil {
		addAlerts(&group, d, h)
	}
	addContext(&group, ctx)
	// Listeners first: their interrupts return at once, so they stop
	// during the scheduler's wait for running jobs, and the chat
	// listeners that jobs post through once it ends.
	jobsStopped := make(chan struct{})
	set.stopAfterJobs(jobsStopped)
	set.add(&group)
	addScheduler(&group, cfg, sched, runner, log, opts.Force, jobsStopped)
	addReloader(&group, h, opts.Reload)
	addWatchdog(&group, sched, h, log)
	addStateWatch(&group, cfg, h, log)
	group.Add(srv.Serve, func(error) {
		log.Info("closing control socket")
		_ = srv.Close()
	})
	err = group.Run()
	log.Info("agent-runner stopped")
	if errors.Is(err, errStopRequested) {
		return nil
	}
	return err
}

func logJobProblems(cfg *config.Config, log *slog.Logger) {
	for _, job := range cfg.Jobs {
		if job.Problem != nil {
			log.Error("job cannot run as configured", "job", job.Name, "err", job.Problem)
		}
	}
}

// addHealthServer serves /healthz, /metrics and the status page, and
// feeds run metrics from the runner.
func addHealthServer(group *run.Group, addr string, metrics *health.Metrics, h *handler, runner *jobs.Runner, store *state.Store, log *slog.Logger) error {
	runner.SetObserver(metrics)
	srv, err := health.NewServer(addr, h.Status, metrics, log, health.WithRuns(store.Runs))
	if err != nil {
		return fmt.Errorf("start health server: %w", err)
	}
	group.Add(srv.Serve, func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return nil
}

// watchInterval is how often watch = true compares the config file with
// the loaded one.
const watchInterval = 2 * time.Second

// reloader re-reads the config: the single-node handler or a cluster
// node.
type reloader interface {
	Reload() (string, error)
	// reloadIfChanged reloads with watch = true when the files changed.
	reloadIfChanged()
	// watching reports whether the loaded config has watch = true.
	watching() bool
	// loads receives after each reload that loaded a config.
	loads() <-chan struct{}
	// hasProblems reports whether the running config has problems on
	// this machine, which recheckProblems looks at again.
	hasProblems() bool
	recheckProblems()
	// recheckDelay is the wait before the next timed recheckProblems.
	recheckDelay() time.Duration
	// rechecks receives when a run requests a recheck.
	rechecks() <-chan struct{}
}

// addReloader adds the actor that reloads the config on each signal,
// with [runner] watch = true when the file's content changes, and when a
// problem of the config on this machine changed. Without watch and
// problems it keeps no ticker, so that an idle daemon does not wake for
// it.
func addReloader(group *run.Group, h reloader, signals <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		var watch, problems *time.Ticker
		defer func() { stopTicker(watch); stopTicker(problems) }()
		for {
			watch = keepTicker(watch, h.watching(), watchInterval)
			problems = keepTicker(problems, h.hasProblems(), h.recheckDelay())
			select {
			case <-ctx.Done():
				return nil
			case <-signals:
				_, _ = h.Reload()
			case <-h.loads():
			case <-tickerChan(watch):
				h.reloadIfChanged()
			case <-tickerChan(problems):
				h.recheckProblems()
				problems.Reset(h.recheckDelay())
			case <-h.rechecks():
				h.recheckProblems()
			}
		}
	}, func(error) { cancel() })
}

// keepTicker returns the ticker of interval that the reloader needs: t
// itself or a new one while on, nil after stopping t otherwise.
func keepTicker(t *time.Ticker, on bool, interval time.Duration) *time.Ticker {
	switch {
	case on && t == nil:
		return time.NewTicker(interval)
	case !on:
		stopTicker(t)
		return nil
	}
	return t
}

// tickerChan returns the channel of t, or nil, which never receives, for
// no ticker.
func tickerChan(t *time.Ticker) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func stopTicker(t *time.Ticker) {
	if t != nil {
		t.Stop()
	}
}

var errStopRequested = errors.New("stop requested")

// addContext adds the actor that ends the group when ctx ends.
func addContext(group *run.Group, ctx context.Context) {
	inner, cancel := context.WithCancel(ctx)
	group.Add(func() error {
		<-inner.Done()
		return errStopRequested
	}, func(error) { cancel() })
}

// addScheduler adds the actor that owns scheduling and running jobs. Its
// interrupt stops new runs first, then waits for running ones.
func addScheduler(group *run.Group, cfg *config.Config, sched *jobs.Scheduler, runner *jobs.Runner, log *slog.Logger, force <-chan struct{}, jobsStopped chan<- struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		sched.Start(ctx)
		log.Info("scheduler started")
		notify(log, "READY=1")
		<-ctx.Done()
		return nil
	}, func(error) {
		notify(log, "STOPPING=1")
		cancel()
		log.Info("stopping running jobs", "running", runner.Running(), "timeout", cfg.Runner.ShutdownTimeout)
		stopCtx, stop := context.WithTimeout(context.Background(), cfg.Runner.ShutdownTimeout)
		defer stop()
		// A nil force never receives.
		go func() {
			select {
			case <-force:
				log.Warn("second signal: killing running jobs now")
				runner.Kill()
			case <-stopCtx.Done():
				if errors.Is(stopCtx.Err(), context.DeadlineExceeded) && len(runner.Running()) > 0 {
					log.Warn("shutdown_timeout passed, so the running jobs get SIGKILL",
						"running", runner.Running(), "timeout", cfg.Runner.ShutdownTimeout)
				}
			}
		}()
		runner.Shutdown(stopCtx)
		close(jobsStopped)
		if err := sched.Stop(); err != nil {
			log.Error("stop scheduler failed", "err", err)
		}
		log.Info("scheduler stopped")
	})
}

// openStore opens the state store, reports a corrupt store that was moved
// aside, and marks runs cut short by a crash as interrupted.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger, now time.Time) (*state.Store, error) {
	if err := PrepareStateDir(cfg.Runner.StateDir); err != nil {
		return nil, err
	}
	path := StorePath(cfg)
	// Short tries in a loop, so a stop signal during the wait is obeyed.
	deadline := time.Now().Add(storeLockTimeout)
	var store *state.Store
	var err error
	for {
		store, err = state.Open(path, state.Options{
			LockTimeout:  500 * time.Millisecond,
			HistoryLimit: cfg.Runner.HistoryLimit,
			Logger:       log,
		})
		if !errors.Is(err, state.ErrLocked) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
	}
	if errors.Is(err, state.ErrLocked) {
		// state.Open's own message gives the timeout of one try.
		return nil, fmt.Errorf("state store %s is %w, which kept it for more than %s: stop that process, or give this daemon another state_dir", path, state.ErrLocked, storeLockTimeout)
	}
	if Unwritable(err) {
		StopLeftoversReadOnly(cfg, log)
		return nil, unwritableError(cfg.Runner.StateDir, err)
	}
	if err != nil {
		// state.Open's errors name the store already.
		return nil, err
	}
	if moved := store.Recovered(); moved != "" {
		log.Error("state store was corrupt: moved it aside and started a new one; schedule positions and history are reset",
			"path", path, "moved_to", moved)
	}
	daemonLeft := markRunning(cfg.Runner.StateDir, log)
	if err := RecoverRuns(cfg, store, daemonLeft, now, log); err != nil {
		store.Close()
		if Unwritable(err) {
			return nil, unwritableError(cfg.Runner.StateDir, err)
		}
		return nil, err
	}
	return store, nil
}

// RecoverRuns stops what the runs still recorded as running left behind
// and marks those runs interrupted, so that no run of a job overlaps one
// that a killed daemon started. A daemon start calls it, and a run by hand
// without a daemon takes the same steps with the store closed during the
// kill. A run whose job's run lock is held is left alone, because a CLI
// is running it by hand right now.
func RecoverRuns(cfg *config.Config, store *state.Store, daemonLeft bool, now time.Time, log *slog.Logger) error {
	leftovers, err := Leftovers(cfg, store, daemonLeft)
	if err != nil {
		return err
	}
	StopLeftovers(cfg, leftovers, log)
	return MarkInterrupted(cfg, store, now, log)
}

// runBusy reports whether a CLI holds the job's run lock, running it by
// hand right now.
func runBusy(cfg *config.Config) func(job string) bool {
	return func(job string) bool { return jobs.LockHeld(cfg.Runner.StateDir, job) }
}

// MarkInterrupted marks the runs still recorded as running interrupted,
// unless their job's run lock is held, and logs each one.
func MarkInterrupted(cfg *config.Config, store *state.Store, now time.Time, log *slog.Logger) error {
	interrupted, err := store.RecoverInterrupted(now, runBusy(cfg))
	if err != nil {
		return fmt.Errorf("recover interrupted runs: %w", err)
	}
	for _, r := range interrupted {
		attrs := []any{"job", r.Job, "run", r.ID}
		// A run by hand has no slot.
		if !r.Slot.IsZero() {
			attrs = append(attrs, "slot", r.Slot)
		}
		log.Warn("run was interrupted by a previous stop", attrs...)
	}
	return nil
}

// Leftovers returns the environment markers of what the runs still
// recorded as running left behind, and of a previous daemon's listeners,
// hooks and alert commands when daemonLeft reports that daemon did not
// stop cleanly. Children of a daemon or CLI that was killed have their
// own process groups and may still run, and must not overlap the runs to
// come.
func Leftovers(cfg *config.Config, store *state.Store, daemonLeft bool) ([]string, error) {
	running, err := store.RunningRuns()
	if err != nil {
		return nil, fmt.Errorf("recover interrupted runs: %w", err)
	}
	var leftovers []string
	if daemonLeft {
		leftovers = append(leftovers, process.DaemonMarkers(cfg.Runner.StateDir)...)
	}
	busy := runBusy(cfg)
	for _, r := range running {
		if !busy(r.Job) {
			leftovers = append(leftovers, jobs.RunMarkers(cfg.Runner.StateDir, r.ID)...)
		}
	}
	return leftovers, nil
}

// StopLeftovers kills the processes that carry one of the markers. It
// runs before their runs are marked interrupted, so a crash during it
// leaves them to the next start.
func StopLeftovers(cfg *config.Config, markers []string, log *slog.Logger) {
	if n := process.KillMarked(markers, cfg.Runner.KillGrace); n > 0 {
		log.Warn("stopped processes left by a previous daemon or CLI", "count", n)
	}
}

// StorePath returns the path of the store file in the state folder.
func StorePath(cfg *config.Config) string {
	return filepath.Join(cfg.Runner.StateDir, "state.db")
}
