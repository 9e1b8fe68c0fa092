package discord

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// apiTransport sends the requests that discordgo builds for Discord to
// the configured API URL instead, for one session.
//
// NOTE: discordgo v0.28.1 builds every URL from package-level variables
// (EndpointAPI, EndpointChannels, ...) that the whole process shares and
// that were derived once at package init, so pointing them at another
// server would move every session in the process. This transport leaves
// them alone and rewrites per session. A request outside EndpointAPI as
// it was when the listener was built, such as one to the CDN, fails
// instead of leaving the configured server.
type apiTransport struct {
	// from is discordgo's API base, such as https://discord.com/api/v9/.
	from string
	// to is the configured API base URL, ending in "/".
	to string
	// gateway, when set, is returned for discordgo's GET {from}gateway
	// without a request, and every other request fails. The gateway
	// session uses it because discordgo keeps the gateway URL in an
	// unexported field that only that request fills.
	gateway string
}

func (t *apiTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	target, err := t.rewrite(req)
	if err != nil || target == nil {
		// A RoundTripper closes the body on every path, and the
		// default transport does so for the rewritten request.
		if req.Body != nil {
			req.Body.Close()
		}
	}
	if err != nil {
		return nil, err
	}
	if target == nil {
		return gatewayResponse(req, t.gateway)
	}
	out := req.Clone(req.Context())
	out.URL = target
	out.Host = ""
	return http.DefaultTransport.RoundTrip(out)
}

// rewrite returns the URL to send req to, or nil when the request is the
// gateway lookup that RoundTrip serves itself.
func (t *apiTransport) rewrite(req *http.Request) (*url.URL, error) {
	original := req.URL.String()
	path, ok := strings.CutPrefix(original, t.from)
	if !ok {
		return nil, fmt.Errorf("send request: %s is outside the Discord API base %s", original, t.from)
	}
	if t.gateway != "" {
		if req.Method == http.MethodGet && path == "gateway" {
			return nil, nil
		}
		return nil, fmt.Errorf("send request: the gateway session sends no %s %s", req.Method, path)
	}
	target, err := url.Parse(t.to + path)
	if err != nil {
		return nil, fmt.Errorf("rewrite request URL %s: %w", original, err)
	}
	return target, nil
}

// gatewayResponse builds the response that Discord sends to GET /gateway.
func gatewayResponse(req *http.Request, gateway string) (*http.Response, error) {
	body, err := json.Marshal(map[string]string{"url": gateway})
	if err != nil {
		return nil, fmt.Errorf("encode gateway response: %w", err)
	}
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

// errDialAborted is returned for a dial that finished after Run gave up
// on the Open that made it.
var errDialAborted = errors.New("dial aborted")

// gatewayDialer dials the gateway for one Run. It cancels dials when the
// Run's context ends, and it keeps the latest connection so that Run can
// close it while discordgo's Open waits for HELLO or READY, which Open
// reads without a deadline. Each connection bounds its writes with a
// deadlineConn.
type gatewayDialer struct {
	ctx context.Context
	// gatewayURL names the gateway in a write timeout error.
	gatewayURL string
	// writeTimeout bounds each write to the TCP connection.
	writeTimeout time.Duration
	// proxy selects the proxy for the gateway, and is
	// http.ProxyFromEnvironment when nil.
	proxy func(*http.Request) (*url.URL, error)
	// rootCAs verifies the gateway's certificate; nil uses the system's.
	rootCAs *x509.CertPool
	// hooks are given to the frameFilter of each connection.
	hooks filterHooks
	// filtered is set when connections pass through a frameFilter, which
	// reports the handshake steps.
	filtered bool
	mu       sync.Mutex
	conn     net.Conn
	aborted  bool
}

func (d *gatewayDialer) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()

	var dialer net.Dialer
	tcpConn, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := &deadlineConn{
		Conn: tcpConn, gateway: d.gatewayURL, timeout: d.writeTimeout, ended: d.hooks.ended,
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted {
		tcpConn.Close()
		return nil, errDialAborted
	}
	conn.release = context.AfterFunc(d.ctx, conn.stop)
	d.conn = conn
	if d.hooks.reached != nil {
		d.hooks.reached(stepDialed)
	}
	return conn, nil
}

// begin starts a new Open attempt.
func (d *gatewayDialer) begin() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = false
	d.conn = nil
}

// abort closes the connection of the current attempt, which makes a
// blocked read in discordgo return an error, and makes a dial still in
// progress fail.
func (d *gatewayDialer) abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = true
	if d.conn != nil {
		d.conn.Close()
	}
}

// defaultGatewayURL is where Discord's API sends bots, for deciding
// whether a proxy applies when the config names no gateway.
const defaultGatewayURL = "wss://gateway.discord.gg"

// websocketDialer returns the dialer for discordgo's gateway connection.
// Each connection passes through a frameFilter, above TLS for wss, so
// that a malformed message cannot crash the process.
//
// NOTE: gorilla/websocket v1.5.3 dials a proxy with NetDialTLSContext when
// both are set, so when the environment names a proxy for the gateway the
// dialer keeps gorilla's own TLS and the proxy, and wss messages reach
// discordgo unfiltered. The write deadline still applies there, because
// dialContext puts it on the TCP connection to the proxy, below TLS.
func (d *gatewayDialer) websocketDialer(log *slog.Logger, gatewayURL string) *websocket.Dialer {
	dialer := &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.dialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newFrameFilter(conn, log, d.hooks), nil
		},
		Proxy:            d.proxyFunc(),
		HandshakeTimeout: handshakeTimeout,
	}
	if gatewayURL == "" {
		gatewayURL = defaultGatewayURL
	}
	if proxied(gatewayURL, dialer.Proxy) {
		log.Warn("gateway messages are not checked because a proxy is set for the gateway", "gateway", gatewayURL)
		dialer.NetDialContext = d.dialContext
		d.filtered = false
		return dialer
	}
	d.filtered = true
	dialer.Proxy = nil
	dialer.NetDialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.dialTLS(ctx, network, addr, log)
	}
	return dialer
}

// dialTLS dials addr, completes the TLS handshake and puts a frameFilter
// on the TLS connection.
func (d *gatewayDialer) dialTLS(ctx context.Context, network, addr string, log *slog.Logger) (net.Conn, error) {
	conn, err := d.dialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	tlsConn := tls.Client(conn, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12, RootCAs: d.rootCAs})
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return newFrameFilter(tlsConn, log, d.hooks), nil
}

func (d *gatewayDialer) proxyFunc() func(*http.Request) (*url.URL, error) {
	if d.proxy == nil {
		return http.ProxyFromEnvironment
	}
	return d.proxy
}

// proxied reports whether proxy, such as http.ProxyFromEnvironment,
// returns a proxy for a gateway URL, as gorilla/websocket calls it.
func proxied(gatewayURL string, proxy func(*http.Request) (*url.URL, error)) bool {
	u, err := url.Parse(gatewayURL)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	proxyURL, err := proxy(&http.Request{URL: u})
	return err == nil && proxyURL != nil
}
