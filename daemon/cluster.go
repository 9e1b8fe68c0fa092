package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/cluster"
	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/health"
	"github.com/agent-runner/agent-runner/internal/wait"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// campaignRetry is the pause before campaigning again after a campaign
// failed, such as while etcd is unreachable.
const campaignRetry = time.Second

// runCluster runs the daemon as one node of a [cluster]. Every node
// serves the control socket and the health server. Only the node that
// won the election runs the scheduler and the listeners, for as long as
// its term lasts.
func runCluster(ctx context.Context, opts Options) error {
	cfg, log := opts.Config, opts.Log.With("node", opts.Config.Cluster.Node)
	// The state folder keeps the control socket, run locks and the
	// scheduler's copy of the positions.
	if err := PrepareStateDir(cfg.Runner.StateDir); err != nil {
		return err
	}
	if err := shareStateDir(cfg.Runner.StateDir, cfg.Runner.Socket, cfg.Runner.SocketGroup); err != nil {
		return err
	}
	client, err := cluster.Connect(cfg.Cluster)
	if err != nil {
		return err
	}
	defer client.Close()
	store := cluster.NewEtcd(client, cfg.Cluster.Prefix, cfg.Runner.HistoryLimit)
	elector := cluster.NewElector(client, cfg.Cluster.Prefix, cfg.Cluster.Node, cfg.Cluster.LeaseTTL, log)

	reaper, err := process.NewReaper(log)
	if err != nil {
		return err
	}
	defer reaper.Close()
	logJobProblems(cfg, log)
	stopClusterLeftovers(cfg, store, log)

	node := &clusterNode{
		cfg: cfg, opts: opts, log: log, store: store, elector: elector, reaper: reaper,
		metrics: health.NewMetrics(),
		info: control.DaemonInfo{
			Version: opts.Version, Config: cfg.Path, ConfigHash: cfg.Hash,
			LoadedAt: time.Now().UTC(), StartedAt: time.Now().UTC(),
		},
	}
	srv, err := control.Listen(cfg.Runner.Socket, cfg.Runner.SocketGroup, node, log)
	if err != nil {
		return err
	}
	var group run.Group
	addStopMark(&group, &node.stopMark)
	if cfg.Runner.HTTP != "" {
		hs, err := health.NewServer(cfg.Runner.HTTP, node.Status, node.metrics, log, health.WithRuns(store.Runs))
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("start health server: %w", err)
		}
		group.Add(hs.Serve, func(error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(ctx)
		})
	}
	addContext(&group, ctx)
	node.addLeaderWork(&group)
	node.addWatchdog(&group)
	addReloader(&group, node, opts.Reload)
	group.Add(srv.Serve, func(error) {
		log.Info("closing control socket")
		_ = srv.Close()
	})
	notify(log, "READY=1")
	err = group.Run()
	log.Info("agent-runner stopped")
	if errors.Is(err, errStopRequested) {
		return nil
	}
	return err
}

// stopClusterLeftovers kills what this machine's previous daemon left
// running: its listeners and hooks, and the children of runs that etcd
// records as running or interrupted. A new leader marks the runs of a
// dead one interrupted, so when the dead node comes back its orphans are
// among those. Markers only match processes on this machine, and run IDs
// are unique in the cluster, so runs of other nodes are untouched.
func stopClusterLeftovers(cfg *config.Config, store *cluster.Etcd, log *slog.Logger) {
	leftovers := process.DaemonMarkers(cfg.Runner.StateDir)
	for _, job := range cfg.Jobs {
		runs, err := store.Runs(job.Name, 0)
		if err != nil {
			// etcd is probably unreachable, and each further job would
			// wait out the same timeout.
			log.Warn("read runs from etcd failed, so leftover processes of runs are not looked for", "job", job.Name, "err", err)
			break
		}
		for _, r := range runs {
			if r.Result == state.ResultRunning || r.Result == state.ResultInterrupted {
				leftovers = append(leftovers, jobs.RunMarkers(cfg.Runner.StateDir, r.ID)...)
			}
		}
	}
	if n := process.KillMarked(leftovers, cfg.Runner.KillGrace); n > 0 {
		log.Warn("stopped processes left by a previous daemon or CLI", "count", n)
	}
}

// clusterNode is the control handler and the leader work of one node.
type clusterNode struct {
	opts    Options
	log     *slog.Logger
	store   *cluster.Etcd
	elector *cluster.Elector
	reaper  *process.Reaper
	metrics *health.Metrics

	// reloadLock keeps a reload from running while a term starts, which
	// would leave that term with the old config.
	reloadLock sync.Mutex

	mu   sync.Mutex
	cfg  *config.Config
	info control.DaemonInfo
	watchState
	// term is the work of the current term, nil while this node does not
	// lead.
	term *termWork
	// ranTerm is the last term this process led and whose listeners it
	// stopped, so that winning again after it need not wait.
	ranTerm int64
	loadSignal
	problemRecheck
	stopMark
}

