package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/listeners/bluesky"
	"github.com/agent-runner/agent-runner/listeners/discord"
	"github.com/agent-runner/agent-runner/listeners/twitch"
	execlistener "github.com/agent-runner/agent-runner/listeners/exec"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// listenerSet is every configured listener: supervisors for the ones that
// run, and fixed health for the disabled and the broken.
type listenerSet struct {
	supervisors map[string]*listeners.Supervisor
	routers     []*listeners.Router
	fixed       map[string]listeners.Health
	order       []string
}

// newListenerSet builds a supervisor per enabled listener. A listener
// that cannot be built is shown as failed, and the others still run.
func newListenerSet(cfg *config.Config, store *state.Store, reaper *process.Reaper, log *slog.Logger) *listenerSet {
	set := &listenerSet{supervisors: map[string]*listeners.Supervisor{}, fixed: map[string]listeners.Health{}}
	for _, lc := range cfg.Listeners {
		set.order = append(set.order, lc.Name)
		health := listeners.Health{Name: lc.Name, Kind: lc.Kind}
		if !lc.Enabled {
			health.State, health.LastError = listeners.StateDisabled, lc.DisabledReason
			set.fixed[lc.Name] = health
			continue
		}
		sup, router, err := newSupervisor(cfg, lc, store, reaper, log)
		if err != nil {
			log.Error("listener cannot run as configured", "listener", lc.Name, "err", err)
			health.State, health.LastError = listeners.StateFailed, err.Error()
			set.fixed[lc.Name] = health
			continue
		}
		set.supervisors[lc.Name] = sup
		set.routers = append(set.routers, router)
	}
	return set
}

func newSupervisor(cfg *config.Config, lc *config.Listener, store *state.Store, reaper *process.Reaper, log *slog.Logger) (*listeners.Supervisor, *listeners.Router, error) {
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
	hooks := listeners.NewHookRunner(lc, reaper, cfg.Runner.Path, cfg.Runner.KillGrace, log)
	router := listeners.NewRouter(lc, hooks, journal, replier, log)
	return listeners.NewSupervisor(lc.Name, lc.Kind, l, router, store.Listener(lc.Name), log), router, nil
}

// newListener builds the listener of one kind.
func newListener(cfg *config.Config, lc *config.Listener, reaper *process.Reaper) (listeners.Listener, error) {
	switch lc.Kind {
	case config.KindExec:
		return execlistener.New(lc, reaper, cfg.Runner.Path, cfg.Runner.KillGrace)
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

// add adds one run-group actor per supervisor. A supervisor returns only
// when its interrupt cancels it.
func (set *listenerSet) add(group *run.Group) {
	for _, name := range set.order {
		sup, ok := set.supervisors[name]
		if !ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		group.Add(func() error { return sup.Run(ctx) }, func(error) { cancel() })
	}
}

// close stops the hook workers and closes the event logs.
func (set *listenerSet) close(log *slog.Logger) {
	for _, router := range set.routers {
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
	sender, ok := sup.Listener().(listeners.Sender)
	if !ok {
		return "", fmt.Errorf("listener %s cannot post messages", name)
	}
	if err := sender.Send(ctx, target, text); err != nil {
		return "", fmt.Errorf("send through %s: %w", name, err)
	}
	return name, nil
}

func (set *listenerSet) find(nameOrKind string) (*listeners.Supervisor, string, error) {
	if sup, ok := set.supervisors[nameOrKind]; ok {
		return sup, nameOrKind, nil
	}
	if h, ok := set.fixed[nameOrKind]; ok {
		return nil, "", fmt.Errorf("listener %s is %s: %s", nameOrKind, h.State, h.LastError)
	}
	var matches []string
	for _, name := range set.order {
		if sup, ok := set.supervisors[name]; ok && sup.Health().Kind == nameOrKind {
			matches = append(matches, name)
		}
	}
	switch len(matches) {
	case 1:
		return set.supervisors[matches[0]], matches[0], nil
	case 0:
		return nil, "", fmt.Errorf("no running listener is named %q or has that kind", nameOrKind)
	default:
		return nil, "", fmt.Errorf("several listeners have kind %s (%s): name one", nameOrKind, strings.Join(matches, ", "))
	}
}

// health returns every listener's health in config order.
func (set *listenerSet) health() []listeners.Health {
	out := make([]listeners.Health, 0, len(set.order))
	for _, name := range set.order {
		if sup, ok := set.supervisors[name]; ok {
			out = append(out, sup.Health())
		} else {
			out = append(out, set.fixed[name])
		}
	}
	return out
}
