package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/internal/suggest"
)

// listenerKinds lists the kinds in the order messages name them.
var listenerKinds = []string{KindTwitch, KindDiscord, KindBluesky, KindExec}

// commonListenerKeys are the keys that every kind of listener takes.
var commonListenerKeys = []string{
	"description", "enabled", "env", "env_file", "hook_concurrency",
	"hook_queue", "hook_timeout", "inherit_env", "kind", "log_max_bytes",
	"log_to", "on_event", "stale_after", "working_dir",
}

// kindKeys are the keys that only some kinds take.
var kindKeys = map[string][]string{
	KindTwitch:  {"channels", "commands", "server", "tls", "token", "username"},
	KindDiscord: {"api_url", "channels", "commands", "gateway_url", "token"},
	KindBluesky: {"handle", "host", "password", "poll", "reasons"},
	KindExec:    append([]string{"command", "probe", "stop_grace"}, limitKeys...),
}

// Defaults and limits of the keys that every kind takes.
const (
	defaultHookTimeout     = 30 * time.Second
	defaultHookConcurrency = 2
	maxHookConcurrency     = 64
	defaultHookQueue       = 100
	maxHookQueue           = 100000
	defaultLogMaxBytes     = 64 << 20
	minLogMaxBytes         = 1 << 20
)

const (
	onEventExample = `["python3", "handler.py"]`
	disabledInFile = "enabled = false in the config"
)

// listenerPlan keeps a decoded listener with what the checks against this
// machine need.
type listenerPlan struct {
	listener *Listener
	path     keyPath
	settings jobSettings
	// secrets are the configured tokens and passwords, read once the whole
	// file is valid.
	secrets []secretPlan
	// programs are the first entries of the exec command and of on_event.
	programs   []program
	runnerPath []string
}

// secretPlan is a secret reference and the field that gets its value.
type secretPlan struct {
	value  envValue
	target **Secret
}

func (l *loader) decodeListeners(root table, defaults jobSettings, runner Runner, jobs []*Job) []*Listener {
	listeners, _ := l.subTable(root, "listeners", "[listeners.NAME]")
	var list []*Listener
	for _, name := range listeners.names() {
		t, ok := l.subTable(listeners, name, "[listeners.NAME]")
		if !ok {
			continue
		}
		l.checkListenerName(t, name, jobs)
		list = append(list, l.decodeListener(t, name, defaults, runner))
	}
	return list
}

// checkListenerName reports a name that is not valid or that a job uses
// too. Jobs and listeners share a namespace because CLI commands take
// either by name.
func (l *loader) checkListenerName(t table, name string, jobs []*Job) {
	if !jobNamePattern.MatchString(name) {
		l.report(t.path, `invalid listener name %q: use lowercase letters, digits, "_" and "-", starting with a letter or digit, such as %q`, name, suggestName(name, "listener"))
	} else if len(name) > maxNameLength {
		l.report(t.path, "listener name is %d characters long: keep it to %d", len(name), maxNameLength)
	}
	for _, job := range jobs {
		if job.Name == name {
			l.report(t.path, "name %q is already used by [jobs.%s] %s: rename the listener or the job, because CLI commands take both by name", name, name, l.lines.where(keyPath{"jobs", name}, t.path))
		}
	}
}

func (l *loader) decodeListener(t table, name string, defaults jobSettings, runner Runner) *Listener {
	listener := &Listener{Name: name, Line: l.lines.line(t.path), Enabled: true}
	listener.Kind = l.decodeKind(t)
	l.checkListenerKeys(t, listener.Kind)
	listener.Description, _ = l.stringValue(t, "description", `"Answer chat commands"`)
	if enabled, ok := l.boolValue(t, "enabled"); ok && !enabled {
		listener.disable(disabledInFile)
	}
	plan := &listenerPlan{listener: listener, path: t.path, runnerPath: runner.Path}
	plan.settings = l.decodeProcessSettings(t).over(defaults.processSettings())
	listener.WorkingDir = l.dir
	if plan.settings.workingDir.isSet() {
		listener.WorkingDir = plan.settings.workingDir.value
	}
	listener.EnvFile = plan.settings.envFile.value
	listener.InheritEnv = plan.settings.inheritEnv.value
	listener.Env = map[string]Secret{}
	l.decodeHooks(t, plan)
	if d, ok := l.durationValue(t, "stale_after", time.Second); ok {
		listener.StaleAfter = d
	}
	l.decodeKindKeys(t, plan, runner)
	if listener.Kind == KindTwitch || listener.Kind == KindDiscord {
		listener.Commands = l.decodeChatCommands(t)
	}
	l.listeners = append(l.listeners, plan)
	return listener
}

// disable marks the listener disabled unless it already is, so that the
// first reason wins.
func (listener *Listener) disable(reason string) {
	if listener.Enabled {
		listener.Enabled = false
		listener.DisabledReason = reason
	}
}