// termWork is the runner, scheduler and listeners of one term.
type termWork struct {
	term   *cluster.Term
	runner *jobs.Runner
	sched  *jobs.Scheduler
	set    *listenerSet
	gate   *listenerGate
	// positions is the scheduler's copy of the job positions, closed when
	// the term ends.
	positions *state.Store
}

func (n *clusterNode) config() *config.Config {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg
}

func (n *clusterNode) current() *termWork {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.term
}

func (n *clusterNode) setCurrent(w *termWork) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.term = w
}

// addLeaderWork adds the one actor that campaigns, runs the scheduler and
// listeners for each term won, and campaigns again after a term is lost.
// oklog/run cannot add actors later, so each term runs its own group.
func (n *clusterNode) addLeaderWork(group *run.Group) {
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		for ctx.Err() == nil {
			term, err := n.elector.Campaign(ctx)
			if err != nil {
				if ctx.Err() == nil {
					n.log.Warn("campaign for cluster leadership failed", "err", err)
					_ = wait.For(ctx, campaignRetry)
				}
				continue
			}
			n.log.Info("won cluster leadership", "term", term.Rev)
			n.lead(ctx, term)
		}
		return nil
	}, func(error) { cancel() })
}

// lead runs one term until it is lost or ctx ends, then stops the work
// and gives up the term.
func (n *clusterNode) lead(ctx context.Context, term *cluster.Term) {
	n.store.SetFence(term.Fence)
	defer n.store.ClearFence()
	n.reloadLock.Lock()
	work, err := n.startTerm(term)
	if err == nil {
		n.setCurrent(work)
	}
	n.reloadLock.Unlock()
	if err != nil {
		n.log.Error("start leader work failed, so leadership is given up", "term", term.Rev, "err", err)
		resign(term, n.log)
		_ = wait.For(ctx, campaignRetry)
		return
	}
	var group run.Group
	termCtx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		select {
		case <-term.Lost():
		case <-ctx.Done():
		case <-termCtx.Done():
		}
		return nil
	}, func(error) { cancel() })
	// Listeners first, so they stop during the scheduler's wait for
	// running jobs.
	work.set.add(&group)
	n.addTermScheduler(&group, work)
	_ = group.Run()
	work.gate.stop()
	work.set.close(n.log)
	_ = work.positions.Close()
	n.mu.Lock()
	n.term, n.ranTerm = nil, term.Rev
	n.mu.Unlock()
	if ctx.Err() != nil {
		resign(term, n.log)
		return
	}
	n.log.Warn("leader work stopped after the term was lost", "term", term.Rev, "err", term.Reason())
	term.Close()
}

func resign(term *cluster.Term, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := term.Resign(ctx); err != nil {
		log.Warn("resign cluster leadership failed, so it ends when the lease expires", "term", term.Rev, "err", err)
	}
}

// startTerm takes over from the previous leader: its runs still recorded
// as running are marked interrupted, and the scheduler starts from the
// slots etcd records, so its catch-up covers the gap under each job's
// catch_up policy.
func (n *clusterNode) startTerm(term *cluster.Term) (*termWork, error) {
	cfg, now := n.config(), n.opts.Clock.Now()
	interrupted, err := n.store.RecoverInterrupted(now, nil)
	if err != nil {
		return nil, err
	}
	for _, r := range interrupted {
		n.log.Warn("run was interrupted by the previous leader's end", "job", r.Job, "run", r.ID, "slot", r.Slot)
	}
	positions, err := n.positions(cfg, now)
	if err != nil {
		return nil, err
	}
	runner := jobs.NewRunner(cfg, timedRecorder{n.store, n.metrics}, n.reaper, n.log, n.opts.Clock.Now)
	if cfg.Runner.HTTP != "" {
		runner.SetObserver(n.metrics)
	}
	sched, err := jobs.NewScheduler(cfg, runner, positions, n.opts.Clock, n.log)
	if err != nil {
		_ = positions.Close()
		return nil, err
	}
	set := newListenerSet(cfg, n.store, n.reaper, n.log)
	gate := n.listenerGate(term)
	set.setGate(gate)
	runner.SetPoster(set)
	runner.OnLoadProblem(n.requestRecheck)
	return &termWork{term: term, runner: runner, sched: sched, set: set, gate: gate, positions: positions}, nil
}

// listenerGate returns the gate of a term's listeners: open at once
// after a clean handover, and after listener_handover when the previous
// leader did not resign, since it may be frozen with its connections
// open rather than dead.
func (n *clusterNode) listenerGate(term *cluster.Term) *listenerGate {
	n.mu.Lock()
	ran := n.ranTerm
	n.mu.Unlock()
	handover := term.Handover
	delay := handover.ListenerDelay(n.config().Cluster.ListenerHandover, func(rev int64) bool { return rev == ran })
	if delay > 0 {
		n.log.Warn("previous leader did not resign, so listeners wait for the handover",
			"term", term.Rev, "previous", handover.Previous, "previous_term", handover.PreviousTerm, "listener_handover", delay)
	}
	return newListenerGate(term, delay, n.log)
}

