package discord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/agent-runner/agent-runner/internal/wait"
	"github.com/agent-runner/agent-runner/listeners"
)

const (
	// handshakeTimeout bounds the TCP, TLS and websocket handshakes.
	handshakeTimeout = 15 * time.Second
	// resumeAttempts is how many times Run tries to resume a lost session
	// before it returns an error, after which the supervisor starts a new
	// session.
	resumeAttempts = 5
)

// timing contains the waits of the gateway session. It is a field of
// Listener so that tests can shorten them.
type timing struct {
	// open bounds one open: the dial, HELLO, IDENTIFY or RESUME, and
	// READY or RESUMED.
	open time.Duration
	// write bounds each write to the gateway connection. A write that
	// does not finish in time, because the gateway stopped reading, ends
	// the connection and Run.
	write time.Duration
	// abandon is how long open waits for discordgo's Open to return
	// after closing its connection, before it gives up on the session.
	abandon time.Duration
	// firstResumeDelay is the wait after the first failed resume. It
	// doubles after each further failure.
	firstResumeDelay time.Duration
	// invalidSessionMin and invalidSessionMax bound the random wait after
	// op 9 INVALID_SESSION, which Discord's documentation sets at 1 to
	// 5 s.
	invalidSessionMin, invalidSessionMax time.Duration
}

var defaultTiming = timing{
	open:              listeners.DefaultConnectTimeout,
	write:             30 * time.Second,
	abandon:           5 * time.Second,
	firstResumeDelay:  time.Second,
	invalidSessionMin: time.Second,
	invalidSessionMax: 5 * time.Second,
}

// errSessionAbandoned is returned when discordgo's Open did not return
// after its connection was closed, which leaves the session locked.
var errSessionAbandoned = errors.New("discordgo's Open did not return after its connection closed")

// connection is the gateway session of one Run.
type connection struct {
	listener   *Listener
	host       listeners.Host
	gatewayURL string
	session    *discordgo.Session
	dialer     *gatewayDialer
	// failed receives the first panic recovered in a handler.
	failed chan error
	// disconnected receives a value when discordgo closes the session
	// after a read error, a missed heartbeat ACK or op 7.
	disconnected chan struct{}
	// established receives a value for READY and RESUMED.
	established chan struct{}
	// stopped is set once Run closes the session, after which handlers
	// deliver nothing.
	stopped atomic.Bool
	// abandoned is set when open gave up on an Open that did not return,
	// whose goroutine still holds the session's lock.
	abandoned bool
	// step is the handshake step that the latest connection reached.
	step atomic.Int32

	mu sync.Mutex
	// selfID is the bot's own user ID, from READY.
	selfID string
	// ended is the error with which the frame filter or the write
	// deadline ended the latest connection, or nil.
	ended error
	// rejected is the status line of the latest upgrade response other
	// than 101, or empty.
	rejected string
}

func newConnection(ctx context.Context, l *Listener, host listeners.Host, gatewayURL string) *connection {
	c := &connection{
		listener:     l,
		host:         host,
		gatewayURL:   gatewayURL,
		failed:       make(chan error, 1),
		disconnected: make(chan struct{}, 1),
		established:  make(chan struct{}, 1),
	}
	c.dialer = &gatewayDialer{
		ctx: ctx, gatewayURL: gatewayURL, writeTimeout: l.timing.write, proxy: l.proxy,
		hooks: filterHooks{ended: c.setEnded, reached: c.setStep, rejected: c.setRejected, closing: c.stopped.Load},
	}
	c.session = c.newGatewaySession(gatewayURL)
	return c
}

// newGatewaySession returns a session with no session ID or sequence
// number, so that its Open sends IDENTIFY. discordgo v0.28.1 has no other
// way to forget a session that the gateway invalidated.
func (c *connection) newGatewaySession(gatewayURL string) *discordgo.Session {
	s := c.listener.newSession(&apiTransport{
		from:    discordgo.EndpointAPI,
		to:      c.listener.apiURL,
		gateway: gatewayURL,
	})
	s.Dialer = c.dialer.websocketDialer(c.host.Log(), gatewayURL)
	s.AddHandler(c.handleReady)
	s.AddHandler(c.handleResumed)
	s.AddHandler(c.handleMessage)
	s.AddHandler(c.handleDisconnect)
	return s
}

