package discord

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/bwmarrin/discordgo"
)

const (
	// maxGatewayMessageBytes bounds one gateway message, compressed and
	// after inflating, so that a peak of a few times this much memory
	// covers the filter and discordgo each holding a copy.
	//
	// NOTE: the value is an estimate, because Discord documents no limit
	// for messages it sends. The largest are GUILD_CREATE of big guilds,
	// which list up to 500 channels with their permission overwrites,
	// 250 roles, the emojis, stickers and active threads. Without the
	// GUILD_MEMBERS and GUILD_PRESENCES intents, which this listener does
	// not request, they list few members, so they come to a few MiB at
	// most. A message above this cap ends the connection, so the cap
	// leaves headroom of several times that instead of risking a
	// reconnect loop.
	maxGatewayMessageBytes = 16 << 20
	// maxFrameDropLogs caps the log lines about dropped messages per
	// connection.
	maxFrameDropLogs = 10
)

// Errors with which the frame filter ends a gateway connection. It closes
// the socket first, so discordgo's close frame 1000, which would end the
// session at Discord, cannot be sent.
var (
	// errReconnectInHandshake is op 7 RECONNECT before READY or RESUMED.
	// discordgo v0.28.1 handles op 7 by calling CloseWithCode, which
	// waits for the session lock that Open holds while it reads the
	// handshake, so passing it on deadlocks Open.
	errReconnectInHandshake = errors.New("gateway sent op 7 RECONNECT before READY or RESUMED")
	// errMessageTooLarge is a message above maxGatewayMessageBytes.
	errMessageTooLarge = errors.New("gateway message too large")
)

// invalidSessionError is op 9 INVALID_SESSION. discordgo v0.28.1 sends
// IDENTIFY in reply at once on the same connection, so it loops without
// a pause against a gateway that replies to each IDENTIFY with op 9.
// Discord's documentation requests a wait of 1 to 5 s before the next
// IDENTIFY, which the connection does after the filter ends it.
type invalidSessionError struct {
	// resumable is the message's "d": whether RESUME may follow, instead
	// of a new IDENTIFY.
	resumable bool
}

func (e *invalidSessionError) Error() string {
	return fmt.Sprintf("gateway sent op 9 INVALID_SESSION (resumable: %t)", e.resumable)
}

// WebSocket opcodes of RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opBinary       = 0x2
	opClose        = 0x8
)

// frameFilter sits between the gateway connection and discordgo's
// websocket client, and drops each message from the gateway that would
// make discordgo v0.28.1 panic on one of its own goroutines, where no
// recover of this package reaches (see gatewayProblem). It ends the
// connection, with an error from Read, on a message that discordgo
// mishandles in other ways: op 7 during the handshake, op 9 at any time
// and a message above maxGatewayMessageBytes. It passes the HTTP upgrade
// response, control frames and every other message through unchanged,
// byte for byte, and reads the client's writes through the embedded
// net.Conn untouched.
//
// Read is not safe for concurrent use. gorilla/websocket reads from one
// goroutine.
type frameFilter struct {
	net.Conn
	reader *bufio.Reader
	log    *slog.Logger

	// pending holds the bytes passed, not yet returned by Read.
	pending bytes.Buffer
	// upgraded is set once the HTTP response was passed on; passthrough
	// when that response was not 101, so what follows is no websocket.
	upgraded, passthrough bool
	headerLines           int
	// message is the raw frames of the data message being assembled and
	// payload their unmasked payloads.
	message, payload []byte
	opcode           byte
	dropped          int
	err              error
	// sessionUp is set once READY or RESUMED passed, which ends the
	// handshake.
	sessionUp bool
	// ended, when set, receives the error with which the filter ends the
	// connection.
	ended func(error)
	// reached, when set, receives each handshake step as it passes.
	reached func(handshakeStep)
	// rejected, when set, receives the status line of an upgrade
	// response other than 101.
	rejected func(status string)
	// closing, when set, reports whether the connection's Run has begun
	// to close the session.
	closing func() bool
	// reconnecting is set once op 7 RECONNECT passed after the
	// handshake, on which discordgo closes the connection itself.
	reconnecting bool
}

