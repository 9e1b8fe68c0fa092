package discord

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bwmarrin/discordgo"
	"github.com/gorilla/websocket"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// messageSeeds are MESSAGE_CREATE payloads ("d" of the dispatch).
var messageSeeds = []string{
	`{"id":"1","channel_id":"200","guild_id":"900","content":"hello","timestamp":"2026-01-02T03:04:05.000000+00:00","type":0,"author":{"id":"300","username":"alice","global_name":"Alice"}}`,
	`{"id":"4","channel_id":"202","content":"thanks","type":19,"author":{"id":"301","username":"bob"},"message_reference":{"message_id":"999"}}`,
	`{"id":"5","channel_id":"200","content":"no author"}`,
	`{"id":"6","channel_id":"200","author":null,"member":null,"mentions":[null],"attachments":[null],"embeds":[null]}`,
	`{"id":"7","channel_id":"200","author":{"id":"1"},"timestamp":"not a time","type":"x"}`,
	`{"id":"8","channel_id":"200","author":{"id":"1"},"components":[{"type":1,"components":[{"type":99}]}],"referenced_message":{"author":null}}`,
	`null`,
	`[]`,
	`{}`,
}

// FuzzMessageCreate decodes a MESSAGE_CREATE payload as discordgo does for
// a dispatch, then passes it to the listener's handler and conversion.
// Neither may panic, and a delivered event must encode to the JSON a hook
// reads.
func FuzzMessageCreate(f *testing.F) {
	for _, seed := range messageSeeds {
		f.Add([]byte(seed))
	}
	l, err := New(fuzzConfig("http://127.0.0.1:1/api/v10/", ""))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m discordgo.MessageCreate
		// discordgo passes the struct on even when decoding failed.
		_ = json.Unmarshal(data, &m)
		host := &rigHost{events: make(chan listeners.Event, 1), ready: make(chan struct{}, 1)}
		c := &connection{listener: l, host: host, failed: make(chan error, 1)}
		c.setSelfID(testBotID)
		c.handleMessage(nil, &m)
		select {
		case err := <-c.failed:
			t.Fatalf("handleMessage panicked on %q: %v", data, err)
		default:
		}
		select {
		case ev := <-host.events:
			if _, err := json.Marshal(ev); err != nil {
				t.Fatalf("encode the event of %q: %v", data, err)
			}
			if ev.Text != m.Content || ev.UserID != m.Author.ID {
				t.Fatalf("event %+v does not carry the message's content and author", ev)
			}
		default:
		}
	})
}

func fuzzConfig(apiURL, gatewayURL string) *config.Listener {
	token := config.NewSecret(testToken, "inline")
	return &config.Listener{
		Name: "discord-fuzz", Kind: config.KindDiscord, Enabled: true,
		Discord: &config.Discord{Token: &token, APIURL: apiURL, GatewayURL: gatewayURL},
	}
}

// crashFrames are one message of each class of gatewayProblem, each of
// which crashes discordgo v0.28.1 when it reaches it.
var crashFrames = map[string]string{
	"null frame":                       `null`,
	"GUILD_CREATE with d null":         `{"op":0,"s":2,"t":"GUILD_CREATE","d":null}`,
	"GUILD_UPDATE with d {}":           `{"op":0,"s":2,"t":"GUILD_UPDATE","d":{}}`,
	"READY with a null guild":          `{"op":0,"s":2,"t":"READY","d":{"v":9,"session_id":"x","user":{"id":"100"},"guilds":[null]}}`,
	"GUILD_CREATE with a null channel": `{"op":0,"s":2,"t":"GUILD_CREATE","d":{"id":"1","channels":[null]}}`,
	"READY with a null member":         `{"op":0,"s":2,"t":"READY","d":{"user":{"id":"100"},"guilds":[{"id":"1","members":[null]}]}}`,
	"VOICE_STATE_UPDATE with {}":       `{"op":0,"s":2,"t":"VOICE_STATE_UPDATE","d":{}}`,
	"VOICE_STATE_UPDATE d absent":      `{"op":0,"s":2,"t":"VOICE_STATE_UPDATE"}`,
}

// rigHost records what the listener hands its host, without logging.
type rigHost struct {
	events chan listeners.Event
	ready  chan struct{}
}

func (h *rigHost) Ready() {
	select {
	case h.ready <- struct{}{}:
	default:
	}
}

