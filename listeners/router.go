package listeners

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
)

// Router takes a listener's events and does what the config asks with
// each: append it to the JSONL log, answer a chat command, and queue it
// for the hook. Deliver never blocks on a hook; events the queue cannot
// take are dropped and counted.
type Router struct {
	cfg     *config.Listener
	log     *slog.Logger
	hooks   *HookRunner
	journal *Journal
	// replier answers commands and hook output; nil when the kind cannot
	// reply.
	replier Replier

	// fence returns why the router must not act for the listener now, or
	// nil; it is nil outside a cluster. action names what is checked.
	fence func(action string) error

	queue chan Event
	// state contains the counters and cooldowns. The router that
	// replaces this one in place shares them, as inherit explains.
	state *routerState

	mu sync.Mutex
	// dropLogged rate-limits the dropped-event warning.
	dropLogged time.Time
	// closing is set once Close or Drain has begun.
	closing bool

	ctx    context.Context
	cancel context.CancelFunc
	// draining, once closed, makes the hook workers exit when the queue
	// is empty.
	draining  chan struct{}
	drainOnce sync.Once
	wg        sync.WaitGroup
	// closed is closed once the workers have exited and the journal is
	// closed.
	closed    chan struct{}
	closeOnce sync.Once
}

// NewRouter returns a router for cfg. hooks runs the on_event command and
// may be nil when there is none; replier may be nil.
func NewRouter(cfg *config.Listener, hooks *HookRunner, journal *Journal, replier Replier, log *slog.Logger) *Router {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		cfg:      cfg,
		log:      log.With("listener", cfg.Name),
		hooks:    hooks,
		journal:  journal,
		replier:  replier,
		queue:    make(chan Event, max(cfg.HookQueue, 1)),
		state:    &routerState{cooldowns: make(map[string]time.Time)},
		ctx:      ctx,
		cancel:   cancel,
		draining: make(chan struct{}),
		closed:   make(chan struct{}),
	}
	if hooks != nil {
		for range max(cfg.HookConcurrency, 1) {
			r.wg.Add(1)
			go r.work()
		}
	}
	return r
}

// Close stops the running hooks and the hook workers, drops the queued
// events, and closes the journal. It may be called more than once and
// during a Drain.
func (r *Router) Close() error {
	r.cancel()
	return r.finish()
}

// Drain runs the hooks of the queued events, then stops the hook workers
// and closes the journal, as Close does. Call it once nothing delivers to
// the router any more, because events delivered after the queue ran
// empty are not handled.
func (r *Router) Drain() error {
	r.drainOnce.Do(func() { close(r.draining) })
	return r.finish()
}

// Closed reports whether Close or Drain has finished.
func (r *Router) Closed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// finish waits for the hook workers to exit, then closes the journal
// once. The file stays open while a router that the journal was handed
// over to, or from, still uses it. Only the call that closes the journal
// returns its error.
func (r *Router) finish() error {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.wg.Wait()
	var err error
	r.closeOnce.Do(func() {
		if r.journal != nil {
			err = r.journal.Close()
		}
		close(r.closed)
	})
	return err
}

// HandOverJournal returns the router's journal for the router that
// replaces this one in place, which must close it like its own. The
// file stays open until both routers have closed, because a delivery
// in progress may still write to it through this router. It returns nil
// when the router has no journal or has begun to close, and the caller
// opens a journal of its own then.
func (r *Router) HandOverJournal() *Journal {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing || r.journal == nil {
		return nil
	}
	r.journal.share()
	return r.journal
}

// routerState is the part of a router that carries over to the router
// that replaces it in place: the counters, the connection time and the
// command cooldowns.
type routerState struct {
	handled  atomic.Uint64
	dropped  atomic.Uint64
	fenced   atomic.Uint64
	lastSeen atomic.Int64
	upSince  atomic.Int64
	// waitingReplies counts the command replies in progress, which
	// maxWaitingReplies caps.
	waitingReplies atomic.Int64

	mu        sync.Mutex
	cooldowns map[string]time.Time
}

// inherit makes the router share the counters, the connection time and
// the command cooldowns of old, which it replaces while the listener
// stays connected, so that status, {uptime} and the cooldowns go on as
// before. Sharing them, rather than copying, keeps the count and the
// cooldown of an event that old still delivers after the swap. The
// caller must call inherit before anything delivers to r.
func (r *Router) inherit(old *Router) {
	state := old.state
	now := time.Now()
	state.mu.Lock()
	for key, until := range state.cooldowns {
		if !until.After(now) {
			delete(state.cooldowns, key)
		}
	}
	state.mu.Unlock()
	r.state = state
}