func newFrameFilter(conn net.Conn, log *slog.Logger, hooks filterHooks) *frameFilter {
	return &frameFilter{
		Conn: conn, reader: bufio.NewReaderSize(conn, 64<<10), log: log,
		ended: hooks.ended, reached: hooks.reached, rejected: hooks.rejected,
		closing: hooks.closing,
	}
}

// filterHooks are the callbacks through which a frameFilter reports to
// the connection of its Run. The deadlineConn below the filter reports
// a write timeout through ended too.
type filterHooks struct {
	ended    func(error)
	reached  func(handshakeStep)
	rejected func(status string)
	closing  func() bool
}

// handshakeStep is how far the handshake of a gateway connection got,
// so that a timeout error can name the message the gateway did not send.
type handshakeStep int32

const (
	stepNone handshakeStep = iota
	stepDialed
	stepUpgraded
	stepHello
)

func (f *frameFilter) reach(step handshakeStep) {
	if f.reached != nil {
		f.reached(step)
	}
}

func (f *frameFilter) Read(p []byte) (int, error) {
	for f.pending.Len() == 0 && f.err == nil {
		f.err = f.next()
		f.endOn(f.err)
	}
	if f.pending.Len() > 0 {
		return f.pending.Read(p)
	}
	return 0, f.err
}

// endOn closes the connection and reports err when err is one of the
// filter's own reasons to end it.
func (f *frameFilter) endOn(err error) {
	var invalid *invalidSessionError
	if !errors.Is(err, errMessageTooLarge) && !errors.Is(err, errReconnectInHandshake) && !errors.As(err, &invalid) {
		return
	}
	// The reason goes first: closing the socket can make discordgo's
	// heartbeat report the disconnect before this Read returns.
	if f.ended != nil {
		f.ended(err)
	}
	f.Conn.Close()
}

// next reads the next part of the stream and passes on what it allows.
func (f *frameFilter) next() error {
	switch {
	case f.passthrough:
		buf := make([]byte, 32<<10)
		n, err := f.reader.Read(buf)
		f.pending.Write(buf[:n])
		return err
	case !f.upgraded:
		return f.nextHeaderLine()
	}
	return f.nextFrame()
}

// nextHeaderLine passes on one line of the HTTP upgrade response. A
// response other than 101, or a line longer than the buffer, turns the
// filter into a plain pipe.
func (f *frameFilter) nextHeaderLine() error {
	line, err := f.reader.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		f.passthrough, err = true, nil
	}
	if f.headerLines == 0 && !bytes.HasPrefix(line, []byte("HTTP/1.1 101 ")) {
		f.passthrough = true
		if f.rejected != nil {
			f.rejected(statusLine(line))
		}
	}
	f.headerLines++
	f.pending.Write(line)
	if string(line) == "\r\n" {
		f.upgraded = true
		if !f.passthrough {
			f.reach(stepUpgraded)
		}
	}
	return err
}

// maxStatusLine caps the status line that an error quotes.
const maxStatusLine = 100

// statusLine returns line without its line end, cut to maxStatusLine
// bytes, and with bytes that are not printable ASCII replaced.
func statusLine(line []byte) string {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) > maxStatusLine {
		line = line[:maxStatusLine]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, string(line))
}

// nextFrame reads one frame and passes it on, or buffers it until its
// message is complete and checked.
func (f *frameFilter) nextFrame() error {
	raw, payload, err := f.readFrame()
	if err != nil {
		return err
	}
	fin, opcode := raw[0]&0x80 != 0, raw[0]&0x0f
	if opcode >= opClose {
		f.pending.Write(raw)
		return nil
	}
	if opcode != opContinuation {
		f.opcode, f.message, f.payload = opcode, f.message[:0], f.payload[:0]
	}
	if len(f.payload)+len(payload) > maxGatewayMessageBytes {
		return fmt.Errorf("read gateway message: %w: more than %d bytes", errMessageTooLarge, maxGatewayMessageBytes)
	}
	f.message = append(f.message, raw...)
	f.payload = append(f.payload, payload...)
	if !fin {
		return nil
	}
	problem, err := f.check()
	if err != nil {
		return err
	}
	if problem != "" {
		f.drop(problem)
	} else {
		f.pending.Write(f.message)
	}
	f.message, f.payload = f.message[:0], f.payload[:0]
	return nil
}