// run opens the session and serves it until ctx ends, a handler panics
// or the session cannot be resumed.
func (c *connection) run(ctx context.Context) error {
	defer c.close()
	if err := c.open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// After op 9 the supervisor's first restart, about 1 s later,
		// could come sooner than Discord's documentation allows.
		_ = wait.For(ctx, c.retryDelay(err, 0))
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

// resume reopens a session that discordgo or the frame filter closed,
// which sends RESUME unless the gateway invalidated the session. Other
// failures are retried with backoff up to resumeAttempts times, and the
// errors that endsRun lists end it at once.
//
// The host shows the listener as connecting again, with the last failure,
// from the loss until READY or RESUMED. With the default timing a resume
// ends within about 3 min when every open runs into its 30 s timeout, and
// within 16 s when each fails at once.
func (c *connection) resume(ctx context.Context) error {
	lost := c.takeEnded()
	if errors.Is(lost, errMessageTooLarge) || isWriteTimeout(lost) {
		return fmt.Errorf("serve gateway session: %w", lost)
	}
	if lost != nil {
		c.log().Warn("gateway connection ended, resuming session", "error", lost)
		c.host.Reconnecting(fmt.Errorf("gateway connection ended: %w", lost))
	} else {
		c.log().Warn("gateway connection lost, resuming session")
		c.host.Reconnecting(errors.New("gateway connection lost"))
	}
	if wait.For(ctx, c.retryDelay(lost, 0)) != nil {
		return nil
	}
	delay := c.listener.timing.firstResumeDelay
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
			c.host.Ready()
			return nil
		}
		if endsRun(err) || attempt == resumeAttempts {
			return fmt.Errorf("resume gateway session (attempt %d of %d): %w", attempt, resumeAttempts, err)
		}
		retryIn := c.retryDelay(err, delay)
		c.log().Warn("resume gateway session failed, retrying",
			"attempt", attempt, "retry_in", retryIn, "error", err)
		c.host.Reconnecting(fmt.Errorf("resume gateway session (attempt %d of %d): %w", attempt, resumeAttempts, err))
		if wait.For(ctx, retryIn) != nil {
			return nil
		}
		delay *= 2
	}
}

// endsRun reports whether err from open makes retrying useless within
// this Run: a fatal close code, a message too large for the frame
// filter, which a resumed session would replay, a gateway that stopped
// reading, or an abandoned session.
func endsRun(err error) bool {
	return errors.Is(err, listeners.ErrAuth) ||
		errors.Is(err, errMessageTooLarge) ||
		isWriteTimeout(err) ||
		errors.Is(err, errSessionAbandoned)
}

func isWriteTimeout(err error) bool {
	var timeout *writeTimeoutError
	return errors.As(err, &timeout)
}

// retryDelay returns the wait before the next open after cause: delay,
// or after op 9 a random wait within Discord's 1 to 5 s. After op 9 that
// rules out RESUME it also replaces the session, so that the next open
// sends IDENTIFY.
func (c *connection) retryDelay(cause error, delay time.Duration) time.Duration {
	var invalid *invalidSessionError
	if !errors.As(cause, &invalid) {
		return delay
	}
	if !invalid.resumable {
		c.log().Info("gateway invalidated the session, identifying again")
		c.session = c.newGatewaySession(c.gatewayURL)
	}
	t := c.listener.timing
	return t.invalidSessionMin + rand.N(t.invalidSessionMax-t.invalidSessionMin+1)
}

// open runs discordgo's Open, which blocks without a deadline, and then
// waits for READY or RESUMED, because Open returns without them when the
// reply to IDENTIFY or RESUME is another message. It aborts both when
// ctx ends or timing.open passes.
func (c *connection) open(ctx context.Context) error {
	c.dialer.begin()
	c.setEnded(nil)
	c.step.Store(int32(stepNone))
	select {
	case <-c.established:
	default:
	}
	session := c.session
	done := make(chan error, 1)
	go func() { done <- c.openSession(session) }()

	timer := time.NewTimer(c.listener.timing.open)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			return c.openError(err)
		}
	case <-ctx.Done():
		return c.abort(done, ctx.Err())
	case <-timer.C:
		return c.abort(done, c.timeoutError())
	}
	return c.awaitEstablished(ctx, timer)
}