// SetFence makes the router check fence before it handles an event or
// sends a reply, and drop what fence rejects. A cluster leader sets it
// before the listener starts, so that a node that lost its term does not
// act on events that waited in its sockets.
func (r *Router) SetFence(fence func(action string) error) { r.fence = fence }

// Name returns the listener's name.
func (r *Router) Name() string { return r.cfg.Name }

// allowed reports whether the fence lets action happen, and counts a
// rejection. The fence logs its own rejections.
func (r *Router) allowed(action string) bool {
	if r.fence == nil || r.fence(action) == nil {
		return true
	}
	r.state.fenced.Add(1)
	return false
}

// Deliver routes one event.
func (r *Router) Deliver(ev Event) {
	if !r.allowed("event " + ev.ID) {
		return
	}
	if r.Closed() {
		// A client library can outlive its listener's run.
		r.warnDrop("event arrived after the router closed: dropped", ev)
		return
	}
	ev.Listener, ev.Kind = r.cfg.Name, r.cfg.Kind
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if r.journal != nil {
		err := r.journal.Append(ev)
		switch {
		case errors.Is(err, errJournalClosed):
			// The router closed after the check above.
			r.warnDrop("event arrived after the router closed: dropped", ev)
			return
		case err != nil:
			r.log.Error("append event to log_to file failed", "err", err)
		}
	}
	r.state.handled.Add(1)
	r.state.lastSeen.Store(time.Now().UnixNano())
	r.answerCommand(ev)
	if r.hooks == nil {
		return
	}
	select {
	case r.queue <- ev:
	default:
		r.drop(ev)
	}
}

func (r *Router) drop(ev Event) {
	n := r.state.dropped.Add(1)
	r.warnDrop("hook queue full: event dropped", ev, "queue", cap(r.queue), "dropped_total", n)
}

// warnDrop logs a dropped event at most once per 10 s.
func (r *Router) warnDrop(msg string, ev Event, attrs ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.dropLogged) < 10*time.Second {
		return
	}
	r.dropLogged = time.Now()
	r.log.Warn(msg, append([]any{"event", ev.ID}, attrs...)...)
}

// connected records when the listener last connected, for {uptime}.
func (r *Router) connected(at time.Time) { r.state.upSince.Store(at.UnixNano()) }

func (r *Router) counts() (handled, dropped uint64, last time.Time) {
	if ns := r.state.lastSeen.Load(); ns != 0 {
		last = time.Unix(0, ns).UTC()
	}
	return r.state.handled.Load(), r.state.dropped.Load(), last
}

// fencedCount returns how many events and replies the fence dropped.
func (r *Router) fencedCount() uint64 { return r.state.fenced.Load() }

// work runs hooks for queued events until the router closes, or until
// the queue is empty once the router drains.
func (r *Router) work() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case ev := <-r.queue:
			r.runHook(ev)
		case <-r.draining:
			select {
			case ev := <-r.queue:
				r.runHook(ev)
			default:
				return
			}
		}
	}
}

func (r *Router) runHook(ev Event) {
	reply, err := r.hooks.Run(r.ctx, ev)
	if err != nil && r.ctx.Err() != nil {
		// Close stopped the hook, which is not the hook's failure.
		r.log.Info("hook stopped with its listener", "event", ev.ID, "err", err)
		return
	}
	if err != nil {
		r.log.Error("hook failed", "event", ev.ID, "err", err)
	}
	if reply == "" || r.replier == nil || !r.allowed("hook reply to event "+ev.ID) {
		return
	}
	// NOTE: a process paused between this check and the reply's write
	// sends the reply after it wakes, whatever its term. Closing that
	// window needs a fencing token the platform checks, which no
	// supported platform offers.
	ctx, cancel := context.WithTimeout(r.ctx, replyTimeout)
	defer cancel()
	if err := r.replier.Reply(ctx, ev, reply); err != nil {
		r.log.Error("send hook reply failed", "event", ev.ID, "err", err)
	}
}