// readFrame reads one frame and returns it as sent and its unmasked
// payload.
func (f *frameFilter) readFrame() (raw, payload []byte, err error) {
	var head [2]byte
	if _, err := io.ReadFull(f.reader, head[:]); err != nil {
		return nil, nil, err
	}
	raw = append(raw, head[:]...)
	masked, length := head[1]&0x80 != 0, uint64(head[1]&0x7f)
	switch length {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(f.reader, ext[:]); err != nil {
			return nil, nil, err
		}
		raw, length = append(raw, ext[:]...), uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(f.reader, ext[:]); err != nil {
			return nil, nil, err
		}
		raw, length = append(raw, ext[:]...), binary.BigEndian.Uint64(ext[:])
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(f.reader, key[:]); err != nil {
			return nil, nil, err
		}
		raw = append(raw, key[:]...)
	}
	if length > maxGatewayMessageBytes {
		return nil, nil, fmt.Errorf("read gateway frame: %w: %d bytes, more than %d", errMessageTooLarge, length, maxGatewayMessageBytes)
	}
	start := len(raw)
	raw = append(raw, make([]byte, length)...)
	if _, err := io.ReadFull(f.reader, raw[start:]); err != nil {
		return nil, nil, err
	}
	payload = raw[start:]
	if masked {
		payload = bytes.Clone(payload)
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return raw, payload, nil
}

// check returns why the assembled message must not reach discordgo, or
// "", and an error when the message ends the connection instead.
func (f *frameFilter) check() (string, error) {
	data, err := f.inflate()
	if err != nil {
		return "", err
	}
	var e *discordgo.Event
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&e); err != nil {
		return "", nil
	}
	if err := f.watchSession(e); err != nil {
		return "", err
	}
	// No heartbeat can be acknowledged before discordgo's Open returns,
	// because Open starts the heartbeats. Open holds the session lock
	// that onEvent takes for op 11, so such an ACK deadlocks it.
	if e != nil && e.Operation == 11 && !f.sessionUp {
		return "heartbeat ACK before READY or RESUMED, which deadlocks discordgo's Open", nil
	}
	if e != nil && e.Operation == 1 && f.sessionClosing() {
		return "heartbeat request while the session closes, whose reply races with discordgo's close", nil
	}
	return eventProblem(e), nil
}

// inflate returns the assembled message's JSON. A binary message is
// zlib-compressed JSON, as discordgo reads it. A binary message that
// fails to inflate yields nil, and passes on for discordgo to reject.
func (f *frameFilter) inflate() ([]byte, error) {
	if f.opcode != opBinary {
		return f.payload, nil
	}
	z, err := zlib.NewReader(bytes.NewReader(f.payload))
	if err != nil {
		return nil, nil
	}
	defer z.Close()
	data, err := io.ReadAll(io.LimitReader(z, maxGatewayMessageBytes+1))
	if len(data) > maxGatewayMessageBytes {
		return nil, fmt.Errorf("inflate gateway message: %w: more than %d bytes", errMessageTooLarge, maxGatewayMessageBytes)
	}
	if err != nil {
		return nil, nil
	}
	return data, nil
}

