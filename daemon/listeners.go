package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/listeners/bluesky"
	"github.com/agent-runner/agent-runner/listeners/discord"
	execlistener "github.com/agent-runner/agent-runner/listeners/exec"
	"github.com/agent-runner/agent-runner/listeners/twitch"
	"github.com/agent-runner/agent-runner/process"
)

// listenerSet is every configured listener: supervisors for the ones that
// run, and fixed health for the disabled and the broken.
//
// An oklog/run group cannot gain actors once it runs, so the listeners of
// the first config get an actor each, and listeners added by a reload run
// in one pool actor that can start supervisors later. A removed listener
// with its own actor is retired: it stops, and its actor idles until
// shutdown.
type listenerSet struct {
	cfg  *config.Config
	pool *pool
	log  *slog.Logger

	mu          sync.Mutex
	supervisors map[string]*listeners.Supervisor
	configs     map[string]*config.Listener
	routers     map[string]*listeners.Router
	fixed       map[string]listeners.Health
	order       []string
	// secrets redact each listener's secrets in its log lines and health.
	secrets map[string]*listenerSecrets
	// retired lists the routers of replaced and removed listeners. Their
	// supervisors drain them once nothing delivers to them any more, and
	// shutdown closes the ones still open.
	retired []*listeners.Router
	// gate holds a cluster leader's listeners back during a handover and
	// fences their actions on its term; nil on a single node.
	gate *listenerGate
	// jobsStopped, when set, closes once the running jobs have stopped.
	// The chat listeners wait for it in a shutdown, since a job may post
	// through them until its last second.
	jobsStopped <-chan struct{}
}

// listenerKVs gives each listener its persistent key-value space:
// cluster.Local for the bbolt store, or the etcd store in a cluster.
type listenerKVs interface {
	Listener(name string) listeners.KV
}

// newListenerSet builds a supervisor per enabled listener. A listener
// that cannot be built is shown as failed, and the others still run.
func newListenerSet(cfg *config.Config, store listenerKVs, reaper *process.Reaper, log *slog.Logger) *listenerSet {
	set := &listenerSet{
		cfg:         cfg,
		pool:        newPool(),
		log:         log,
		supervisors: map[string]*listeners.Supervisor{},
		configs:     map[string]*config.Listener{},
		routers:     map[string]*listeners.Router{},
		fixed:       map[string]listeners.Health{},
		secrets:     map[string]*listenerSecrets{},
	}
	for _, lc := range cfg.Listeners {
		set.order = append(set.order, lc.Name)
		set.configs[lc.Name] = lc
		secrets := &listenerSecrets{}
		set.secrets[lc.Name] = secrets
		sup, router, health := build(cfg, lc, store, reaper, secrets, log)
		if sup == nil {
			set.fixed[lc.Name] = health
			continue
		}
		set.supervisors[lc.Name], set.routers[lc.Name] = sup, router
	}
	return set
}

// build returns a supervisor for lc, or the health to show when lc is
// disabled or cannot run. It adds lc's secrets to secrets, which redacts
// the log lines and health of the listener.
func build(cfg *config.Config, lc *config.Listener, store listenerKVs, reaper *process.Reaper, secrets *listenerSecrets, log *slog.Logger) (*listeners.Supervisor, *listeners.Router, listeners.Health) {
	health := listeners.Health{Name: lc.Name, Kind: lc.Kind}
	if !lc.Enabled {
		health.State, health.LastError = listeners.StateDisabled, lc.DisabledReason
		return nil, nil, health
	}
	secrets.add(lc)
	log = secrets.logger(log)
	l, router, err := newListenerWithRouter(cfg, lc, reaper, log)
	if err != nil {
		log.Error("listener cannot run as configured", "listener", lc.Name, "err", err)
		health.State, health.LastError = listeners.StateFailed, secrets.Redact(err.Error())
		return nil, nil, health
	}
	sup := listeners.NewSupervisor(lc.Name, lc.Kind, l, router, store.Listener(lc.Name), log)
	sup.SetStaleAfter(lc.StaleAfter)
	sup.SetRedact(secrets.Redact)
	return sup, router, health
}

