// Package twitch is the Twitch chat listener: it keeps one IRC connection
// through github.com/gempir/go-twitch-irc/v4 v4.2.0, delivers PRIVMSG and
// USERNOTICE lines as events, and sends chat messages.
//
// Facts about go-twitch-irc v4.2.0 that shape this package, read from its
// source:
//
//   - Reconnects: Connect in client.go loops while makeConnection returns
//     its internal errReconnect, which it does when the socket read fails,
//     a write fails, a PING goes unanswered for PongTimeout, or the server
//     sends RECONNECT. It redials IrcAddress at once, with no backoff and
//     no way to turn the loop off. So the client never dials the server
//     here: IrcAddress points at a relay on 127.0.0.1 (relay.go) that
//     carries the first connection and rejects every later dial with a
//     login failure, which makes Connect return.
//   - TLS: Connect disables certificate verification for any IrcAddress
//     that starts with "127.0.0.1:". The relay therefore speaks plain TCP
//     to the client and does TLS to the server itself, with verification.
//   - Pings: with SendPings the client sends "PING :go-twitch-irc" after
//     IdlePingInterval without a received line. It closes the socket when
//     no PONG comes within PongTimeout, which is one of the redials above.
//     It replies to server PINGs by itself. Here the client's pings keep a
//     quiet connection talking, and the relay ends a connection that
//     receives no data for Listener.IdleTimeout.
//   - Welcome: startReader treats only a line containing
//     ":tmi.twitch.tv 001" as the welcome, and only then joins channels
//     and calls OnConnect. A self-hosted server must use the server name
//     tmi.twitch.tv, or Run never reports ready and joins nothing.
//   - Stopping: Disconnect does nothing until the client has seen the 001
//     welcome, so ctx cancellation also closes the relay.
//   - Goroutines: Connect parses every line on the goroutine that called
//     it and runs every callback there. The exceptions are OnConnect,
//     which runs on the socket reader goroutine (startReader), and
//     OnPingSent, which runs on the pinger goroutine. A panic in a
//     callback on the reader goroutine ends the process, so every
//     callback registered here recovers.
//   - Panics in parsing: ParseMessage in message.go does not recover (its
//     recoverMessage is commented out), and these parsers panic on
//     malformed lines. parseBadges indexes pair[1] of a badge without
//     "/". The PRIVMSG, WHISPER, USERNOTICE, USERSTATE, NOTICE,
//     CLEARCHAT, CLEARMSG and ROOMSTATE parsers index Params[0] of a line
//     without parameters. parseEmotes slices out of range when an emote
//     range ends before it starts, or when the emotes tag is set and the
//     message is empty. The relay parses each line the same way first
//     and drops a line that panics, and Run still recovers a panic
//     around Connect. makeConnection has no deferred cleanup, so after
//     such a panic the socket stays open until the relay closes it.
//   - Channels: chanCloser in client.go closes its channel through
//     sync.Once, so no channel is closed twice. Its Close dereferences a
//     nil Once when called before the first Reset, but Disconnect checks
//     the connection flag first, which guards that. initialJoins iterates
//     the channel map without its lock, and a concurrent Join is a fatal
//     error that recover cannot catch, so this package calls Join only
//     before Connect.
//   - Hangs: startReader sends each line into a channel of 64. Once the
//     parser has returned, no goroutine receives from it, so a reader
//     with more lines buffered blocks forever, and makeConnection waits
//     for it. The parser returns on RECONNECT, on a login failure
//     notice, on Disconnect and on a failed write. So the relay sends
//     nothing after the first two, the session never calls Disconnect,
//     and the relay keeps reading the client's writes until Connect
//     returns. Run stops waiting after stopGrace all the same.
package twitch

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	irc "github.com/gempir/go-twitch-irc/v4"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// Defaults for a Listener's tunable fields.
const (
	// DefaultIdleTimeout matches the interval of Twitch's own PINGs, about
	// five minutes. The client pings after a third of it without data, so
	// a live server has the other two thirds to reply.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultWriteTimeout ends a connection when one write to the server
	// does not finish in this long, as when the server stops reading, so
	// that sends cannot block for good.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultJoinLimit and DefaultJoinWindow are Twitch's join rate limit
	// for accounts that are not verified bots: 20 channels per 10 s.
	DefaultJoinLimit  = 20
	DefaultJoinWindow = 10 * time.Second
	// DefaultSendBurst and DefaultSendInterval admit at most 10 + 30s/3s
	// = 20 messages in any 30 s, which is Twitch's limit for a user who is
	// not a moderator or broadcaster in the channel.
	DefaultSendBurst    = 10
	DefaultSendInterval = 3 * time.Second
)

const (
	defaultTLSServer   = "irc.chat.twitch.tv:6697"
	defaultPlainServer = "irc.chat.twitch.tv:6667"
	// stopGrace is how long Run waits for the client to stop after the
	// connection ended.
	stopGrace = 5 * time.Second
	// maxTextRunes is Twitch's maximum chat message length in characters.
	maxTextRunes = 500
)

