package twitch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	irc "github.com/gempir/go-twitch-irc/v4"

	"github.com/agent-runner/agent-runner/listeners"
)

// rejectLine is the line the relay sends to every connection after the
// first. go-twitch-irc's Connect returns ErrLoginAuthenticationFailed on
// it instead of dialing again.
const rejectLine = ":tmi.twitch.tv NOTICE * :Login unsuccessful\r\n"

// maxServerLineBytes bounds one line from the server. A longer line is
// dropped, because the relay must see a whole line to check it.
const maxServerLineBytes = 64 << 10

// maxDropLogs caps the log lines about dropped lines per connection.
const maxDropLogs = 10

// relay carries one connection between the go-twitch-irc client and the
// server, so that this package owns the socket. That lets it close the
// connection before the client has logged in, notice a stall, and keep
// the client from reconnecting by itself (see the package comment).
//
// It listens on 127.0.0.1 and takes the first connection as the
// client's. Its port stays bound until Connect returns, so that no other
// process can take it and receive a redial with the token.
//
// It reads the server's data line by line. Chat lines, PRIVMSG and
// USERNOTICE, become events on the relay's goroutine and are not passed
// on, so go-twitch-irc parses only the lines of the protocol: its parse
// of a chat line costs several times the rest of the listener. The relay
// keeps the client's parser from stopping while lines are still on their
// way to it, because its reader goroutine then blocks for ever (see the
// package comment). A line that makes the parser panic is dropped, and
// after a line that ends the parser (RECONNECT, or a login failure)
// nothing more is sent.
// Close half-closes the client's connection, so the client reads what was
// sent, sees the end of the stream and redials, and the relay rejects the
// redial.
type relay struct {
	listener net.Listener
	upstream net.Conn
	server   string
	idle     time.Duration
	// writeTimeout bounds each write to the server.
	writeTimeout time.Duration
	log          *slog.Logger
	relayHooks
	// passedWelcome is set once the relay has passed on the server's
	// welcome. Only the relay's goroutine uses it.
	passedWelcome bool
	// dropped counts the lines dropped, for the log.
	dropped int

	mu       sync.Mutex
	local    net.Conn
	rejected []net.Conn
	closed   bool

	wg sync.WaitGroup
}

// relayHooks are the callbacks through which a relay reports to its
// session.
type relayHooks struct {
	// fail records why the connection ended and shuts the session down.
	fail func(error)
	// ending returns why a message ends go-twitch-irc's parser, or nil.
	ending func(irc.Message) error
	// name is the listener's name, which its events carry.
	name string
	// deliver takes the events of chat lines, which the relay converts
	// itself instead of passing them on.
	deliver func(listeners.Event)
}

func newRelay(upstream net.Conn, server string, idle, writeTimeout time.Duration, log *slog.Logger, hooks relayHooks) (*relay, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1 for go-twitch-irc: %w", err)
	}
	return &relay{
		listener: listener, upstream: upstream, server: server, idle: idle,
		writeTimeout: writeTimeout, log: log, relayHooks: hooks,
	}, nil
}

// addr returns the host:port the client dials.
func (r *relay) addr() string { return r.listener.Addr().String() }

// start accepts connections until finish.
func (r *relay) start() {
	r.wg.Add(1)
	go r.accept()
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		conn, err := r.listener.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		first := r.local == nil && !r.closed
		if first {
			r.local = conn
		} else {
			r.rejected = append(r.rejected, conn)
		}
		r.mu.Unlock()

		r.wg.Add(1)
		if first {
			r.wg.Add(1)
			go r.copyToClient(conn)
			go r.copyToServer(conn)
		} else {
			go r.reject(conn)
		}
	}
}

// keepaliveLine is the line the relay passes on in place of a batch of
// chat lines. go-twitch-irc counts any line as traffic, and without it
// the client would send a PING every IdlePingInterval during a busy chat
// and end the session when a server sends no PONG. It parses as a
// message the client ignores.
const keepaliveLine = ":tmi.twitch.tv 372 agent-runner :chat\r\n"