func newListenerWithRouter(cfg *config.Config, lc *config.Listener, reaper *process.Reaper, log *slog.Logger) (listeners.Listener, *listeners.Router, error) {
	if lc.Problem != nil {
		return nil, nil, lc.Problem
	}
	l, err := newListener(cfg, lc, reaper)
	if err != nil {
		return nil, nil, err
	}
	var journal *listeners.Journal
	if lc.LogTo != "" {
		if journal, err = listeners.OpenJournal(lc.LogTo, lc.LogMaxBytes, log); err != nil {
			return nil, nil, err
		}
	}
	replier, _ := l.(listeners.Replier)
	return l, newRouter(cfg, lc, reaper, journal, replier, log), nil
}

// newRouter returns the router of lc, which logs events to journal and
// replies through replier; either may be nil.
func newRouter(cfg *config.Config, lc *config.Listener, reaper *process.Reaper, journal *listeners.Journal, replier listeners.Replier, log *slog.Logger) *listeners.Router {
	hooks := listeners.NewHookRunner(lc, reaper, process.DaemonMarker(cfg.Runner.StateDir), cfg.Runner.Path, cfg.Runner.KillGrace, log)
	return listeners.NewRouter(lc, hooks, journal, replier, log)
}

// newListener builds the listener of one kind.
func newListener(cfg *config.Config, lc *config.Listener, reaper *process.Reaper) (listeners.Listener, error) {
	switch lc.Kind {
	case config.KindExec:
		return execlistener.New(lc, reaper, process.DaemonMarker(cfg.Runner.StateDir), cfg.Runner.Path, cfg.Runner.KillGrace)
	case config.KindBluesky:
		return bluesky.New(lc)
	case config.KindDiscord:
		return discord.New(lc)
	case config.KindTwitch:
		return twitch.New(lc)
	default:
		return nil, fmt.Errorf("listener kind %q is not supported by this build", lc.Kind)
	}
}

// add adds one run-group actor per supervisor of the first config, and
// the pool actor for listeners that reloads add. Their interrupts only
// start the stop, so adding them before the scheduler lets the exec
// listeners stop while the jobs do, and the chat listeners right after.
func (set *listenerSet) add(group *run.Group) {
	set.mu.Lock()
	defer set.mu.Unlock()
	for _, name := range set.order {
		sup, ok := set.supervisors[name]
		if !ok {
			continue
		}
		ctx, cancel := context.WithCancelCause(context.Background())
		gate := set.gate
		group.Add(func() error {
			if !gate.wait(ctx) {
				return nil
			}
			return sup.Run(ctx)
		}, func(error) { set.stopListener(name, cancel) })
	}
	group.Add(set.pool.run, func(error) { set.pool.stop(set.stopListener) })
}

// stopAfterJobs makes the chat listeners' shutdown wait for stopped,
// which the scheduler closes once the running jobs have stopped. It must
// be called before add.
func (set *listenerSet) stopAfterJobs(stopped <-chan struct{}) {
	set.mu.Lock()
	defer set.mu.Unlock()
	set.jobsStopped = stopped
}

// stopListener ends the context of the listener name with its shutdown
// cause. A chat listener, which jobs post through, ends only once the
// jobs have stopped, or after the stop timeout and kill_grace should
// that never happen. It does not block.
func (set *listenerSet) stopListener(name string, stop context.CancelCauseFunc) {
	cause := set.stopCause(name)
	set.mu.Lock()
	jobsStopped, lc := set.jobsStopped, set.configs[name]
	limit := stopTimeout(set.cfg) + set.cfg.Runner.KillGrace
	set.mu.Unlock()
	if jobsStopped == nil || lc == nil || lc.Exec != nil {
		stop(cause)
		return
	}
	go func() {
		timer := time.NewTimer(limit)
		defer timer.Stop()
		select {
		case <-jobsStopped:
		case <-timer.C:
		}
		stop(cause)
	}()
}

// shutdownStop is the cause that ends a listener's context when the
// daemon stops. An exec listener's child gets grace as its time between
// SIGTERM and SIGKILL, in place of its stop_grace.
type shutdownStop struct{ grace time.Duration }

func (c shutdownStop) Error() string        { return "agent-runner shut down" }
func (c shutdownStop) Unwrap() error        { return context.Canceled }
func (c shutdownStop) Grace() time.Duration { return c.grace }

