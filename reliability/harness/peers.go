package harness

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// DiscordToken and PDSPassword are the credentials the fake peers accept.
const (
	DiscordToken = "bench-token"
	PDSPassword  = "bench-password"
)

// DiscordHeartbeat is the heartbeat interval in the fake gateway's
// HELLO, close to the one Discord's gateway sends (an estimate).
const DiscordHeartbeat = 41250 * time.Millisecond

// DiscordServer is a minimal Discord API and gateway on 127.0.0.1. It
// serves the gateway lookup, sends HELLO, replies to IDENTIFY with READY
// and acknowledges heartbeats, and sends nothing else.
type DiscordServer struct {
	server *http.Server
	addr   string

	// Heartbeats counts the heartbeats the gateway acknowledged.
	Heartbeats atomic.Int64
	// Ready counts the READY dispatches sent.
	Ready atomic.Int64
}

// StartDiscordServer listens on a free port of 127.0.0.1.
func StartDiscordServer() (*DiscordServer, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &DiscordServer{addr: listener.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v10/gateway/bot", s.lookup)
	mux.HandleFunc("GET /api/v10/gateway", s.lookup)
	mux.HandleFunc("/gateway/", s.gateway)
	s.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.server.Serve(listener)
	return s, nil
}

// APIURL and GatewayURL are the listener's api_url and gateway_url.
func (s *DiscordServer) APIURL() string     { return "http://" + s.addr + "/api/v10/" }
func (s *DiscordServer) GatewayURL() string { return "ws://" + s.addr + "/gateway" }

// Close stops the server and closes its connections.
func (s *DiscordServer) Close() { s.server.Close() }

func (s *DiscordServer) lookup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bot "+DiscordToken {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"message": "401: Unauthorized", "code": 0}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"url": s.GatewayURL(), "shards": 1})
}

func (s *DiscordServer) gateway(w http.ResponseWriter, r *http.Request) {
	var upgrader websocket.Upgrader
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	var writeMu sync.Mutex
	send := func(frame map[string]any) error {
		writeMu.Lock()
		defer writeMu.Unlock()
		_ = ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		return ws.WriteJSON(frame)
	}
	if send(map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": DiscordHeartbeat.Milliseconds()}}) != nil {
		return
	}
	for {
		var frame struct {
			Op int `json:"op"`
		}
		if err := ws.ReadJSON(&frame); err != nil {
			return
		}
		switch frame.Op {
		case 1:
			s.Heartbeats.Add(1)
			err = send(map[string]any{"op": 11})
		case 2:
			s.Ready.Add(1)
			err = send(map[string]any{"op": 0, "t": "READY", "s": 1, "d": map[string]any{
				"v": 10, "session_id": "bench-session", "resume_gateway_url": s.GatewayURL(),
				"user":   map[string]any{"id": "100", "username": "bench-bot", "bot": true},
				"guilds": []any{},
			}})
		}
		if err != nil {
			return
		}
	}
}

// PDSServer is a minimal AT Protocol PDS on 127.0.0.1 for a Bluesky
// listener: it accepts a login with PDSPassword and lists no
// notifications.
type PDSServer struct {
	server *http.Server
	addr   string

	// Logins counts the sessions created, and Polls the notification
	// lists served.
	Logins, Polls atomic.Int64
}

// StartPDSServer listens on a free port of 127.0.0.1.
func StartPDSServer() (*PDSServer, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &PDSServer{addr: listener.Addr().String()}
	s.server = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go s.server.Serve(listener)
	return s, nil
}

// URL is the listener's host.
func (s *PDSServer) URL() string { return "http://" + s.addr }

// Close stops the server and closes its connections.
func (s *PDSServer) Close() { s.server.Close() }

func (s *PDSServer) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch strings.TrimPrefix(r.URL.Path, "/xrpc/") {
	case "com.atproto.server.createSession":
		var in struct{ Identifier, Password string }
		if json.NewDecoder(r.Body).Decode(&in) != nil || in.Password != PDSPassword {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": "AuthenticationRequired", "message": "invalid identifier or password"})
			return
		}
		s.Logins.Add(1)
		json.NewEncoder(w).Encode(map[string]any{
			"accessJwt": "access-token", "refreshJwt": "refresh-token",
			"did": "did:plc:bench", "handle": in.Identifier,
		})
	case "app.bsky.notification.listNotifications":
		s.Polls.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"notifications": []any{}})
	default:
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": "MethodNotImplemented"})
	}
}