// copyToClient copies the server's lines to the client and ends the
// connection when the server sends nothing for the idle timeout. Lines
// are buffered and written together once no whole line is left to read,
// so a burst costs one write for many lines and a lone line is not held.
// Lines buffered before a chat line are written before its event is
// delivered, so an event never overtakes the welcome that precedes it.
func (r *relay) copyToClient(local net.Conn) {
	defer r.wg.Done()
	reader := bufio.NewReaderSize(r.upstream, maxServerLineBytes)
	writer := bufio.NewWriterSize(local, maxServerLineBytes)
	// chat is set when chat lines arrived since the last write.
	chat := false
	for {
		if !hasWholeLine(reader) {
			if chat && writer.Buffered() == 0 {
				_, _ = writer.WriteString(keepaliveLine)
			}
			chat = false
			if writer.Flush() != nil {
				r.end(r.clientClosed())
				return
			}
			_ = r.upstream.SetReadDeadline(time.Now().Add(r.idle))
		}
		line, err := reader.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			r.drop(fmt.Sprintf("longer than %d bytes", maxServerLineBytes))
			err = skipRestOfLine(reader)
			line = nil
		}
		if len(line) > 0 {
			verdict := r.inspect(line)
			if verdict.chat {
				if writer.Buffered() > 0 && writer.Flush() != nil {
					r.end(r.clientClosed())
					return
				}
				r.deliver(verdict.event)
				chat = true
			}
			if verdict.forward {
				_, _ = writer.Write(line)
				// go-twitch-irc takes a line with this text as the welcome.
				r.passedWelcome = r.passedWelcome || bytes.Contains(line, []byte(":tmi.twitch.tv 001"))
			}
			if verdict.cause != nil {
				_ = writer.Flush()
				closeWrite(local)
				r.end(verdict.cause)
				return
			}
		}
		if err != nil {
			_ = writer.Flush()
			r.end(r.readError(err))
			return
		}
	}
}

// hasWholeLine reports whether reader's buffer contains a whole line, so
// that the next ReadSlice returns without reading the socket.
func hasWholeLine(reader *bufio.Reader) bool {
	buffered, _ := reader.Peek(reader.Buffered())
	return bytes.IndexByte(buffered, '\n') >= 0
}

// skipRestOfLine reads up to and including the next newline.
func skipRestOfLine(reader *bufio.Reader) error {
	for {
		_, err := reader.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}

// lineVerdict is the relay's decision about one line from the server.
type lineVerdict struct {
	// chat is set for a chat line, PRIVMSG or USERNOTICE, whose event
	// the relay delivers instead of passing the line on.
	chat  bool
	event listeners.Event
	// forward is set for a line to pass on to the client.
	forward bool
	// cause is the reason the session ends after this line, or nil.
	cause error
}

// inspect parses a line as go-twitch-irc will. A chat line, PRIVMSG or
// USERNOTICE, becomes an event here and goes no further, since the
// client would only parse it again. Any other line is passed on unless
// it makes the parser panic. A line that ends go-twitch-irc's parser also
// ends the session, so that nothing follows it.
func (r *relay) inspect(line []byte) lineVerdict {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if safePrivmsg(line) {
		return lineVerdict{chat: true, event: fastPrivmsgEvent(r.name, line)}
	}
	message, panicked := parseMessage(string(line))
	if panicked != nil {
		r.drop(fmt.Sprintf("go-twitch-irc panics on it: %v", panicked))
		return lineVerdict{}
	}
	switch m := message.(type) {
	case *irc.PrivateMessage:
		return lineVerdict{chat: true, event: privateMessageEvent(r.name, *m)}
	case *irc.UserNoticeMessage:
		return lineVerdict{chat: true, event: userNoticeEvent(r.name, *m)}
	}
	return lineVerdict{forward: true, cause: r.ending(message)}
}

// safePrivmsg reports whether line is a PRIVMSG that go-twitch-irc's
// parser takes without a panic, and that fastPrivmsgEvent reads as the
// parser does. The scan costs a fraction of a parse. It
// splits the line as the parser does and checks what the parser's
// PRIVMSG path indexes: a parameter after the command, and a "/" in every
// badge. Lines with emotes or with an escape in their tags, and any other
// line it is unsure of, go through the parser.
func safePrivmsg(line []byte) bool {
	parts := splitLine(line)
	return string(parts.command) == "PRIVMSG" && parts.hasParams && safePrivmsgTags(parts.tags)
}

// safePrivmsgTags reports whether the tags of a PRIVMSG, "@" included,
// are safe for the parser. Without a backslash, the parser's value of a
// tag is the raw value with spaces trimmed, and the last of repeated
// keys wins.
func safePrivmsgTags(tags []byte) bool {
	if bytes.IndexByte(tags, '\\') >= 0 {
		return false
	}
	var badges, emotes []byte
	for tag := range bytes.SplitSeq(bytes.TrimPrefix(tags, []byte("@")), []byte(";")) {
		key, value, _ := bytes.Cut(tag, []byte("="))
		switch string(key) {
		case "badges":
			badges = bytes.TrimSpace(value)
		case "emotes":
			emotes = bytes.TrimSpace(value)
		}
	}
	if len(emotes) > 0 {
		return false
	}
	if len(badges) == 0 {
		return true
	}
	for badge := range bytes.SplitSeq(badges, []byte(",")) {
		if bytes.IndexByte(badge, '/') < 0 {
			return false
		}
	}
	return true
}

// parseMessage runs go-twitch-irc's ParseMessage and returns what it
// panicked with, if it did.
func parseMessage(text string) (message irc.Message, panicked any) {
	defer func() { panicked = recover() }()
	return irc.ParseMessage(text), nil
}

// drop logs a dropped line, up to maxDropLogs times per connection.
func (r *relay) drop(reason string) {
	r.dropped++
	switch {
	case r.dropped <= maxDropLogs:
		r.log.Warn("dropped a line from the server", "reason", reason, "dropped", r.dropped)
	case r.dropped == maxDropLogs+1:
		r.log.Warn("dropping more lines from the server; not logging each", "dropped", r.dropped)
	}
}

// closeWrite half-closes conn, so its peer reads what was sent and then
// the end of the stream; a conn without half-close is closed.
func closeWrite(conn net.Conn) {
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.CloseWrite()
		return
	}
	conn.Close()
}

