// Package discord is the Discord bot listener: it keeps one gateway
// connection through github.com/bwmarrin/discordgo v0.28.1, delivers
// MESSAGE_CREATE events, and posts messages and replies over REST.
//
// Facts about discordgo v0.28.1 that shape this package, read from its
// source:
//
//   - Reconnects: on a read error, a heartbeat failure or op 7, wsapi.go
//     calls Close and then reconnect, which retries Open forever with
//     backoff of up to 600 s. It never inspects the close code, so a
//     revoked token or a disallowed intent loops without end, and nothing
//     can stop that loop once it runs. This package turns it off
//     (ShouldReconnectOnError) and reopens the session itself. Open sends
//     RESUME (op 6) because the session keeps its session ID and
//     sequence number.
//   - Close codes: listen in wsapi.go logs the read error and drops it, so
//     a close code sent during a session is not visible. Open returns the
//     *websocket.CloseError when the gateway closes during the HELLO,
//     IDENTIFY or RESUME handshake. The fatal codes reject the token,
//     shard, version or intents sent there, so Run classifies the error
//     of each Open, and a session lost to another cause is resumed
//     first.
//   - Close: CloseWithCode sends the close frame and then sleeps 1 s
//     before closing the socket, so Run returns about 1 s after ctx ends.
//     It then sets Session.wsConn to nil under the session lock alone,
//     while onEvent's reply to op 1 HEARTBEAT reads that field under the
//     websocket lock, so a reply during a close is a data race and can
//     dereference nil. The frameFilter drops op 1 once Run closes the
//     session or op 7 RECONNECT passed.
//   - Rate limits: on 429 restapi.go sleeps for retry_after with
//     time.Sleep and retries without a limit, and the Ratelimiter sleeps
//     before a request whose bucket is exhausted. Neither honours a
//     context, so Send and Reply turn the retry off and wait themselves.
//   - Panics: event.go runs each handler in a new goroutine, or on the
//     goroutine that read the frame when SyncEvents is set, so a panicking
//     handler ends the process. Every handler here recovers, and Open runs
//     on a goroutine of this package that recovers too. Other panics
//     happen on discordgo's listen goroutine before any handler runs,
//     on malformed messages from the gateway: onEvent (wsapi.go:575)
//     dereferences a nil *Event when a message is the JSON literal null,
//     and onInterface (event.go:206) a nil *Guild when GUILD_CREATE or
//     GUILD_UPDATE carries "d": null. frames.go lists every such class
//     found, and its frameFilter drops those messages before discordgo
//     reads them.
//   - Handshake: Open holds the session lock while it reads HELLO and
//     the reply to IDENTIFY or RESUME. onEvent (wsapi.go) takes the same
//     lock for op 7 RECONNECT, through CloseWithCode, and for op 11
//     HEARTBEAT_ACK, so either message there deadlocks Open and any
//     later Close. The frameFilter ends the connection on op 7 before
//     READY or RESUMED and drops op 11 there, and open gives up on an
//     Open that does not return after its connection closes.
//   - Writes: heartbeat, the reply to op 1 HEARTBEAT in onEvent and
//     CloseWithCode write under the session's websocket lock without a
//     deadline. A gateway that stops reading would block them for good,
//     and every later write and Close with them. deadlineConn bounds
//     each write, and a write timeout ends Run.
//   - Open returns nil whatever the reply to IDENTIFY or RESUME is, so
//     open waits for READY or RESUMED itself, within the same timeout.
//   - Op 9 INVALID_SESSION: onEvent sends IDENTIFY at once on the same
//     connection, without the 1 to 5 s wait that Discord's documentation
//     requests. The frameFilter ends the connection on op 9, and the
//     connection waits and then resumes, or identifies with a new
//     session when op 9 rules out RESUME, because discordgo keeps the
//     session ID and sequence number in unexported fields.
//   - Compression: onEvent inflates a binary message without a limit.
//     The frameFilter inflates it first, and ends the connection on a
//     message above maxGatewayMessageBytes.
//   - Resume URL: v0.28.1 ignores resume_gateway_url in READY and resumes
//     at the URL it first connected to.
package discord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/bwmarrin/discordgo"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// defaultAPIURL is the REST base URL used when the config sets none.
const defaultAPIURL = "https://discord.com/api/v10/"

// intents are the gateway intents the listener requests. Message content
// is a privileged intent: the gateway closes with 4014 unless it is
// enabled for the bot in the Discord Developer Portal.
const intents = discordgo.IntentsGuildMessages |
	discordgo.IntentsDirectMessages |
	discordgo.IntentsMessageContent

// Listener is one Discord bot connection. Run may be called again after
// it returns, and Send and Reply work whether or not Run is running.
type Listener struct {
	name  string
	token string
	// channels is the set of channel IDs to deliver from; empty delivers
	// from every channel.
	channels map[string]bool
	// apiURL is the REST base URL and ends in "/".
	apiURL string
	// gatewayURL is the configured websocket URL, or "" to request it
	// from the API with GET /gateway/bot. Discord's API returns
	// wss://gateway.discord.gg, the default that config.Discord documents,
	// and a self-hosted server returns its own.
	gatewayURL string
	// linkBase is the scheme and host that message links start with.
	linkBase string
	// rest sends messages. It is shared by all calls so that discordgo's
	// rate limit buckets carry over between them.
	rest   *discordgo.Session
	logger atomic.Pointer[slog.Logger]
	timing timing
	// proxy, when set, replaces http.ProxyFromEnvironment for the
	// gateway. Tests set it because that function reads the environment
	// once per process and never proxies 127.0.0.1.
	proxy func(*http.Request) (*url.URL, error)
}

