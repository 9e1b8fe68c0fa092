package daemon

import (
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/logging"
	"github.com/agent-runner/agent-runner/process"
)

// listenerUpdate is the kind of change a reload makes to a listener.
type listenerUpdate int

const (
	listenerUnchanged listenerUpdate = iota
	// listenerInPlace is a change of settings that only the router and
	// the hooks use. The running listener gets a new router and stays
	// connected.
	listenerInPlace
	// listenerRestart is a change of a setting that the connection or an
	// exec listener's child uses. The listener restarts with the new
	// config.
	listenerRestart
)

// classifyListener returns how a reload applies next, the new config of
// the listener whose running config is old.
func classifyListener(old, next *config.Listener) listenerUpdate {
	switch {
	case sameListener(old, next):
		return listenerUnchanged
	case sameListener(connectionSettings(old), connectionSettings(next)):
		return listenerInPlace
	default:
		return listenerRestart
	}
}

// connectionSettings returns a copy of lc without the settings that only
// its router and hooks use. Every other field counts as used by the
// connection, so a field added later restarts the listener until it is
// listed here.
func connectionSettings(lc *config.Listener) *config.Listener {
	c := *lc
	c.Description = ""
	c.Commands, c.OnEvent = nil, nil
	c.HookTimeout, c.HookConcurrency, c.HookQueue = 0, 0, 0
	c.LogTo, c.LogMaxBytes, c.StaleAfter = "", 0, 0
	if c.Exec == nil {
		// A chat listener's process settings apply to its hooks alone,
		// while an exec listener's child uses them too.
		c.WorkingDir, c.Env, c.EnvFile, c.InheritEnv = "", nil, "", nil
	}
	return &c
}

// sameListener compares two versions of a listener's config, ignoring
// where it sits in the file. Secrets compare by value through their
// pointers.
func sameListener(a, b *config.Listener) bool {
	x, y := *a, *b
	x.Line, y.Line = 0, 0
	return reflect.DeepEqual(x, y)
}

// listenerChanges counts what a reload did to the listeners, and names
// the changed ones.
type listenerChanges struct {
	added, removed     int
	restarted, inPlace []string
}

func (c listenerChanges) String() string {
	return fmt.Sprintf("listeners: %d added, %d removed, %d restarted%s, %d updated in place%s",
		c.added, c.removed, len(c.restarted), nameList(c.restarted), len(c.inPlace), nameList(c.inPlace))
}

// nameList returns " (a, b)" for names, or "" when there are none.
func nameList(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return " (" + strings.Join(names, ", ") + ")"
}

// apply brings the listeners in line with a reloaded config. A listener
// whose config is unchanged keeps its connection, and so does one whose
// changes only its router applies, because it gets a new router in
// place. A listener whose connection settings changed restarts with the
// new config, an added one starts in the pool, and a removed one stops.
// It returns a one-line summary that names the restarted listeners and
// the ones updated in place.
func (set *listenerSet) apply(cfg *config.Config, store listenerKVs, reaper *process.Reaper, log *slog.Logger) string {
	set.mu.Lock()
	defer set.mu.Unlock()
	var changes listenerChanges
	wanted := make(map[string]bool)
	var order []string
	for _, lc := range cfg.Listeners {
		wanted[lc.Name] = true
		order = append(order, lc.Name)
		old, existed := set.configs[lc.Name]
		if !existed {
			changes.added++
			set.configs[lc.Name] = lc
			set.replace(cfg, lc, store, reaper, log)
			continue
		}
		update := classifyListener(old, lc)
		if update == listenerUnchanged {
			continue
		}
		set.configs[lc.Name] = lc
		if update == listenerInPlace && set.update(cfg, old, lc, reaper, log) {
			changes.inPlace = append(changes.inPlace, lc.Name)
			continue
		}
		changes.restarted = append(changes.restarted, lc.Name)
		set.replace(cfg, lc, store, reaper, log)
	}
	for _, name := range set.order {
		if !wanted[name] {
			changes.removed++
			set.remove(name)
		}
	}
	set.order, set.cfg = order, cfg
	return changes.String()
}