// copyToServer copies the client's lines to the server. Once the relay
// is closed it reads and discards them until finish, so that the client's
// writes do not fail and make it stop its parser early. A write that a
// server does not read within writeTimeout ends the connection, because
// without a deadline it would block sends for good while the server's
// lines keep the connection looking alive.
func (r *relay) copyToServer(local net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := local.Read(buf)
		if n > 0 && !r.isClosed() {
			_ = r.upstream.SetWriteDeadline(time.Now().Add(r.writeTimeout))
			if _, werr := r.upstream.Write(buf[:n]); werr != nil && !r.isClosed() {
				r.end(r.writeError(werr))
				return
			}
		}
		if err != nil {
			r.end(r.clientClosed())
			return
		}
	}
}

func (r *relay) readError(err error) error {
	var netErr net.Error
	switch {
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("connection to %s stalled: no data for %s", r.server, r.idle)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("connection to %s closed by the server", r.server)
	}
	return fmt.Errorf("read from %s: %w", r.server, err)
}

func (r *relay) writeError(err error) error {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fmt.Errorf("write to %s timed out: the server read nothing for %s", r.server, r.writeTimeout)
	}
	return fmt.Errorf("write to %s: %w", r.server, err)
}

// clientClosed is the error for a connection that go-twitch-irc closed,
// which it does after an unanswered PING or a failed write. A write to
// the server fails in the relay first, so the message names the PING.
func (r *relay) clientClosed() error {
	return fmt.Errorf("connection to %s closed by go-twitch-irc: the server sent no PONG within %s of a PING", r.server, r.idle)
}

func (r *relay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// end reports why the connection ended, unless the relay was closed
// first, because then the error is only a consequence of that.
func (r *relay) end(err error) {
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if !closed {
		r.fail(err)
	}
}

// reject sends a login failure to a connection after the first and
// keeps it open until the client reads that and hangs up, or for at most
// stopGrace.
func (r *relay) reject(conn net.Conn) {
	defer r.wg.Done()
	_ = conn.SetDeadline(time.Now().Add(stopGrace))
	_, _ = io.WriteString(conn, rejectLine)
	_, _ = io.Copy(io.Discard, conn)
	conn.Close()
}

// rejectedAny reports whether the relay rejected a connection.
func (r *relay) rejectedAny() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rejected) > 0
}

// close closes the server connection and half-closes the client's, but
// keeps the port.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	local := r.local
	r.mu.Unlock()
	r.upstream.Close()
	if local != nil {
		closeWrite(local)
	}
}

// finish closes everything and waits for the relay's goroutines. Call it
// only after Connect returned.
func (r *relay) finish() {
	r.close()
	r.listener.Close()
	r.mu.Lock()
	rejected := r.rejected
	local := r.local
	r.mu.Unlock()
	if local != nil {
		local.Close()
	}
	for _, conn := range rejected {
		conn.Close()
	}
	r.wg.Wait()
}