// positions copies each job's position from etcd into a fresh bbolt file
// for the scheduler, which reads positions from a *state.Store. Runs,
// and the slots they claim, go to etcd through the runner, and the slots
// the scheduler skips at catch-up go to the copy until copySkips moves
// them to etcd.
func (n *clusterNode) positions(cfg *config.Config, now time.Time) (*state.Store, error) {
	for _, job := range cfg.Jobs {
		if job.Enabled {
			if _, err := n.store.EnsureJob(job.Name, now); err != nil {
				return nil, err
			}
		}
	}
	jobStates, err := n.store.Jobs()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.Runner.StateDir, "cluster-positions.db")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove old position copy: %w", err)
	}
	local, err := state.Open(path, state.Options{Logger: n.log})
	if err != nil {
		return nil, err
	}
	for _, st := range jobStates {
		err := copyPosition(local, st, now)
		if err != nil {
			_ = local.Close()
			return nil, err
		}
	}
	return local, nil
}

// copyPosition brings the job's position in the copy up to the one in
// etcd, when etcd's is newer.
func copyPosition(local *state.Store, st state.JobState, now time.Time) error {
	copied, err := local.EnsureJob(st.Name, st.FirstSeen)
	if err != nil {
		return err
	}
	if !st.LastSlot.After(copied.LastSlot) {
		return nil
	}
	return local.Skip(st.Name, st.LastSlot, "cluster", "position copied from etcd", now, st.NextRun)
}

// copySkips records in etcd the slots that the scheduler's catch-up
// skipped in its copy of the positions, which happens synchronously in
// Start, so that the next leader does not skip them again.
func (n *clusterNode) copySkips(positions *state.Store) {
	for _, job := range n.config().Jobs {
		runs, err := positions.Runs(job.Name, 1)
		if err != nil || len(runs) == 0 {
			continue
		}
		skip := runs[0]
		if skip.Result != state.ResultSkipped || skip.Trigger != state.TriggerCatchUp {
			continue
		}
		local, _, err := positions.Job(job.Name)
		if err != nil || !local.LastSlot.Equal(skip.Slot) {
			continue
		}
		err = n.store.Skip(job.Name, skip.Slot, skip.Trigger, skip.Error, skip.Start, local.NextRun)
		if errors.Is(err, state.ErrSlotClaimed) {
			// A run of a newer slot was claimed first, so etcd's position
			// is past the skipped slots already and only the record is
			// missing.
			skip.ID = ""
			_, err = n.store.RecordSkipped(skip)
		}
		if err != nil {
			n.log.Error("record skipped slot failed", "job", job.Name, "err", err)
		}
	}
}

// addTermScheduler adds the scheduler of one term. Its interrupt stops
// new runs and stops the running ones within half the lease TTL, or
// shutdown_timeout when shorter, since another node may soon run the
// same jobs.
func (n *clusterNode) addTermScheduler(group *run.Group, work *termWork) {
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		work.sched.Start(ctx)
		n.copySkips(work.positions)
		n.log.Info("scheduler started", "term", work.term.Rev)
		<-ctx.Done()
		return nil
	}, func(error) {
		cancel()
		grace := min(n.config().Runner.ShutdownTimeout, n.config().Cluster.LeaseTTL/2)
		n.log.Info("stopping running jobs", "running", work.runner.Running(), "timeout", grace)
		stopCtx, stop := context.WithTimeout(context.Background(), grace)
		defer stop()
		if n.opts.Force != nil {
			go func() {
				select {
				case <-n.opts.Force:
					work.runner.Kill()
				case <-stopCtx.Done():
				}
			}()
		}
		work.runner.Shutdown(stopCtx)
		if err := work.sched.Stop(); err != nil {
			n.log.Error("stop scheduler failed", "err", err)
		}
		n.log.Info("scheduler stopped", "term", work.term.Rev)
	})
}

// addWatchdog sends WATCHDOG=1 at half the unit's WatchdogSec, on the
// leader only while its scheduler responds, and keeps STATUS= current
// with the node's role.
func (n *clusterNode) addWatchdog(group *run.Group) {
	addHeartbeat(group, n.log, func() (string, error) {
		role := "standby"
		if work := n.current(); work != nil {
			role = fmt.Sprintf("leader (term %d)", work.term.Rev)
			if err := work.sched.Ping(pingTimeout); err != nil {
				return "", err
			}
		}
		return "cluster node " + n.elector.Node() + ": " + role, nil
	})
}
