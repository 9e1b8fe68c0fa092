package discord

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// frame encodes one unmasked server frame.
func frame(fin bool, opcode byte, payload []byte) []byte {
	head := opcode
	if fin {
		head |= 0x80
	}
	out := []byte{head}
	switch {
	case len(payload) < 126:
		out = append(out, byte(len(payload)))
	case len(payload) <= 0xffff:
		out = append(out, 126)
		out = binary.BigEndian.AppendUint16(out, uint16(len(payload)))
	default:
		out = append(out, 127)
		out = binary.BigEndian.AppendUint64(out, uint64(len(payload)))
	}
	return append(out, payload...)
}

func zlibBytes(t *testing.T, data string) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := zlib.NewWriter(&buf)
	if _, err := z.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// filterStream writes stream to a frameFilter through a pipe and returns
// everything it passes on.
func filterStream(t *testing.T, stream []byte) []byte {
	t.Helper()
	return filterStreamHooks(t, stream, filterHooks{})
}

// filterStreamHooks is filterStream with hooks for the filter.
func filterStreamHooks(t *testing.T, stream []byte, hooks filterHooks) []byte {
	t.Helper()
	server, client := net.Pipe()
	go func() {
		server.Write(stream)
		server.Close()
	}()
	filter := newFrameFilter(client, slog.New(slog.NewTextHandler(io.Discard, nil)), hooks)
	defer filter.Close()
	out, err := io.ReadAll(filter)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const upgradeResponse = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

func TestFrameFilterDropsCrashMessages(t *testing.T) {
	good := []byte(`{"op":0,"s":3,"t":"MESSAGE_CREATE","d":{"id":"1"}}`)
	bigGood := []byte(`{"op":0,"s":4,"t":"GUILD_CREATE","d":{"id":"1","name":"` + string(bytes.Repeat([]byte("n"), 70000)) + `"}}`)
	crash := []byte(`{"op":0,"s":2,"t":"GUILD_CREATE","d":{"id":"1","channels":[null]}}`)
	ping := frame(true, 0x9, []byte("hi"))

	var in, want bytes.Buffer
	in.WriteString(upgradeResponse)
	want.WriteString(upgradeResponse)
	// A text message in two fragments with a ping between them, dropped
	// whole; the ping passes.
	in.Write(frame(false, 0x1, crash[:10]))
	in.Write(ping)
	in.Write(frame(true, 0x0, crash[10:]))
	want.Write(ping)
	// A compressed binary message of JSON null, dropped.
	in.Write(frame(true, 0x2, zlibBytes(t, "null")))
	// Messages that pass unchanged: text, compressed, and one with a
	// 64-bit length.
	for _, f := range [][]byte{
		frame(true, 0x1, good),
		frame(true, 0x2, zlibBytes(t, string(good))),
		frame(true, 0x1, bigGood),
	} {
		in.Write(f)
		want.Write(f)
	}

	got := filterStream(t, in.Bytes())
	if !bytes.Equal(got, want.Bytes()) {
		t.Errorf("filter passed %d bytes, want %d", len(got), want.Len())
	}
}

func TestFrameFilterPassesFailedUpgrade(t *testing.T) {
	stream := []byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnull")
	if got := filterStream(t, stream); !bytes.Equal(got, stream) {
		t.Errorf("filter changed a failed upgrade response: %q", got)
	}
}

func TestFrameFilterEndsConnection(t *testing.T) {
	ready := frame(true, 0x1, []byte(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s"}}`))
	resumed := frame(true, 0x1, []byte(`{"op":0,"s":1,"t":"RESUMED","d":{}}`))
	reconnect := frame(true, 0x1, []byte(`{"op":7,"d":null}`))
	bomb := strings.Repeat(" ", maxGatewayMessageBytes) + `{"op":11}`
	for _, tc := range []struct {
		name   string
		frames [][]byte
		// want is the error that ends the connection, or nil when every
		// frame passes.
		want error
	}{
		{"op 7 before READY", [][]byte{reconnect}, errReconnectInHandshake},
		{"op 7 after READY", [][]byte{ready, reconnect}, nil},
		{"op 7 after RESUMED", [][]byte{resumed, reconnect}, nil},
		{"op 9 after READY", [][]byte{ready, frame(true, 0x1, []byte(`{"op":9,"d":true}`))},
			&invalidSessionError{resumable: true}},
		{"op 9 not resumable", [][]byte{frame(true, 0x1, []byte(`{"op":9,"d":false}`))},
			&invalidSessionError{resumable: false}},
		{"inflates too large", [][]byte{ready, frame(true, 0x2, zlibBytes(t, bomb))}, errMessageTooLarge},
		{"frame too large", [][]byte{frame(true, 0x1, make([]byte, maxGatewayMessageBytes+1))}, errMessageTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := []byte(upgradeResponse)
			for _, f := range tc.frames {
				stream = append(stream, f...)
			}
			out, err, ended := filterStreamEnd(t, stream)

			var invalid *invalidSessionError
			if want, ok := tc.want.(*invalidSessionError); ok {
				if !errors.As(err, &invalid) {
					t.Fatalf("Read error = %v, want an *invalidSessionError", err)
				}
				if invalid.resumable != want.resumable {
					t.Errorf("resumable = %t, want %t", invalid.resumable, want.resumable)
				}
			} else if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Read error = %v, want %v", err, tc.want)
			}
			if tc.want == nil && err != nil {
				t.Errorf("Read error = %v, want none", err)
			}
			if tc.want != nil && ended != err {
				t.Errorf("ended callback got %v, want the Read error %v", ended, err)
			}
			if tc.want == nil && ended != nil {
				t.Errorf("ended callback got %v, want no call", ended)
			}
			passed := len(stream)
			if tc.want != nil {
				passed -= len(tc.frames[len(tc.frames)-1])
			}
			if len(out) != passed {
				t.Errorf("filter passed %d bytes, want %d", len(out), passed)
			}
		})
	}
}

func TestFrameFilterDropsEarlyHeartbeatAck(t *testing.T) {
	ack := frame(true, 0x1, []byte(`{"op":11}`))
	ready := frame(true, 0x1, []byte(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s"}}`))
	stream := bytes.Join([][]byte{[]byte(upgradeResponse), ack, ready, ack}, nil)
	want := bytes.Join([][]byte{[]byte(upgradeResponse), ready, ack}, nil)

	if got := filterStream(t, stream); !bytes.Equal(got, want) {
		t.Errorf("filter passed %q, want %q", got, want)
	}
}

func TestFrameFilterDropsHeartbeatRequestWhileClosing(t *testing.T) {
	ready := frame(true, 0x1, []byte(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s"}}`))
	request := frame(true, 0x1, []byte(`{"op":1,"d":1}`))
	reconnect := frame(true, 0x1, []byte(`{"op":7,"d":null}`))
	open := func() bool { return false }
	closing := func() bool { return true }

	stream := bytes.Join([][]byte{[]byte(upgradeResponse), ready, request}, nil)
	if got := filterStreamHooks(t, stream, filterHooks{closing: open}); !bytes.Equal(got, stream) {
		t.Errorf("open session: filter passed %q, want %q", got, stream)
	}
	want := bytes.Join([][]byte{[]byte(upgradeResponse), ready}, nil)
	if got := filterStreamHooks(t, stream, filterHooks{closing: closing}); !bytes.Equal(got, want) {
		t.Errorf("closing session: filter passed %q, want %q", got, want)
	}

	stream = bytes.Join([][]byte{[]byte(upgradeResponse), ready, request, reconnect, request}, nil)
	want = bytes.Join([][]byte{[]byte(upgradeResponse), ready, request, reconnect}, nil)
	if got := filterStreamHooks(t, stream, filterHooks{closing: open}); !bytes.Equal(got, want) {
		t.Errorf("after op 7: filter passed %q, want %q", got, want)
	}
}

// filterStreamEnd is filterStream for a stream that the filter may end.
// It returns what the filter passed on, its Read error other than
// io.EOF, and the error that its ended callback received.
func filterStreamEnd(t *testing.T, stream []byte) (out []byte, err, ended error) {
	t.Helper()
	server, client := net.Pipe()
	go func() {
		server.Write(stream)
		server.Close()
	}()
	filter := newFrameFilter(client, slog.New(slog.NewTextHandler(io.Discard, nil)), filterHooks{ended: func(err error) { ended = err }})
	defer filter.Close()
	out, err = io.ReadAll(filter)
	return out, err, ended
}

func TestGatewayProblem(t *testing.T) {
	for name, message := range crashFrames {
		if gatewayProblem([]byte(message)) == "" {
			t.Errorf("%s: gatewayProblem(%s) found no problem", name, message)
		}
	}
	for _, message := range []string{
		`{"op":0,"s":3,"t":"MESSAGE_CREATE","d":{"id":"1"}}`,
		`{"op":0,"t":"GUILD_CREATE","d":{"id":"1","channels":[{"id":"2"}]}}`,
		`{"op":0,"t":"READY","d":{"user":{"id":"5"},"guilds":[{"id":"1","unavailable":true}]}}`,
		`{"op":0,"t":"VOICE_STATE_UPDATE","d":{"channel_id":"1","guild_id":"2"}}`,
		`{"op":11}`, `garbage`, `[]`,
	} {
		if problem := gatewayProblem([]byte(message)); problem != "" {
			t.Errorf("gatewayProblem(%s) = %q, want none", message, problem)
		}
	}
}

// Over wss the filter sits above TLS: a crash message sent by a TLS
// gateway is dropped and the next message arrives.
func TestWebsocketDialerFiltersTLS(t *testing.T) {
	upgrader := websocket.Upgrader{}
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.WriteMessage(websocket.TextMessage, []byte(`null`))
		// Not op 11, which the filter drops before READY.
		ws.WriteMessage(websocket.TextMessage, []byte(`{"op":1,"d":null}`))
		ws.ReadMessage()
	}))
	defer server.Close()
	pool := x509.NewCertPool()
	pool.AddCert(server.Certificate())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &gatewayDialer{ctx: ctx, rootCAs: pool}
	gateway := "wss" + strings.TrimPrefix(server.URL, "https")
	dialer := d.websocketDialer(slog.New(slog.NewTextHandler(io.Discard, nil)), gateway)
	if dialer.NetDialTLSContext == nil {
		t.Fatal("the dialer does not dial TLS itself, so nothing filters wss")
	}
	ws, _, err := dialer.Dial(gateway, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, message, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if string(message) != `{"op":1,"d":null}` {
		t.Errorf("first message = %s, want the one after the dropped null", message)
	}
}