// stopCause returns the shutdown cause for the listener name. Its grace
// is the listener's stop_grace, or kill_grace, cut to the stop timeout,
// so that a child that ignores SIGTERM cannot hold the daemon's stop
// past shutdown_timeout and into systemd's SIGKILL.
func (set *listenerSet) stopCause(name string) error {
	set.mu.Lock()
	defer set.mu.Unlock()
	grace, limit := set.cfg.Runner.KillGrace, stopTimeout(set.cfg)
	lc := set.configs[name]
	if lc != nil && lc.Exec != nil && lc.Exec.StopGrace > 0 {
		grace = lc.Exec.StopGrace
	}
	if grace > limit && lc != nil && lc.Exec != nil {
		set.log.Warn("listener's stop grace cut to fit the stop timeout", "listener", name, "stop_grace", grace, "timeout", limit)
	}
	return shutdownStop{grace: min(grace, limit)}
}

// stopTimeout returns how long a stop may take: shutdown_timeout, and in
// a cluster at most half the lease TTL, as for the leader's jobs.
func stopTimeout(cfg *config.Config) time.Duration {
	if cfg.Cluster != nil {
		return min(cfg.Runner.ShutdownTimeout, cfg.Cluster.LeaseTTL/2)
	}
	return cfg.Runner.ShutdownTimeout
}

// setGate holds the listeners back behind gate and fences their routers
// on it. It must be called before add.
func (set *listenerSet) setGate(gate *listenerGate) {
	set.mu.Lock()
	defer set.mu.Unlock()
	set.gate, set.pool.gate = gate, gate
	for _, router := range set.routers {
		set.fence(router)
	}
}

// fence makes router check the gate before it handles an event or sends
// a reply. The caller holds mu.
func (set *listenerSet) fence(router *listeners.Router) {
	if set.gate != nil && router != nil {
		router.SetFence(func(action string) error { return set.gate.check(router.Name(), action) })
	}
}

// close stops the hook workers and closes the event logs.
func (set *listenerSet) close(log *slog.Logger) {
	set.mu.Lock()
	defer set.mu.Unlock()
	routers := append([]*listeners.Router(nil), set.retired...)
	for _, router := range set.routers {
		routers = append(routers, router)
	}
	for _, router := range routers {
		if err := router.Close(); err != nil {
			log.Error("close listener router failed", "err", err)
		}
	}
}

// Post posts the text of a post job; see send.
func (set *listenerSet) Post(ctx context.Context, via, to, text string) (string, error) {
	return set.send(ctx, via, to, text)
}

// send posts text through the listener named by nameOrKind: a listener
// name, or a kind that exactly one running listener has.
func (set *listenerSet) send(ctx context.Context, nameOrKind, target, text string) (string, error) {
	sup, name, err := set.find(nameOrKind)
	if err != nil {
		return "", err
	}
	if err := set.gate.check(name, "send"); err != nil {
		return "", fmt.Errorf("send through %s: %w", name, err)
	}
	if target == "" {
		target = set.defaultTarget(name)
	}
	sender, ok := sup.Listener().(listeners.Sender)
	if !ok {
		return "", fmt.Errorf("listener %s cannot post messages: only twitch, discord and bluesky listeners post, so send through one of those", name)
	}
	if err := sender.Send(ctx, target, text); err != nil {
		return "", fmt.Errorf("send through %s: %w", name, err)
	}
	return name, nil
}

// defaultTarget returns the target that the running config of listener
// name posts to when none is given, or "" when it has none.
func (set *listenerSet) defaultTarget(name string) string {
	set.mu.Lock()
	defer set.mu.Unlock()
	if lc, ok := set.configs[name]; ok {
		if target, ok := lc.DefaultTarget(); ok {
			return target
		}
	}
	return ""
}