// openError returns why Open failed, preferring the reason with which the
// frame filter or the write deadline ended the connection to the read or
// write error it caused.
func (c *connection) openError(err error) error {
	if ended := c.takeEnded(); ended != nil {
		return ended
	}
	if status := c.takeRejected(); status != "" && errors.Is(err, websocket.ErrBadHandshake) {
		return fmt.Errorf("open gateway session: %s responded with %q instead of switching to a websocket, so check gateway_url: %w",
			c.gatewayURL, status, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() && c.dialer.filtered && handshakeStep(c.step.Load()) == stepDialed {
		return fmt.Errorf("open gateway session: no %s from %s within %s: %w", c.upgradeStep(), c.gatewayURL, handshakeTimeout, err)
	}
	return classifyOpenError(err)
}

// timeoutError names the gateway and the first message it did not send
// within timing.open. Behind a proxy the frame filter is not in the path,
// so the step is not known.
func (c *connection) timeoutError() error {
	missing := "READY or RESUMED"
	if c.dialer.filtered {
		switch handshakeStep(c.step.Load()) {
		case stepNone:
			missing = "TCP connection"
		case stepDialed:
			missing = c.upgradeStep()
		case stepUpgraded:
			missing = "HELLO"
		}
	}
	return fmt.Errorf("open gateway session: no %s from %s within %s", missing, c.gatewayURL, c.listener.timing.open)
}

// upgradeStep names what follows the TCP connection: the websocket
// upgrade response, after the TLS handshake for wss, which the frame
// filter above TLS cannot tell apart.
func (c *connection) upgradeStep() string {
	if strings.HasPrefix(c.gatewayURL, "wss:") {
		return "TLS handshake or websocket upgrade response"
	}
	return "websocket upgrade response"
}

// setStep records a handshake step of the latest connection.
func (c *connection) setStep(step handshakeStep) {
	c.step.Store(int32(step))
}

// abort closes the connection of a running Open, which makes its blocked
// read fail, and waits up to timing.abandon for Open to return. An Open
// that does not return keeps the session's lock for good, as discordgo
// v0.28.1 did when op 7 arrived during the handshake, so the connection
// gives up on the session and leaves its goroutine behind.
func (c *connection) abort(done <-chan error, cause error) error {
	c.dialer.abort()
	wait := c.listener.timing.abandon
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
		return cause
	case <-timer.C:
	}
	c.abandoned = true
	c.log().Error("gave up on a gateway session whose Open did not return after its connection closed",
		"wait", wait, "error", cause)
	return fmt.Errorf("%w within %s: %w", errSessionAbandoned, wait, cause)
}

// awaitEstablished waits for READY or RESUMED after Open returned. When
// they do not come, it closes the connection and waits for discordgo's
// disconnect event, so that the event does not start a resume later.
func (c *connection) awaitEstablished(ctx context.Context, timer *time.Timer) error {
	select {
	case <-c.established:
		return nil
	default:
	}
	var err error
	select {
	case <-c.established:
		return nil
	case <-c.disconnected:
		if err := c.takeEnded(); err != nil {
			return err
		}
		return errors.New("open gateway session: connection closed before READY or RESUMED")
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = c.timeoutError()
	}
	c.dialer.abort()
	wait := time.NewTimer(c.listener.timing.abandon)
	defer wait.Stop()
	select {
	case <-c.disconnected:
	case <-wait.C:
	}
	return err
}

// openSession runs Open on the calling goroutine, where a panic in
// discordgo's handshake or in a handler it calls can be recovered.
func (c *connection) openSession(session *discordgo.Session) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.panicError("open gateway session", r)
		}
	}()
	return session.Open()
}

// close closes the session with code 1000, which takes about 1 s in
// discordgo v0.28.1. It leaves an abandoned session alone, because Close
// would wait for the lock that the stuck Open holds.
func (c *connection) close() {
	c.stopped.Store(true)
	if c.abandoned {
		return
	}
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
	c.signalEstablished()
	c.host.Ready()
}

func (c *connection) handleResumed(_ *discordgo.Session, _ *discordgo.Resumed) {
	defer c.recoverHandler("RESUMED")
	c.signalEstablished()
	c.host.Ready()
}

func (c *connection) signalEstablished() {
	select {
	case c.established <- struct{}{}:
	default:
	}
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

func (c *connection) setEnded(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = err
}

// takeEnded returns and clears the reason with which the frame filter or
// the write deadline ended the latest connection.
func (c *connection) takeEnded() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.ended
	c.ended = nil
	return err
}

// setRejected records the status line with which the gateway rejected the
// latest upgrade.
func (c *connection) setRejected(status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rejected = status
}

// takeRejected returns and clears the status line that setRejected
// recorded.
func (c *connection) takeRejected() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	status := c.rejected
	c.rejected = ""
	return status
}

func (c *connection) log() *slog.Logger { return c.host.Log() }