var (
	_ listeners.Listener = (*Listener)(nil)
	_ listeners.Replier  = (*Listener)(nil)
	_ listeners.Sender   = (*Listener)(nil)
)

// New checks cfg and builds the listener without connecting.
func New(cfg *config.Listener) (*Listener, error) {
	if cfg == nil || cfg.Discord == nil {
		return nil, errors.New("new discord listener: missing Discord settings")
	}
	d := cfg.Discord
	if d.Token == nil || d.Token.Reveal() == "" {
		return nil, fmt.Errorf("new discord listener %q: missing bot token", cfg.Name)
	}
	apiURL, err := parseAPIURL(d.APIURL)
	if err != nil {
		return nil, fmt.Errorf("new discord listener %q: %w", cfg.Name, err)
	}
	gatewayURL := ""
	if d.GatewayURL != "" {
		gatewayURL, err = parseGatewayURL(d.GatewayURL)
		if err != nil {
			return nil, fmt.Errorf("new discord listener %q: %w", cfg.Name, err)
		}
	}
	channels := make(map[string]bool, len(d.Channels))
	for _, id := range d.Channels {
		if !isSnowflake(id) {
			return nil, fmt.Errorf("new discord listener %q: invalid channel ID %q: expected a numeric ID", cfg.Name, id)
		}
		channels[id] = true
	}

	l := &Listener{
		name:       cfg.Name,
		token:      botToken(d.Token.Reveal()),
		channels:   channels,
		apiURL:     apiURL.String(),
		gatewayURL: gatewayURL,
		linkBase:   apiURL.Scheme + "://" + apiURL.Host,
		timing:     defaultTiming,
	}
	l.rest = l.newSession(&apiTransport{from: discordgo.EndpointAPI, to: l.apiURL})
	l.logger.Store(slog.Default())
	return l, nil
}

// Run connects to the gateway and delivers messages until ctx ends or the
// session fails. See the package documentation for what discordgo does on
// its own and how Run stops it.
func (l *Listener) Run(ctx context.Context, host listeners.Host) error {
	l.logger.Store(host.Log())
	gatewayURL, err := l.resolveGateway(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	c := newConnection(ctx, l, host, gatewayURL)
	return c.run(ctx)
}

// resolveGateway returns the configured gateway URL, or requests it from
// the API. A rejected token is an authentication failure.
func (l *Listener) resolveGateway(ctx context.Context) (string, error) {
	if l.gatewayURL != "" {
		return l.gatewayURL, nil
	}
	gateway, err := l.rest.GatewayBot(discordgo.WithContext(ctx))
	if isUnauthorized(err) {
		return "", fmt.Errorf("get gateway URL: %w: the API rejected the bot token", listeners.ErrAuth)
	}
	if err != nil {
		return "", fmt.Errorf("get gateway URL: %w", err)
	}
	return parseGatewayURL(gateway.URL)
}

// discordgo writes its own log lines through the standard log package,
// in a format of its own. They repeat what this package logs about the
// same errors, so they go to the default slog logger at debug level.
func init() {
	discordgo.Logger = func(level, _ int, format string, args ...any) {
		slog.Debug(fmt.Sprintf(format, args...), "source", "discordgo", "discordgo_level", level)
	}
}

// newSession returns a discordgo session whose HTTP requests go through
// transport, with reconnects and state tracking turned off.
func (l *Listener) newSession(transport *apiTransport) *discordgo.Session {
	// discordgo.New never returns an error in v0.28.1.
	s, _ := discordgo.New(l.token)
	s.Client.Transport = transport
	s.ShouldReconnectOnError = false
	s.ShouldReconnectVoiceOnSessionError = false
	s.StateEnabled = false
	// SyncEvents runs handlers on the goroutine that read the frame, so
	// messages are delivered in gateway order.
	s.SyncEvents = true
	s.Identify.Intents = intents
	return s
}

func (l *Listener) log() *slog.Logger { return l.logger.Load() }

// botToken adds the "Bot " prefix that Discord expects in the
// Authorization header and in IDENTIFY, unless the token has it.
func botToken(token string) string {
	if strings.HasPrefix(token, "Bot ") {
		return token
	}
	return "Bot " + token
}

func parseAPIURL(raw string) (*url.URL, error) {
	if raw == "" {
		raw = defaultAPIURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid API URL %q: %w", raw, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("invalid API URL %q: expected an http or https URL such as %s", raw, defaultAPIURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid API URL %q: remove the query or fragment", raw)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

// parseGatewayURL checks a websocket URL. It must have no query because
// discordgo appends "?v=9&encoding=json" to it.
func parseGatewayURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("invalid gateway URL %q: %w", raw, err)
	}
	if (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return "", fmt.Errorf("invalid gateway URL %q: expected a ws or wss URL such as wss://gateway.discord.gg", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("invalid gateway URL %q: remove the query or fragment", raw)
	}
	return raw, nil
}

// isSnowflake reports whether id looks like a Discord ID, which keeps
// user input out of the paths of REST URLs.
func isSnowflake(id string) bool {
	if id == "" || len(id) > 20 {
		return false
	}
	for _, r := range id {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