// Listener is one Twitch chat connection. Set the exported fields before
// the first Run. Run may be called again after it returns.
type Listener struct {
	// ConnectTimeout bounds the TCP connection, the TLS handshake and the
	// login up to the server's 001 welcome, together.
	ConnectTimeout time.Duration
	// IdleTimeout ends a connection that receives no data for this long.
	IdleTimeout time.Duration
	// WriteTimeout ends a connection when one write to the server does
	// not finish within it.
	WriteTimeout time.Duration
	// JoinLimit is how many channels may be joined per JoinWindow.
	JoinLimit  int
	JoinWindow time.Duration
	// SendBurst is how many messages Send may post at once, and
	// SendInterval how long it takes to regain one.
	SendBurst    int
	SendInterval time.Duration

	name     string
	server   string
	tls      bool
	channels []string
	// username is empty when the connection is anonymous.
	username string
	token    *config.Secret

	// rootCAs replaces the system roots for verifying the server, in tests.
	rootCAs *x509.CertPool
	// prepareClient, when set, changes each new client before it connects,
	// such as its capabilities for a server that is not Twitch.
	prepareClient func(*irc.Client)

	mu sync.Mutex
	// active is the session that has logged in and is still running.
	active *session
	bucket *tokenBucket
}

var (
	_ listeners.Listener = (*Listener)(nil)
	_ listeners.Replier  = (*Listener)(nil)
	_ listeners.Sender   = (*Listener)(nil)
)

// New returns a Listener for cfg, which must be of kind twitch.
func New(cfg *config.Listener) (*Listener, error) {
	if cfg == nil || cfg.Twitch == nil {
		return nil, errors.New("create twitch listener: missing [listeners.NAME] table with kind = \"twitch\"")
	}
	t := cfg.Twitch
	l := &Listener{
		ConnectTimeout: listeners.DefaultConnectTimeout,
		IdleTimeout:    DefaultIdleTimeout,
		WriteTimeout:   DefaultWriteTimeout,
		JoinLimit:      DefaultJoinLimit,
		JoinWindow:     DefaultJoinWindow,
		SendBurst:      DefaultSendBurst,
		SendInterval:   DefaultSendInterval,
		name:           cfg.Name,
		server:         t.Server,
		tls:            t.TLS,
		channels:       normalizeChannels(t.Channels),
	}
	if l.server == "" {
		l.server = defaultServer(t.TLS)
	}
	if _, _, err := net.SplitHostPort(l.server); err != nil {
		return nil, fmt.Errorf("create twitch listener %s: invalid server %q: %w", cfg.Name, l.server, err)
	}
	if t.Token != nil {
		if err := l.setLogin(cfg.Name, t.Username, t.Token); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// setLogin checks and stores the username and token of a listener that
// logs in.
func (l *Listener) setLogin(name, username string, token *config.Secret) error {
	if username == "" {
		return fmt.Errorf("create twitch listener %s: missing username: a token requires the bot's login as username", name)
	}
	if strings.TrimSpace(token.Reveal()) == "" {
		return fmt.Errorf("create twitch listener %s: token from %s is empty", name, token.Source)
	}
	l.username = strings.ToLower(username)
	l.token = token
	return nil
}

func defaultServer(useTLS bool) string {
	if useTLS {
		return defaultTLSServer
	}
	return defaultPlainServer
}

// normalizeChannels lowercases the names and drops a leading "#" and
// empty names.
func normalizeChannels(names []string) []string {
	var channels []string
	for _, name := range names {
		if channel := normalizeChannel(name); channel != "" {
			channels = append(channels, channel)
		}
	}
	return channels
}

func normalizeChannel(name string) string {
	return strings.TrimPrefix(strings.ToLower(strings.TrimSpace(name)), "#")
}

// password returns the PASS value: the token with the "oauth:" prefix
// that Twitch expects, whether or not the config included it.
func (l *Listener) password() string {
	token := strings.TrimSpace(l.token.Reveal())
	if strings.HasPrefix(strings.ToLower(token), "oauth:") {
		return "oauth:" + token[len("oauth:"):]
	}
	return "oauth:" + token
}

// anonymous reports whether the listener reads chat without logging in.
func (l *Listener) anonymous() bool { return l.token == nil }

// Run connects, joins the configured channels and delivers chat events
// until ctx ends or the connection fails. It never reconnects: every end
// of the connection returns an error, and the supervisor decides when to
// call Run again.
//
// The dial, the TLS handshake and the login share one deadline,
// ConnectTimeout, because go-twitch-irc waits for the 001 welcome without
// one and a server that never sends it would keep the listener starting.
func (l *Listener) Run(ctx context.Context, host listeners.Host) error {
	connectBy := time.Now().Add(l.connectTimeout())
	s, err := l.dial(ctx, host, connectBy)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	defer l.setActive(s, false)
	return s.run(ctx, connectBy)
}

// setActive makes s the session that Send uses, or clears it when s is
// still the active one.
func (l *Listener) setActive(s *session, active bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if active {
		l.active = s
	} else if l.active == s {
		l.active = nil
	}
}

func (l *Listener) activeSession() *session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}