func (*rigHost) Reconnecting(error) {}

func (h *rigHost) Deliver(ev listeners.Event) {
	select {
	case h.events <- ev:
	default:
	}
}

func (h *rigHost) Log() *slog.Logger   { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func (h *rigHost) State() listeners.KV { return emptyKV{} }

// gatewayRig is a fake gateway with one listener connected to it. A fuzz
// worker keeps one rig for all its inputs, because closing a discordgo
// session takes about a second.
type gatewayRig struct {
	server   *httptest.Server
	listener *Listener
	host     *rigHost

	mu    sync.Mutex
	conn  *websocket.Conn
	seq   int64
	write sync.Mutex

	cancel context.CancelFunc
	done   chan error
	// sentinels numbers the messages that show a session still delivers.
	sentinels atomic.Int64
}

// sentinelAuthor is the author of sentinel messages, an ID that no seed
// uses for the bot, so READY frames in the input do not filter them out.
const sentinelAuthor = "987654321987654321"

func newGatewayRig() (*gatewayRig, error) {
	r := &gatewayRig{host: &rigHost{events: make(chan listeners.Event, 1000), ready: make(chan struct{}, 1)}}
	r.server = httptest.NewServer(http.HandlerFunc(r.serveGateway))
	gateway := "ws" + strings.TrimPrefix(r.server.URL, "http") + "/gateway"
	l, err := New(fuzzConfig(r.server.URL+"/api/v10/", gateway))
	if err != nil {
		r.server.Close()
		return nil, err
	}
	// After op 9 the listener waits 1 to 5 s before it reconnects, which
	// with discordgo's 1 s Close can pass feed's timeout.
	l.timing.invalidSessionMin = shortTiming.invalidSessionMin
	l.timing.invalidSessionMax = shortTiming.invalidSessionMax
	r.listener = l
	return r, nil
}

// serveGateway sends HELLO, then READY for IDENTIFY, RESUMED for
// RESUME, and an ACK for each heartbeat.
func (r *gatewayRig) serveGateway(w http.ResponseWriter, req *http.Request) {
	var upgrader websocket.Upgrader
	ws, err := upgrader.Upgrade(w, req, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	r.mu.Lock()
	r.conn = ws
	r.mu.Unlock()
	r.send(ws, map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": 45000}})
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var frame struct {
			Op int `json:"op"`
		}
		if json.Unmarshal(data, &frame) != nil {
			continue
		}
		switch frame.Op {
		case 1:
			r.send(ws, map[string]any{"op": 11})
		case 2:
			r.dispatch(ws, "READY", map[string]any{
				"v": 9, "session_id": testSessionID, "user": map[string]any{"id": testBotID, "username": "bot", "bot": true},
				"guilds": []any{},
			})
		case 6:
			r.dispatch(ws, "RESUMED", map[string]any{})
		}
	}
}

func (r *gatewayRig) send(ws *websocket.Conn, frame any) {
	data, _ := json.Marshal(frame)
	r.sendRaw(ws, data)
}

func (r *gatewayRig) sendRaw(ws *websocket.Conn, data []byte) {
	r.write.Lock()
	defer r.write.Unlock()
	_ = ws.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = ws.WriteMessage(websocket.TextMessage, data)
}

func (r *gatewayRig) dispatch(ws *websocket.Conn, event string, data any) {
	r.mu.Lock()
	r.seq++
	seq := r.seq
	r.mu.Unlock()
	r.send(ws, map[string]any{"op": 0, "t": event, "s": seq, "d": data})
}

func (r *gatewayRig) current() *websocket.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn
}

// ensureRunning starts Run unless it runs, and waits for READY.
func (r *gatewayRig) ensureRunning() error {
	if r.done != nil {
		select {
		case <-r.done:
			r.done = nil
		default:
			return nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	done := r.done
	go func() { done <- r.listener.Run(ctx, r.host) }()
	select {
	case <-r.host.ready:
		return nil
	case err := <-done:
		done <- err
		return fmt.Errorf("listener ended before READY: %v", err)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no READY within 10 s")
	}
}

// close stops the listener and the server.
func (r *gatewayRig) close() {
	if r.cancel != nil {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
		}
	}
	r.server.Close()
}

// feed sends frame, then sentinel messages until one is delivered or the
// session ends. It returns an error when neither happens within timeout.
func (r *gatewayRig) feed(frame []byte, timeout time.Duration) error {
	if err := r.ensureRunning(); err != nil {
		return err
	}
	for len(r.host.events) > 0 {
		<-r.host.events
	}
	conn := r.current()
	r.sendRaw(conn, frame)
	text := fmt.Sprintf("sentinel %d", r.sentinels.Add(1))
	sentinel := map[string]any{"id": "1", "channel_id": "200", "content": text, "type": 0,
		"author": map[string]any{"id": sentinelAuthor, "username": "sentinel"}}
	r.dispatch(conn, "MESSAGE_CREATE", sentinel)
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-r.host.events:
			if ev.Text == text {
				return nil
			}
		case err := <-r.done:
			// The session ended, which is an allowed outcome. The next
			// input starts a new one.
			r.done <- err
			return nil
		case <-ticker.C:
			// After a resume the sentinel goes to the new connection.
			if now := r.current(); now != conn {
				conn = now
				r.dispatch(conn, "MESSAGE_CREATE", sentinel)
			}
		case <-deadline:
			return fmt.Errorf("the session neither delivered the next message nor ended within %s", timeout)
		}
	}
}

