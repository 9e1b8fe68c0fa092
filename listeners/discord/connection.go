package discord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/agent-runner/agent-runner/listeners"
)

// Timing of the gateway session.
const (
	// openTimeout bounds one Open: the dial, HELLO, IDENTIFY or RESUME,
	// and READY or RESUMED.
	openTimeout = 30 * time.Second
	// handshakeTimeout bounds the TCP, TLS and websocket handshakes.
	handshakeTimeout = 15 * time.Second
	// resumeAttempts is how many times Run tries to resume a lost session
	// before it returns an error, after which the supervisor starts a new
	// session.
	resumeAttempts = 5
	// firstResumeDelay is the wait after the first failed resume. It
	// doubles after each further failure.
	firstResumeDelay = time.Second
)

// connection is the gateway session of one Run.
type connection struct {
	listener *Listener
	host     listeners.Host
	session  *discordgo.Session
	dialer   *gatewayDialer
	// failed receives the first panic recovered in a handler.
	failed chan error
	// disconnected receives a value when discordgo closes the session
	// after a read error, a missed heartbeat ACK or op 7.
	disconnected chan struct{}
	// stopped is set once Run closes the session, after which handlers
	// deliver nothing.
	stopped atomic.Bool

	mu sync.Mutex
	// selfID is the bot's own user ID, from READY.
	selfID string
}

func newConnection(ctx context.Context, l *Listener, host listeners.Host, gatewayURL string) *connection {
	c := &connection{
		listener:     l,
		host:         host,
		dialer:       &gatewayDialer{ctx: ctx},
		failed:       make(chan error, 1),
		disconnected: make(chan struct{}, 1),
	}
	c.session = l.newSession(&apiTransport{
		from:    discordgo.EndpointAPI,
		to:      l.apiURL,
		gateway: gatewayURL,
	})
	c.session.Dialer = c.dialer.websocketDialer(host.Log(), gatewayURL)
	c.session.AddHandler(c.handleReady)
	c.session.AddHandler(c.handleMessage)
	c.session.AddHandler(c.handleDisconnect)
	return c
}

// run opens the session and serves it until ctx ends, a handler panics
// or the session cannot be resumed.
func (c *connection) run(ctx context.Context) error {
	defer c.close()
	if err := c.open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("connect to gateway: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			c.log().Info("stopping gateway session")
			return nil
		case err := <-c.failed:
			return err
		case <-c.disconnected:
			if err := c.resume(ctx); err != nil {
				return err
			}
		}
	}
}

// resume reopens a session that discordgo closed, which sends RESUME.
// Fatal close codes end it at once, and other failures are retried with
// backoff up to resumeAttempts times.
func (c *connection) resume(ctx context.Context) error {
	c.log().Warn("gateway connection lost, resuming session")
	delay := firstResumeDelay
	for attempt := 1; ; attempt++ {
		err := c.open(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			c.log().Info("resumed gateway session", "attempt", attempt)
			return nil
		}
		// A second disconnect signal for one loss, such as from a missed
		// heartbeat ACK and a read error, can arrive after the session is
		// open again.
		if errors.Is(err, discordgo.ErrWSAlreadyOpen) {
			return nil
		}
		if errors.Is(err, listeners.ErrAuth) || attempt == resumeAttempts {
			return fmt.Errorf("resume gateway session (attempt %d of %d): %w", attempt, resumeAttempts, err)
		}
		c.log().Warn("resume gateway session failed, retrying",
			"attempt", attempt, "retry_in", delay, "error", err)
		if sleepContext(ctx, delay) != nil {
			return nil
		}
		delay *= 2
	}
}

// open runs discordgo's Open, which blocks without a deadline, and
// aborts it when ctx ends or openTimeout passes.
func (c *connection) open(ctx context.Context) error {
	c.dialer.begin()
	done := make(chan error, 1)
	go func() { done <- c.openSession() }()

	timer := time.NewTimer(openTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return classifyOpenError(err)
	case <-ctx.Done():
		c.dialer.abort()
		<-done
		return ctx.Err()
	case <-timer.C:
		c.dialer.abort()
		<-done
		return fmt.Errorf("open gateway session: no READY or RESUMED within %s", openTimeout)
	}
}

// openSession runs Open on the calling goroutine, where a panic in
// discordgo's handshake or in a handler it calls can be recovered.
func (c *connection) openSession() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.panicError("open gateway session", r)
		}
	}()
	return c.session.Open()
}

// close closes the session with code 1000, which takes about 1 s in
// discordgo v0.28.1.
func (c *connection) close() {
	c.stopped.Store(true)
	if err := c.session.Close(); err != nil {
		c.log().Warn("close gateway session failed", "error", err)
	}
}

func (c *connection) handleReady(_ *discordgo.Session, r *discordgo.Ready) {
	defer c.recoverHandler("READY")
	if r.User == nil {
		c.log().Warn("READY has no user, so the bot's own messages are not filtered out",
			"session_id", r.SessionID)
	} else {
		c.setSelfID(r.User.ID)
		c.log().Info("connected to gateway",
			"user", r.User.Username, "user_id", r.User.ID, "session_id", r.SessionID)
	}
	c.host.Ready()
}

func (c *connection) handleMessage(_ *discordgo.Session, m *discordgo.MessageCreate) {
	defer c.recoverHandler("MESSAGE_CREATE")
	if c.stopped.Load() || m.Message == nil || m.Author == nil {
		return
	}
	if m.Author.ID == c.getSelfID() || !c.listener.listensTo(m.ChannelID) {
		return
	}
	c.host.Deliver(c.listener.event(m.Message))
}

func (c *connection) handleDisconnect(_ *discordgo.Session, _ *discordgo.Disconnect) {
	defer c.recoverHandler("disconnect")
	if c.stopped.Load() {
		return
	}
	select {
	case c.disconnected <- struct{}{}:
	default:
	}
}

// recoverHandler turns a panic in a handler into an error that ends Run,
// because discordgo runs handlers on its own goroutines, where a panic
// would end the process.
func (c *connection) recoverHandler(event string) {
	r := recover()
	if r == nil {
		return
	}
	err := c.panicError("handle "+event+" event", r)
	select {
	case c.failed <- err:
	default:
	}
}

func (c *connection) panicError(operation string, r any) error {
	c.log().Error("recovered panic", "operation", operation, "panic", r,
		"stack", string(debug.Stack()))
	return fmt.Errorf("%s: panic: %v", operation, r)
}

func (c *connection) setSelfID(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.selfID = id
}

func (c *connection) getSelfID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.selfID
}

func (c *connection) log() *slog.Logger { return c.host.Log() }

func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
