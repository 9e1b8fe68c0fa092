package twitch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	irc "github.com/gempir/go-twitch-irc/v4"

	"github.com/agent-runner/agent-runner/listeners"
)

// loginFailures are the NOTICE texts on channel "*" that mean the server
// rejected the login. handleNoticeMessage in go-twitch-irc's client.go
// ends Connect on the same four.
var loginFailures = map[string]bool{
	"Login authentication failed": true,
	"Improperly formatted auth":   true,
	"Invalid NICK":                true,
	"Login unsuccessful":          true,
}

// session is one connection: a go-twitch-irc client, the relay it talks
// through, and the first reason the connection ended.
type session struct {
	listener *Listener
	host     listeners.Host
	log      *slog.Logger
	client   *irc.Client
	relay    *relay

	// stop is closed once the session starts shutting down.
	stop     chan struct{}
	stopOnce sync.Once
	// welcomed is closed once go-twitch-irc has handled the welcome.
	welcomed    chan struct{}
	welcomeOnce sync.Once
	// welcomeWaited is set once a chat event waited for the welcome.
	welcomeWaited bool

	mu    sync.Mutex
	cause error
}

// dial connects to the server and prepares a session whose client talks
// to it through a new relay.
func (l *Listener) dial(ctx context.Context, host listeners.Host, connectBy time.Time) (*session, error) {
	upstream, err := l.dialServer(ctx, connectBy)
	if err != nil {
		return nil, err
	}
	s := &session{
		listener: l,
		host:     host,
		log:      host.Log().With("server", l.server),
		stop:     make(chan struct{}),
		welcomed: make(chan struct{}),
	}
	s.relay, err = newRelay(upstream, l.server, l.idleTimeout(), l.writeTimeout(), s.log, relayHooks{
		fail: s.fail, ending: s.endingCause, name: l.name, deliver: s.deliver,
	})
	if err != nil {
		upstream.Close()
		return nil, err
	}
	s.client = s.newClient(s.relay.addr())
	return s, nil
}

// dialServer opens the TCP connection to the server, with TLS when the
// config sets tls, and fails when either is not done by connectBy.
func (l *Listener) dialServer(ctx context.Context, connectBy time.Time) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(ctx, connectBy)
	defer cancel()
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := dialer.DialContext(ctx, "tcp", l.server)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", l.server, l.connectError(ctx, err, "no TCP connection"))
	}
	if !l.tls {
		return conn, nil
	}
	host, _, _ := net.SplitHostPort(l.server)
	tlsConn := tls.Client(conn, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, RootCAs: l.rootCAs})
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", l.server, l.connectError(ctx, err, "no response"))
	}
	return tlsConn, nil
}

// connectError returns err, or a timeout error that names what was
// missing when the connect deadline of ctx ended the step.
func (l *Listener) connectError(ctx context.Context, err error, missing string) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s within %s: %w", missing, l.connectTimeout(), err)
}

func (l *Listener) connectTimeout() time.Duration {
	if l.ConnectTimeout <= 0 {
		return listeners.DefaultConnectTimeout
	}
	return l.ConnectTimeout
}

func (l *Listener) writeTimeout() time.Duration {
	if l.WriteTimeout <= 0 {
		return DefaultWriteTimeout
	}
	return l.WriteTimeout
}

func (l *Listener) idleTimeout() time.Duration {
	if l.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return l.IdleTimeout
}

