package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IRCServer is a minimal Twitch chat server on 127.0.0.1 for the daemon's
// Twitch listener. It welcomes any login, echoes JOIN, replies to PING,
// and writes PRIVMSG lines on request. It speaks plain TCP, so a listener
// needs tls = false.
type IRCServer struct {
	listener net.Listener

	mu       sync.Mutex
	conns    []*ircConn
	received []string

	// Sent counts the PRIVMSG lines written to clients.
	Sent atomic.Int64
}

type ircConn struct {
	conn    net.Conn
	writeMu sync.Mutex
	joined  atomic.Bool
	writer  *bufio.Writer
}

// StartIRCServer listens on a free port of 127.0.0.1.
func StartIRCServer() (*IRCServer, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &IRCServer{listener: listener}
	go s.accept()
	return s, nil
}

// Addr returns host:port for the listener's server key.
func (s *IRCServer) Addr() string { return s.listener.Addr().String() }

// Close stops accepting and closes every connection.
func (s *IRCServer) Close() {
	s.listener.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.conn.Close()
	}
}

func (s *IRCServer) accept() {
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			return
		}
		c := &ircConn{conn: conn, writer: bufio.NewWriterSize(conn, 64<<10)}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		go s.serve(c)
	}
}

// serve replies to the client's login, JOIN and PING lines.
func (s *IRCServer) serve(c *ircConn) {
	defer c.conn.Close()
	scanner := bufio.NewScanner(c.conn)
	scanner.Buffer(make([]byte, 4096), 64<<10)
	nick := "justinfan"
	for scanner.Scan() {
		line := strings.TrimSuffix(scanner.Text(), "\r")
		s.mu.Lock()
		if len(s.received) < 10000 {
			s.received = append(s.received, line)
		}
		s.mu.Unlock()
		switch {
		case strings.HasPrefix(line, "CAP REQ "):
			c.write(":tmi.twitch.tv CAP * ACK " + strings.TrimPrefix(line, "CAP REQ "))
		case strings.HasPrefix(line, "NICK "):
			nick = strings.TrimPrefix(line, "NICK ")
			c.write(":tmi.twitch.tv 001 " + nick + " :Welcome, GLHF!")
			c.write(":tmi.twitch.tv 376 " + nick + " :>")
		case strings.HasPrefix(line, "JOIN "):
			for _, channel := range strings.Split(strings.TrimPrefix(line, "JOIN "), ",") {
				c.write(":" + nick + "!" + nick + "@" + nick + ".tmi.twitch.tv JOIN " + channel)
			}
			c.joined.Store(true)
		case strings.HasPrefix(line, "PING "):
			c.write(":tmi.twitch.tv PONG tmi.twitch.tv " + strings.TrimPrefix(line, "PING "))
		}
	}
}

func (c *ircConn) write(lines ...string) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for _, line := range lines {
		if _, err := c.writer.WriteString(line + "\r\n"); err != nil {
			return err
		}
	}
	return c.writer.Flush()
}

// Received returns the lines clients sent, up to the first 10,000.
func (s *IRCServer) Received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.received...)
}

// Joined reports whether a client joined a channel.
func (s *IRCServer) Joined() bool {
	for _, c := range s.joinedConns() {
		if c.joined.Load() {
			return true
		}
	}
	return false
}

// Connections returns how many clients connected so far.
func (s *IRCServer) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *IRCServer) joinedConns() []*ircConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*ircConn
	for _, c := range s.conns {
		if c.joined.Load() {
			out = append(out, c)
		}
	}
	return out
}

// PrivmsgLine returns a Twitch PRIVMSG line with tags, as Twitch sends it.
func PrivmsgLine(channel string, n int64, text string) string {
	return string(AppendPrivmsg(nil, channel, n, time.Now().UnixMilli(), "", text))
}

// AppendPrivmsg appends the line of PrivmsgLine, sent at sentMillis (Unix
// milliseconds) with the emotes tag set to emotes, to buf. It formats no
// strings, so a sender can build lines faster than a listener parses
// them.
func AppendPrivmsg(buf []byte, channel string, n, sentMillis int64, emotes, text string) []byte {
	buf = append(buf, "@badge-info=;badges=;color=#1E90FF;display-name=Alice;emotes="...)
	buf = append(buf, emotes...)
	buf = append(buf, ";first-msg=0;flags=;id=00000000-0000-4000-8000-"...)
	id := strconv.AppendInt(nil, n, 10)
	for range 12 - len(id) {
		buf = append(buf, '0')
	}
	buf = append(buf, id...)
	buf = append(buf, ";mod=0;room-id=1;subscriber=0;tmi-sent-ts="...)
	buf = strconv.AppendInt(buf, sentMillis, 10)
	buf = append(buf, ";turbo=0;user-id=4242;user-type= :alice!alice@alice.tmi.twitch.tv PRIVMSG #"...)
	buf = append(buf, channel...)
	buf = append(buf, " :"...)
	return append(buf, text...)
}

// SendAll writes line to every joined connection and returns how many
// got it.
func (s *IRCServer) SendAll(line string) int {
	n := 0
	for _, c := range s.joinedConns() {
		if c.write(line) == nil {
			n++
		}
	}
	return n
}

// Flood writes PRIVMSG lines to every joined connection at about rate
// lines per second in batches every 10 ms, until ctx ends or count lines
// were written (count <= 0: no limit). It returns the number written.
func (s *IRCServer) Flood(ctx context.Context, channel string, rate, count int) int64 {
	const tick = 10 * time.Millisecond
	perTick := max(rate/100, 1)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var written int64
	for {
		select {
		case <-ctx.Done():
			return written
		case <-ticker.C:
		}
		batch := make([]string, 0, perTick)
		for range perTick {
			n := s.Sent.Add(1)
			batch = append(batch, PrivmsgLine(channel, n, fmt.Sprintf("message %d", n)))
		}
		for _, c := range s.joinedConns() {
			if c.write(batch...) == nil {
				written += int64(len(batch))
			}
		}
		if count > 0 && written >= int64(count) {
			return written
		}
	}
}

// Blast writes count PRIVMSG lines, numbered from 1, to the first joined
// connection as fast as it reads them, in writes of about 64 KiB. Every
// fourth line starts with an emote, as Twitch marks it in the emotes tag.
// It returns the number of lines written.
func (s *IRCServer) Blast(channel string, count int) (int, error) {
	conns := s.joinedConns()
	if len(conns) == 0 {
		return 0, fmt.Errorf("blast chat lines: no client has joined")
	}
	c := conns[0]
	chunk := make([]byte, 0, 80<<10)
	written := 0
	for written < count {
		chunk = chunk[:0]
		lines := 0
		now := time.Now().UnixMilli()
		for written+lines < count && len(chunk) < 64<<10 {
			n := int64(written + lines + 1)
			if n%4 == 0 {
				chunk = AppendPrivmsg(chunk, channel, n, now, "25:0-4", "Kappa message "+strconv.FormatInt(n, 10))
			} else {
				chunk = AppendPrivmsg(chunk, channel, n, now, "", "message "+strconv.FormatInt(n, 10))
			}
			chunk = append(chunk, '\r', '\n')
			lines++
		}
		if err := c.writeRaw(chunk); err != nil {
			return written, fmt.Errorf("blast chat lines: %w", err)
		}
		written += lines
		s.Sent.Add(int64(lines))
	}
	return written, nil
}

// writeRaw writes bytes that already end in CRLF, after anything that
// write buffered.
func (c *ircConn) writeRaw(data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if err := c.writer.Flush(); err != nil {
		return err
	}
	_, err := c.conn.Write(data)
	return err
}