// replyTimeout bounds a reply's wait for the platform's send rate limit.
// A reply later than that comes after the chat has moved on, and
// a hook reply holds a hook worker while it waits.
const replyTimeout = 30 * time.Second

// maxWaitingReplies caps the command replies of one listener that wait
// for the platform's send rate limit at once; more are dropped. Each
// waits on a goroutine of its own, and with `cooldown = "0s"` a chat
// flood started one per message: a local server sending a command
// without pause took the daemon to 4.9 GB in 30 s. Twitch's default
// rate limit sends about 20 replies in replyTimeout, so replies past
// the cap would mostly time out anyway.
const maxWaitingReplies = 32

// answerCommand replies to a chat command, once per cooldown per channel.
func (r *Router) answerCommand(ev Event) {
	if r.replier == nil || ev.Type != "message" {
		return
	}
	word, args, _ := strings.Cut(strings.TrimSpace(ev.Text), " ")
	for _, cmd := range r.cfg.Commands {
		if !strings.EqualFold(word, cmd.Trigger) {
			continue
		}
		// The place comes first, so that a dropped reply leaves the
		// cooldown for the next message.
		if r.state.waitingReplies.Add(1) > maxWaitingReplies {
			r.state.waitingReplies.Add(-1)
			r.warnDrop("too many command replies wait for the send rate limit: reply dropped", ev, "waiting", maxWaitingReplies)
			return
		}
		if !r.takeCooldown(cmd, ev.Channel) {
			r.state.waitingReplies.Add(-1)
			return
		}
		text := Render(cmd.Reply, r.fields(ev, args))
		go func() {
			defer r.state.waitingReplies.Add(-1)
			if !r.allowed("command reply to event " + ev.ID) {
				return
			}
			ctx, cancel := context.WithTimeout(r.ctx, replyTimeout)
			defer cancel()
			if err := r.replier.Reply(ctx, ev, text); err != nil {
				r.log.Error("answer chat command failed", "command", cmd.Trigger, "err", err)
			}
		}()
		return
	}
}

func (r *Router) takeCooldown(cmd config.ChatCommand, channel string) bool {
	key := cmd.Trigger + "\x00" + channel
	state := r.state
	state.mu.Lock()
	defer state.mu.Unlock()
	if until, ok := state.cooldowns[key]; ok && time.Now().Before(until) {
		return false
	}
	state.cooldowns[key] = time.Now().Add(cmd.Cooldown)
	return true
}

func (r *Router) fields(ev Event, args string) map[string]string {
	uptime := "unknown"
	if ns := r.state.upSince.Load(); ns != 0 {
		uptime = time.Since(time.Unix(0, ns)).Round(time.Second).String()
	}
	return map[string]string{
		"user":     ev.User,
		"channel":  ev.Channel,
		"text":     ev.Text,
		"args":     strings.TrimSpace(args),
		"uptime":   uptime,
		"listener": ev.Listener,
	}
}

// Render expands {name} in template from fields. It is plain substitution:
// a value is never parsed again, so chat text cannot inject a template or
// reach a shell. Line breaks in values become spaces, so a value cannot
// start a second chat line. Unknown names stay as written.
func Render(template string, fields map[string]string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(template, '{')
		if open < 0 {
			break
		}
		end := strings.IndexByte(template[open:], '}')
		if end < 0 {
			break
		}
		name := template[open+1 : open+end]
		value, ok := fields[name]
		b.WriteString(template[:open])
		if ok {
			b.WriteString(strings.NewReplacer("\r", " ", "\n", " ").Replace(value))
		} else {
			b.WriteString(template[open : open+end+1])
		}
		template = template[open+end+1:]
	}
	b.WriteString(template)
	return b.String()
}

// HookRunner runs a listener's on_event command for one event at a time,
// with the event as JSON on stdin and under the same process rules as
// jobs.
type HookRunner struct {
	cfg *config.Listener
	// redact hides the listener's secrets in logged output and in the
	// reply, which goes to a public chat.
	redact   *process.Redactor
	reaper   *process.Reaper
	owner    string
	path     []string
	grace    time.Duration
	log      *slog.Logger
	sequence atomic.Uint64
}