// newClient returns a client that connects to addr, the relay, and joins
// the configured channels once the server welcomes it.
func (s *session) newClient(addr string) *irc.Client {
	l := s.listener
	var client *irc.Client
	if l.anonymous() {
		client = irc.NewAnonymousClient()
	} else {
		client = irc.NewClient(l.username, l.password())
	}
	client.IrcAddress = addr
	client.TLS = false
	client.SendPings = true
	client.IdlePingInterval = l.idleTimeout() / 3
	// A PongTimeout as long as the idle timeout lets the relay notice a
	// stall first, so Run can report it as one. A comment in NewClient
	// requires IdlePingInterval > PongTimeout, but startPinger in
	// client.go waits for the two one after the other and works either
	// way.
	client.PongTimeout = l.idleTimeout()
	client.SetJoinRateLimiter(newJoinLimiter(l.JoinLimit, l.JoinWindow, s.stop))
	// Join before Connect only records the channels, and initialJoins
	// sends them after the 001 welcome of the connection.
	client.Join(l.channels...)

	client.OnConnect(s.onConnect)
	client.OnNoticeMessage(s.onNotice)
	client.OnReconnectMessage(s.onReconnect)
	if l.prepareClient != nil {
		l.prepareClient(client)
	}
	return client
}

// run serves the session until the connection ends or ctx ends. A
// session without the server's welcome at connectBy fails.
func (s *session) run(ctx context.Context, connectBy time.Time) error {
	s.relay.start()
	done := make(chan error, 1)
	go func() { done <- s.connect() }()
	deadline := time.AfterFunc(time.Until(connectBy), s.failUnwelcomed)
	defer deadline.Stop()

	var err error
	select {
	case err = <-done:
		// The end of the connection, not the deadline, is the cause.
		deadline.Stop()
		s.shutdown()
		s.relay.finish()
	case <-ctx.Done():
		s.shutdown()
		err = s.wait(done)
	case <-s.stop:
		err = s.wait(done)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.result(err)
}

// connect runs the client's Connect and turns a panic in its parser into
// the session's failure.
func (s *session) connect() (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("recovered panic in go-twitch-irc", "err", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("read from %s: go-twitch-irc panicked on a line from the server: %v", s.listener.server, v)
			s.fail(err)
		}
	}()
	return s.client.Connect()
}

// failUnwelcomed ends the session unless go-twitch-irc has handled the
// server's 001 welcome, after which it joins the channels and reports
// ready.
func (s *session) failUnwelcomed() {
	select {
	case <-s.welcomed:
		return
	default:
	}
	s.fail(fmt.Errorf("log in to %s: no welcome (IRC 001 from tmi.twitch.tv) within %s of the dial; check that the server is a Twitch chat server",
		s.listener.server, s.listener.connectTimeout()))
}

// wait waits up to stopGrace for Connect to return after shutdown.
func (s *session) wait(done <-chan error) error {
	timer := time.NewTimer(stopGrace)
	defer timer.Stop()
	select {
	case err := <-done:
		s.relay.finish()
		return err
	case <-timer.C:
		s.log.Warn("go-twitch-irc did not stop; leaving it to finish in the background", "waited", stopGrace)
		// The relay must keep its port until Connect returns, so that a
		// late redial cannot reach another process that took the port.
		go func() {
			<-done
			s.relay.finish()
		}()
		return fmt.Errorf("stop go-twitch-irc: still running %s after the connection to %s ended", stopGrace, s.listener.server)
	}
}

// result returns the error Run reports: the first recorded cause, or
// else one made from Connect's error.
func (s *session) result(err error) error {
	s.mu.Lock()
	cause := s.cause
	s.mu.Unlock()
	switch {
	case cause != nil:
		return cause
	case s.relay.rejectedAny():
		return fmt.Errorf("connect go-twitch-irc to the relay at %s: another connection reached it first, maybe from another local process", s.relay.addr())
	case errors.Is(err, irc.ErrLoginAuthenticationFailed):
		return fmt.Errorf("log in to %s as %s: %w", s.listener.server, s.listener.loginName(), listeners.ErrAuth)
	case err == nil:
		return fmt.Errorf("connection to %s ended", s.listener.server)
	}
	return fmt.Errorf("connection to %s: %w", s.listener.server, err)
}

// fail records why the connection ended, unless a reason is already
// recorded, and shuts the session down.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.cause == nil {
		s.cause = err
	}
	s.mu.Unlock()
	s.shutdown()
}