// watchSession returns the error that ends the connection for op 9 at
// any time and for op 7 before READY or RESUMED, and notes when either
// of those passes.
func (f *frameFilter) watchSession(e *discordgo.Event) error {
	if e == nil {
		return nil
	}
	switch {
	case e.Operation == 9:
		resumable := bytes.Equal(bytes.TrimSpace(e.RawData), []byte("true"))
		return &invalidSessionError{resumable: resumable}
	case e.Operation == 7 && !f.sessionUp:
		return errReconnectInHandshake
	case e.Operation == 7:
		f.reconnecting = true
	case e.Operation == 0 && (e.Type == "READY" || e.Type == "RESUMED"):
		f.sessionUp = true
	case e.Operation == 10:
		f.reach(stepHello)
	}
	return nil
}

// sessionClosing reports whether discordgo closes the connection, after
// op 7 or because Run stops. discordgo v0.28.1 replies to op 1 by writing
// to Session.wsConn, which its CloseWithCode sets to nil without the
// lock that the reply takes, so a reply during the close races with it
// and can dereference nil on discordgo's own goroutine.
func (f *frameFilter) sessionClosing() bool {
	return f.reconnecting || (f.closing != nil && f.closing())
}

func (f *frameFilter) drop(problem string) {
	f.dropped++
	switch {
	case f.dropped <= maxFrameDropLogs:
		f.log.Warn("dropped a gateway message that would crash or deadlock discordgo", "reason", problem, "dropped", f.dropped)
	case f.dropped == maxFrameDropLogs+1:
		f.log.Warn("dropping more gateway messages; not logging each", "dropped", f.dropped)
	}
}

// gatewayProblem returns why a gateway message would make discordgo
// v0.28.1 panic, or "" when it would not. It mirrors onEvent and
// onInterface in discordgo's wsapi.go and event.go, which run on
// discordgo's own goroutines:
//
//   - a message that is JSON null: onEvent reads e.Operation of a nil
//     *Event;
//   - GUILD_CREATE or GUILD_UPDATE whose "d" sets no field of the embedded
//     *Guild (null, {}, a non-object, or no "d"): setGuildIds reads
//     g.Channels of a nil *Guild;
//   - GUILD_CREATE or GUILD_UPDATE with a null entry in "channels",
//     "members" or "voice_states": setGuildIds writes GuildID through it;
//   - READY with a null entry in "guilds", or a guild with such a null
//     entry: setGuildIds again;
//   - VOICE_STATE_UPDATE whose "d" sets no field of the embedded
//     *VoiceState: onVoiceStateUpdate reads st.ChannelID.
func gatewayProblem(message []byte) string {
	var e *discordgo.Event
	if err := json.NewDecoder(bytes.NewReader(message)).Decode(&e); err != nil {
		return ""
	}
	return eventProblem(e)
}

// eventProblem is gatewayProblem for a decoded message.
func eventProblem(e *discordgo.Event) string {
	if e == nil {
		return "null message"
	}
	if e.Operation != 0 {
		return ""
	}
	switch e.Type {
	case "GUILD_CREATE", "GUILD_UPDATE":
		var g discordgo.GuildCreate
		_ = json.Unmarshal(e.RawData, &g)
		if g.Guild == nil {
			return e.Type + " without guild fields"
		}
		if hasNullEntry(g.Guild) {
			return e.Type + " with a null channel, member or voice state"
		}
	case "READY":
		var r discordgo.Ready
		_ = json.Unmarshal(e.RawData, &r)
		for _, g := range r.Guilds {
			if g == nil || hasNullEntry(g) {
				return "READY with a null guild, or a null entry in a guild"
			}
		}
	case "VOICE_STATE_UPDATE":
		var v discordgo.VoiceStateUpdate
		_ = json.Unmarshal(e.RawData, &v)
		if v.VoiceState == nil {
			return "VOICE_STATE_UPDATE without voice state fields"
		}
	}
	return ""
}

// hasNullEntry reports whether a list that setGuildIds walks has a nil.
func hasNullEntry(g *discordgo.Guild) bool {
	for _, c := range g.Channels {
		if c == nil {
			return true
		}
	}
	for _, m := range g.Members {
		if m == nil {
			return true
		}
	}
	for _, v := range g.VoiceStates {
		if v == nil {
			return true
		}
	}
	return false
}