// NewHookRunner returns a runner for cfg.OnEvent, or nil when it is empty.
// owner is the daemon's process.DaemonMarker, given to every hook.
func NewHookRunner(cfg *config.Listener, reaper *process.Reaper, owner string, path []string, grace time.Duration, log *slog.Logger) *HookRunner {
	if len(cfg.OnEvent) == 0 {
		return nil
	}
	return &HookRunner{cfg: cfg, reaper: reaper, owner: owner, path: path, grace: grace,
		redact: process.NewRedactor(Secrets(cfg)), log: log.With("listener", cfg.Name)}
}

// Secrets returns the listener's secret env values and its token or
// password, keyed by a name for each.
func Secrets(cfg *config.Listener) map[string]config.Secret {
	secrets := map[string]config.Secret{}
	for name, value := range cfg.Env {
		secrets[name] = value
	}
	add := func(name string, secret *config.Secret) {
		if secret != nil {
			secrets[name] = *secret
		}
	}
	if cfg.Twitch != nil {
		add("twitch token", cfg.Twitch.Token)
	}
	if cfg.Discord != nil {
		add("discord token", cfg.Discord.Token)
	}
	if cfg.Bluesky != nil {
		add("bluesky password", cfg.Bluesky.Password)
	}
	return secrets
}

// maxReplyBytes bounds what a hook's stdout may contribute to a reply.
const maxReplyBytes = 16 << 10

// maxHookLogLines caps the stderr lines of one hook run that reach the
// log, as maxLoggedLines in package jobs caps a job run's. Without it, a
// hook that printed 200,000 lines per event wrote 2.3 million log lines
// in 6 s against a local chat server.
//
// NOTE: the cap is per run, so hooks that each print many lines can
// still log up to this many lines per event.
const maxHookLogLines = 100

// Run runs the hook for ev and returns its stdout, trimmed and with the
// listener's secrets redacted, as the reply. A hook that fails or times
// out returns an error and no reply.
func (h *HookRunner) Run(ctx context.Context, ev Event) (string, error) {
	input, err := appendEvent(nil, ev)
	if err != nil {
		return "", fmt.Errorf("encode event: %w", err)
	}
	marker := "AGENT_RUNNER_HOOK_ID=" + h.cfg.Name + "-" + strconv.FormatUint(h.sequence.Add(1), 10)
	env, secrets, err := process.Environment(process.Settings{
		Path: h.path, WorkingDir: h.cfg.WorkingDir, Env: h.cfg.Env,
		EnvFile: h.cfg.EnvFile, InheritEnv: h.cfg.InheritEnv,
	}, []string{marker, h.owner, "AGENT_RUNNER_LISTENER=" + h.cfg.Name, "AGENT_RUNNER_EVENT_ID=" + ev.ID})
	if err != nil {
		return "", err
	}
	// The env file is read for each event, so its secrets join the
	// listener's own for this run only.
	redact := h.redact.With(secrets)
	path, err := process.Resolve(h.cfg.OnEvent[0], h.cfg.WorkingDir, env)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, h.cfg.HookTimeout,
		fmt.Errorf("hook timed out after %s", h.cfg.HookTimeout))
	defer cancel()

	var mu sync.Mutex
	var reply strings.Builder
	logged, dropped := 0, 0
	stderr := redact.Lines(func(line process.Line) {
		mu.Lock()
		full := logged >= maxHookLogLines
		if full {
			dropped++
		} else {
			logged++
		}
		mu.Unlock()
		if full {
			return
		}
		h.log.Info("hook output", "event", ev.ID, "stream", line.Stream, "line", line.Text)
	})
	exit, err := h.reaper.Run(ctx, process.Spec{
		Path: path, Args: h.cfg.OnEvent, Dir: h.cfg.WorkingDir, Env: env,
		Stdin: input, Marker: marker, Grace: h.grace,
	}, func(line process.Line) {
		if line.Stream == "stderr" {
			stderr.Emit(line)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if reply.Len()+len(line.Text) < maxReplyBytes {
			reply.WriteString(line.Text + "\n")
		}
	})
	stderr.Flush()
	mu.Lock()
	defer mu.Unlock()
	if dropped > 0 {
		h.log.Warn("hook output not logged past the line limit", "event", ev.ID, "limit", maxHookLogLines, "dropped", dropped)
	}
	if err != nil {
		return "", err
	}
	if exit.Stopped != nil {
		return "", exit.Stopped
	}
	if exit.Err != nil {
		return "", fmt.Errorf("hook %w", exit.Err)
	}
	return redact.Redact(strings.TrimSpace(reply.String())), nil
}
