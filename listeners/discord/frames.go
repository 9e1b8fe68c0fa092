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

	"github.com/bwmarrin/discordgo"
)

const (
	// maxGatewayMessageBytes bounds one gateway message, compressed or
	// not, that the frame filter buffers. Discord's largest dispatches,
	// GUILD_CREATE of big guilds, are a few MiB.
	maxGatewayMessageBytes = 256 << 20
	// maxFrameDropLogs caps the log lines about dropped messages per
	// connection.
	maxFrameDropLogs = 10
)

// WebSocket opcodes of RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opBinary       = 0x2
	opClose        = 0x8
)

// frameFilter sits between the gateway connection and discordgo's
// websocket client, and drops each message from the gateway that would
// make discordgo v0.28.1 panic on one of its own goroutines, where no
// recover of this package reaches (see gatewayProblem). It passes the
// HTTP upgrade response, control frames and every other message through
// unchanged, byte for byte, and reads the client's writes through the
// embedded net.Conn untouched.
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
}

func newFrameFilter(conn net.Conn, log *slog.Logger) *frameFilter {
	return &frameFilter{Conn: conn, reader: bufio.NewReaderSize(conn, 64<<10), log: log}
}

func (f *frameFilter) Read(p []byte) (int, error) {
	for f.pending.Len() == 0 && f.err == nil {
		f.err = f.next()
	}
	if f.pending.Len() > 0 {
		return f.pending.Read(p)
	}
	return 0, f.err
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
	}
	f.headerLines++
	f.pending.Write(line)
	if string(line) == "\r\n" {
		f.upgraded = true
	}
	return err
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
		return fmt.Errorf("read gateway message: longer than %d bytes", maxGatewayMessageBytes)
	}
	f.message = append(f.message, raw...)
	f.payload = append(f.payload, payload...)
	if !fin {
		return nil
	}
	if problem := f.check(); problem != "" {
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
		return nil, nil, fmt.Errorf("read gateway frame: %d bytes, more than %d", length, maxGatewayMessageBytes)
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
// "". A binary message is zlib-compressed JSON, as discordgo reads it.
func (f *frameFilter) check() string {
	data := f.payload
	if f.opcode == opBinary {
		z, err := zlib.NewReader(bytes.NewReader(data))
		if err != nil {
			return ""
		}
		defer z.Close()
		data, err = io.ReadAll(io.LimitReader(z, maxGatewayMessageBytes))
		if err != nil {
			return ""
		}
	}
	return gatewayProblem(data)
}

func (f *frameFilter) drop(problem string) {
	f.dropped++
	switch {
	case f.dropped <= maxFrameDropLogs:
		f.log.Warn("dropped a gateway message that would crash discordgo", "reason", problem, "dropped", f.dropped)
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