// FuzzGatewayFrame sends one frame from a fake gateway to a running
// listener, then a normal message. The session must deliver the message
// or end; a crash of the test process is a frame that kills the daemon.
func FuzzGatewayFrame(f *testing.F) {
	for _, seed := range messageSeeds {
		f.Add([]byte(`{"op":0,"s":5,"t":"MESSAGE_CREATE","d":` + seed + `}`))
	}
	for _, seed := range []string{
		`{"op":1}`, `{"op":7}`, `{"op":9,"d":false}`, `{"op":11}`, `{"op":10,"d":{"heartbeat_interval":1}}`,
		`{"op":0,"t":"READY","d":{"user":{"id":"5"},"guilds":[]}}`,
		`{"op":0,"t":"GUILD_CREATE","d":{"id":"1","channels":[null],"members":[null],"voice_states":[null]}}`,
		`{"op":0,"t":"GUILD_DELETE","d":null}`,
		`{"op":0,"t":"CHANNEL_CREATE","d":null}`,
		`{"op":0,"t":"VOICE_SERVER_UPDATE","d":null}`,
		`{"op":0,"t":"VOICE_STATE_UPDATE","d":{"channel_id":"1","guild_id":"2"}}`,
		`{"op":0,"t":"INTERACTION_CREATE","d":{"type":99,"data":null}}`,
		`{"op":0,"t":"MESSAGE_UPDATE","d":null}`,
		`{"op":0,"t":"RESUMED","d":null}`,
		`{"op":"x"}`, `garbage`, `{"op":0,"s":-1,"t":"","d":1e999}`,
	} {
		f.Add([]byte(seed))
	}
	rig, err := newGatewayRig()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(rig.close)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if err := rig.feed(frame, 5*time.Second); err != nil {
			t.Fatalf("after frame %q: %v", frame, err)
		}
	})
}

// TestCrashFramesDropped sends each message of crashFrames to a listener
// in a child process, then a normal message. The frame filter drops the
// malformed message, so the child survives; without the filter each of
// them crashes it inside discordgo.
func TestCrashFramesDropped(t *testing.T) {
	if frame := os.Getenv("DISCORD_FUZZ_CHILD_FRAME"); frame != "" {
		data, err := base64.StdEncoding.DecodeString(frame)
		if err != nil {
			t.Fatal(err)
		}
		rig, err := newGatewayRig()
		if err != nil {
			t.Fatal(err)
		}
		defer rig.close()
		if err := rig.feed(data, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		// A crash on a goroutine that onInterface started may come late.
		time.Sleep(500 * time.Millisecond)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process per frame")
	}
	for name, frame := range crashFrames {
		t.Run(name, func(t *testing.T) {
			if gatewayProblem([]byte(frame)) == "" {
				t.Fatalf("gatewayProblem does not flag %s", frame)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashFramesDropped$", "-test.count=1")
			cmd.Env = append(os.Environ(), "DISCORD_FUZZ_CHILD_FRAME="+base64.StdEncoding.EncodeToString([]byte(frame)))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("frame %s ended the child: %v\n%s", frame, err, outputTail(out))
			}
		})
	}
}

// outputTail returns the last 2,000 bytes of a child's output.
func outputTail(out []byte) string {
	return string(out[max(0, len(out)-2000):])
}