// update gives the running listener of next a router built from next,
// and keeps its connection open. A log_to file at the same path passes
// from the old router to the new one, so events stay in order and none
// is written after the file closed. update returns false, with nothing
// changed, when the listener does not run or the router cannot be built;
// the caller restarts it then. The caller holds mu.
func (set *listenerSet) update(cfg *config.Config, old, next *config.Listener, reaper *process.Reaper, log *slog.Logger) bool {
	sup, running := set.supervisors[next.Name]
	current := set.routers[next.Name]
	if !running || current == nil {
		return false
	}
	secrets := set.secretsOf(next.Name)
	secrets.add(next)
	log = secrets.logger(log)

	var journal *listeners.Journal
	if next.LogTo != "" && next.LogTo == old.LogTo {
		journal = current.HandOverJournal()
	}
	if journal != nil {
		journal.SetMaxBytes(next.LogMaxBytes)
	} else if next.LogTo != "" {
		// NOTE: this open runs with mu held, so an open that hangs on a
		// stuck disk at the new path holds up status until it returns.
		var err error
		if journal, err = listeners.OpenJournal(next.LogTo, next.LogMaxBytes, log); err != nil {
			log.Error("open the changed log_to file failed, so the listener restarts", "listener", next.Name, "path", next.LogTo, "err", err)
			return false
		}
	}
	replier, _ := sup.Listener().(listeners.Replier)
	router := newRouter(cfg, next, reaper, journal, replier, log)
	set.fence(router)
	set.keepRetired(sup.Update(router))
	sup.SetStaleAfter(next.StaleAfter)
	set.routers[next.Name] = router
	log.Info("listener updated in place with its connection kept open", "listener", next.Name)
	return true
}

// replace installs the listener of lc, reusing the existing supervisor
// when there is one. The caller holds mu.
func (set *listenerSet) replace(cfg *config.Config, lc *config.Listener, store listenerKVs, reaper *process.Reaper, log *slog.Logger) {
	delete(set.fixed, lc.Name)
	sup, router, health := build(cfg, lc, store, reaper, set.secretsOf(lc.Name), log)
	set.fence(router)
	existing, running := set.supervisors[lc.Name]
	switch {
	case sup == nil && running:
		existing.Retire()
		set.pool.end(existing)
		set.retireRouter(lc.Name)
		delete(set.supervisors, lc.Name)
		set.fixed[lc.Name] = health
	case sup == nil:
		set.fixed[lc.Name] = health
	case running:
		l := sup.Listener()
		old := existing.Replace(l, router)
		existing.SetStaleAfter(lc.StaleAfter)
		set.keepRetired(old)
		set.routers[lc.Name] = router
		log.Info("listener restarting with its changed config", "listener", lc.Name)
	default:
		set.supervisors[lc.Name], set.routers[lc.Name] = sup, router
		set.pool.start(lc.Name, sup)
		log.Info("listener added", "listener", lc.Name)
	}
}

// secretsOf returns the secrets of the listener name, creating them for
// a new listener. The caller holds mu.
func (set *listenerSet) secretsOf(name string) *listenerSecrets {
	secrets, ok := set.secrets[name]
	if !ok {
		secrets = &listenerSecrets{}
		set.secrets[name] = secrets
	}
	return secrets
}

// remove stops a listener the reloaded config no longer has. The caller
// holds mu.
func (set *listenerSet) remove(name string) {
	if sup, ok := set.supervisors[name]; ok {
		sup.Retire()
		set.pool.end(sup)
		set.retireRouter(name)
	}
	delete(set.supervisors, name)
	delete(set.fixed, name)
	delete(set.configs, name)
	delete(set.secrets, name)
}

func (set *listenerSet) retireRouter(name string) {
	if router, ok := set.routers[name]; ok {
		set.keepRetired(router)
		delete(set.routers, name)
	}
}

// keepRetired adds router to the retired list and drops the routers whose
// drain has finished. The caller holds mu.
func (set *listenerSet) keepRetired(router *listeners.Router) {
	set.retired = slices.DeleteFunc(set.retired, (*listeners.Router).Closed)
	set.retired = append(set.retired, router)
}

// listenerSecrets redacts a listener's token or password and its secret
// env values in its log lines and health. A server may echo the
// credential it was sent, as in "Login authentication failed for
// TOKEN" or an error body, and the listener's log lines and health show
// the server's messages. The supervisor keeps the logger and the redact
// function it was built with across reloads, so a reload adds the new
// config's secrets here. Earlier secrets stay, because the connection or
// a hook of the earlier config may still log one while it ends.
type listenerSecrets struct {
	mu sync.Mutex
	// values holds every secret added, keyed by its value and source.
	values   map[string]config.Secret
	redactor atomic.Pointer[process.Redactor]
}

// add adds the secrets of lc.
func (s *listenerSecrets) add(lc *config.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]config.Secret{}
	}
	for name, secret := range listeners.Secrets(lc) {
		// The key drops the name, so an inline value is kept here only
		// when its name makes it a secret, as NewRedactor would decide.
		if secret.Source != "inline" || config.NamedSecret(name, secret.Reveal()) {
			s.values[secret.Reveal()+"\x00"+secret.Source] = secret
		}
	}
	s.redactor.Store(process.NewRedactor(nil, slices.Collect(maps.Values(s.values))...))
}

// Redact replaces every secret added so far in text.
func (s *listenerSecrets) Redact(text string) string {
	return s.redactor.Load().Redact(text)
}

// logger returns log with every secret added, now or later, redacted.
func (s *listenerSecrets) logger(log *slog.Logger) *slog.Logger {
	return slog.New(logging.NewRedacting(log.Handler(), s.Redact))
}