// shutdown closes the connection so that Connect returns. It does not
// call the client's Disconnect, which stops the parser at once: a reader
// with more lines than its channel of 64 holds would then block for ever.
// The relay's half-close lets the client read every line, see the end of
// the stream and redial, and the relay rejects the redial.
func (s *session) shutdown() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.relay.close()
	})
}

func (s *session) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// guard runs a callback's work and turns a panic into the session's
// failure, because go-twitch-irc runs callbacks on its own goroutines
// (see the package comment) and does not recover.
func (s *session) guard(callback string, work func()) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("recovered panic in callback", "callback", callback, "err", v, "stack", string(debug.Stack()))
			s.fail(fmt.Errorf("handle %s from %s: panic: %v", callback, s.listener.server, v))
		}
	}()
	work()
}

// onConnect runs on go-twitch-irc's reader goroutine after the 001
// welcome, when the JOIN lines are already queued.
func (s *session) onConnect() {
	defer s.welcomeOnce.Do(func() { close(s.welcomed) })
	s.guard("001 welcome", func() {
		if s.stopping() {
			return
		}
		s.listener.setActive(s, true)
		s.log.Info("connected", "user", s.listener.loginName(), "channels", len(s.listener.channels))
		s.host.Ready()
	})
}

// welcomeWait bounds how long a chat event waits for go-twitch-irc to
// handle a welcome that the relay passed on.
const welcomeWait = 2 * time.Second

// deliver passes on the event of a chat line, which the relay converts
// on its own goroutine. An event that arrives with the welcome waits
// until the client has handled it, so that the listener is ready and
// can reply when the router handles the event.
func (s *session) deliver(ev listeners.Event) {
	if !s.awaitWelcome() {
		return
	}
	s.guard(ev.Type, func() {
		if !s.stopping() {
			s.host.Deliver(ev)
		}
	})
}

// awaitWelcome waits up to welcomeWait, once per session, for the client
// to handle a welcome that the relay has passed on. Without one, as from
// a server that sends chat first or names itself otherwise, it does not
// wait. It reports false when the session stops first. Only the relay's
// goroutine calls it.
func (s *session) awaitWelcome() bool {
	if s.welcomeWaited || !s.relay.passedWelcome {
		return true
	}
	timer := time.NewTimer(welcomeWait)
	defer timer.Stop()
	select {
	case <-s.welcomed:
	case <-timer.C:
		s.log.Warn("delivering chat events before go-twitch-irc handled a welcome", "waited", welcomeWait)
	case <-s.stop:
		return false
	}
	s.welcomeWaited = true
	return true
}

func (s *session) onNotice(message irc.NoticeMessage) {
	s.guard("NOTICE", func() {
		if message.Channel == "*" && loginFailures[message.Message] {
			// The relay rejects a redial with a login failure notice,
			// which is not about the token.
			if !s.relay.rejectedAny() {
				s.fail(s.endingCause(&message))
			}
			return
		}
		s.log.Info("server notice", "channel", message.Channel, "msg_id", message.MsgID, "text", message.Message)
	})
}

func (s *session) onReconnect(message irc.ReconnectMessage) {
	s.guard("RECONNECT", func() {
		s.fail(s.endingCause(&message))
	})
}

// endingCause returns why a message from the server ends the session, or
// nil: go-twitch-irc's parser stops after RECONNECT and after a login
// failure notice.
func (s *session) endingCause(message irc.Message) error {
	switch m := message.(type) {
	case *irc.ReconnectMessage:
		return fmt.Errorf("connection to %s ended: the server sent RECONNECT", s.listener.server)
	case *irc.NoticeMessage:
		if m.Channel == "*" && loginFailures[m.Message] {
			return fmt.Errorf("log in to %s as %s: server sent %q: %w: check the username and that the token is a valid chat token for it",
				s.listener.server, s.listener.loginName(), m.Message, listeners.ErrAuth)
		}
	}
	return nil
}

// loginName returns the username, or "anonymous".
func (l *Listener) loginName() string {
	if l.anonymous() {
		return "anonymous"
	}
	return l.username
}