// decodeKind returns the listener's kind, or "" when it is missing or
// invalid.
func (l *loader) decodeKind(t table) string {
	if _, ok := t.values["kind"]; !ok {
		l.report(t.path, `missing kind: add kind = "twitch", "discord", "bluesky" or "exec" to [%s]`, t.path)
		return ""
	}
	kind, ok := l.stringValue(t, "kind", `"twitch"`)
	if !ok {
		return ""
	}
	if slices.Contains(listenerKinds, kind) {
		return kind
	}
	if guess := suggest.Closest(kind, listenerKinds); guess != "" {
		l.report(t.key("kind"), `unknown kind %q, did you mean %q? Use "twitch", "discord", "bluesky" or "exec"`, kind, guess)
	} else {
		l.report(t.key("kind"), `unknown kind %q: use "twitch", "discord", "bluesky" or "exec"`, kind)
	}
	return ""
}

// checkListenerKeys reports the keys that a listener of this kind does not
// take. When the kind is unknown, it accepts the keys of every kind.
func (l *loader) checkListenerKeys(t table, kind string) {
	allKeys := slices.Clone(commonListenerKeys)
	for _, kind := range listenerKinds {
		allKeys = append(allKeys, kindKeys[kind]...)
	}
	allKeys = slices.Compact(slices.Sorted(slices.Values(allKeys)))
	if kind == "" {
		l.checkKeys(t, "in ["+t.path.String()+"]", allKeys, nil)
		return
	}
	allowed := slices.Sorted(slices.Values(append(slices.Clone(commonListenerKeys), kindKeys[kind]...)))
	list := strings.Join(allowed, ", ")
	// Only keys that the table sets get a message, since each one lists
	// every key its kind allows.
	rejected := map[string]string{}
	for _, key := range t.names() {
		if slices.Contains(allKeys, key) && !slices.Contains(allowed, key) {
			rejected[key] = fmt.Sprintf("%s is a key of %s listeners, but this listener's kind is %s: the keys allowed for kind %q are %s",
				key, strings.Join(kindsWithKey(key), " and "), kind, kind, list)
		}
	}
	l.checkKeys(t, fmt.Sprintf("in [%s] with kind %q", t.path, kind), allowed, rejected)
}

// kindsWithKey returns the kinds that take key, in listenerKinds order.
func kindsWithKey(key string) []string {
	var kinds []string
	for _, kind := range listenerKinds {
		if slices.Contains(kindKeys[kind], key) {
			kinds = append(kinds, kind)
		}
	}
	return kinds
}

func (l *loader) decodeKindKeys(t table, plan *listenerPlan, runner Runner) {
	switch plan.listener.Kind {
	case KindTwitch:
		l.decodeTwitch(t, plan)
	case KindDiscord:
		l.decodeDiscord(t, plan)
	case KindBluesky:
		l.decodeBluesky(t, plan)
	case KindExec:
		l.decodeExec(t, plan, runner)
	}
}

// decodeHooks reads on_event and the keys that bound hooks and the event
// log.
func (l *loader) decodeHooks(t table, plan *listenerPlan) {
	listener := plan.listener
	listener.OnEvent = l.argvValue(t, "on_event", onEventExample)
	if len(listener.OnEvent) > 0 {
		plan.addProgram(listener.OnEvent[0], t.key("on_event"))
	}
	listener.HookTimeout = defaultHookTimeout
	if d, ok := l.durationValue(t, "hook_timeout", time.Second); ok {
		listener.HookTimeout = d
	}
	listener.HookConcurrency = defaultHookConcurrency
	if n, ok := l.intInRange(t, "hook_concurrency", "2", 1, maxHookConcurrency, "hook runs at once"); ok {
		listener.HookConcurrency = int(n)
	}
	listener.HookQueue = defaultHookQueue
	if n, ok := l.intInRange(t, "hook_queue", "100", 1, maxHookQueue, "waiting events"); ok {
		listener.HookQueue = int(n)
	}
	if file, ok := l.nonEmptyString(t, "log_to", `"var/chat.jsonl"`); ok {
		listener.LogTo = l.resolve(file)
	}
	listener.LogMaxBytes = defaultLogMaxBytes
	if n, ok := l.intValue(t, "log_max_bytes", "67108864"); ok {
		if n < minLogMaxBytes {
			l.report(t.key("log_max_bytes"), "log_max_bytes %d is below the minimum of %d (1 MiB): write a size in bytes such as 67108864 for 64 MiB", n, minLogMaxBytes)
		} else {
			listener.LogMaxBytes = n
		}
	}
}

// addProgram adds a program to check on this machine once the whole file
// is valid.
func (plan *listenerPlan) addProgram(name string, key keyPath) {
	plan.programs = append(plan.programs, program{name: name, key: key, owner: "listener"})
}

// intInRange returns the integer at name when it is between low and high.
// unit names what the number counts, for the message.
func (r *reporter) intInRange(t table, name, example string, low, high int64, unit string) (int64, bool) {
	n, ok := r.intValue(t, name, example)
	if !ok {
		return 0, false
	}
	if n < low || n > high {
		r.report(t.key(name), "%s %d is out of range: keep between %d and %d %s", name, n, low, high, unit)
		return 0, false
	}
	return n, true
}