func (set *listenerSet) find(nameOrKind string) (*listeners.Supervisor, string, error) {
	set.mu.Lock()
	defer set.mu.Unlock()
	if sup, ok := set.supervisors[nameOrKind]; ok {
		return sup, nameOrKind, nil
	}
	if h, ok := set.fixed[nameOrKind]; ok {
		return nil, "", fmt.Errorf("listener %s is %s: %s", nameOrKind, h.State, h.LastError)
	}
	var matches []string
	for _, name := range set.order {
		if lc, ok := set.configs[name]; ok && lc.Kind == nameOrKind && set.supervisors[name] != nil {
			matches = append(matches, name)
		}
	}
	switch len(matches) {
	case 1:
		return set.supervisors[matches[0]], matches[0], nil
	case 0:
		for _, name := range set.order {
			if h, ok := set.fixed[name]; ok && set.configs[name] != nil && set.configs[name].Kind == nameOrKind {
				return nil, "", fmt.Errorf("no running listener has kind %s: listener %s is %s: %s", nameOrKind, name, h.State, h.LastError)
			}
		}
		return nil, "", fmt.Errorf("no listener is named %q or has that kind; %s", nameOrKind, set.describeLocked())
	default:
		return nil, "", fmt.Errorf("several listeners have kind %s (%s): name one", nameOrKind, strings.Join(matches, ", "))
	}
}

// describeLocked names the configured listeners and their kinds, for an
// error about a listener that is not there. The caller holds mu.
func (set *listenerSet) describeLocked() string {
	if len(set.order) == 0 {
		return "the config has no listeners"
	}
	names := make([]string, 0, len(set.order))
	for _, name := range set.order {
		if lc, ok := set.configs[name]; ok {
			names = append(names, name+" ("+lc.Kind+")")
		}
	}
	return "the config has " + strings.Join(names, ", ")
}

// health returns every listener's health in config order.
func (set *listenerSet) health() []listeners.Health {
	set.mu.Lock()
	defer set.mu.Unlock()
	out := make([]listeners.Health, 0, len(set.order))
	until, waiting := set.gate.waiting()
	for _, name := range set.order {
		if sup, ok := set.supervisors[name]; ok && waiting {
			h := sup.Health()
			h.State, h.LastError = listeners.StateWaiting, set.gate.waitReason(until)
			out = append(out, h)
		} else if ok {
			out = append(out, sup.Health())
		} else {
			out = append(out, set.fixed[name])
		}
	}
	return out
}

// pool runs supervisors that were added after the run group started.
type pool struct {
	// gate holds supervisors back during a cluster handover; nil lets
	// them start at once.
	gate   *listenerGate
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// stops ends each started supervisor's context, by listener name.
	stops []namedStop
	// stopped is set by stop. A reload can still add a listener while the
	// daemon waits for its jobs to stop, and that one must not start.
	stopped bool
}

type namedStop struct {
	name string
	sup  *listeners.Supervisor
	stop context.CancelCauseFunc
}

func newPool() *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{ctx: ctx, cancel: cancel}
}

func (p *pool) start(name string, sup *listeners.Supervisor) {
	// Not below p.ctx, so that stop can end each supervisor at the time
	// its kind of listener needs.
	ctx, stop := context.WithCancelCause(context.Background())
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		stop(nil)
		return
	}
	p.stops = append(p.stops, namedStop{name, sup, stop})
	// Under mu, so that run's Wait, which follows stop, counts it.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if p.gate.wait(ctx) {
			_ = sup.Run(ctx)
		}
	}()
}

// errRetired ends the context of a supervisor whose listener a reload
// removed. The supervisor already stopped the listener, and its run
// would otherwise idle until shutdown, one goroutine per removal.
var errRetired = errors.New("listener removed by a reload")

// end ends the goroutine of a retired supervisor that the pool started,
// and removes its stop entry. Supervisors of the first config are run-group actors,
// which cannot leave the group, and are not in the pool.
func (p *pool) end(sup *listeners.Supervisor) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range p.stops {
		if s.sup == sup {
			s.stop(errRetired)
			p.stops = slices.Delete(p.stops, i, i+1)
			return
		}
	}
}

// run is the pool's actor: it returns once stop was called and every
// supervisor it started has returned.
func (p *pool) run() error {
	<-p.ctx.Done()
	p.wg.Wait()
	return nil
}

// stop hands every supervisor's stop to stopOne, which ends its context
// now or later. It does not hold mu while it calls stopOne, because the
// listener set's lock is taken before mu in start.
func (p *pool) stop(stopOne func(name string, stop context.CancelCauseFunc)) {
	p.mu.Lock()
	p.stopped = true
	stops := slices.Clone(p.stops)
	p.mu.Unlock()
	for _, s := range stops {
		stopOne(s.name, s.stop)
	}
	p.cancel()
}
