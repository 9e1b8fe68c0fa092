// Package logging holds the daemon's log/slog handlers: one that writes
// to the systemd journal with structured fields, and one that
// rate-limits repeated errors.
package logging

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
)

// JournalSocket is where journald takes native-protocol datagrams.
const JournalSocket = "/run/systemd/journal/socket"

// UnderJournal reports whether stderr is connected to journald, which
// systemd says through JOURNAL_STREAM for services it starts.
func UnderJournal() bool {
	return os.Getenv("JOURNAL_STREAM") != ""
}

// JournalHandler writes records to journald's native protocol, so each
// attribute becomes a field: journalctl JOB=digest then shows one job's
// lines, as journalctl -u did for a unit per job.
type JournalHandler struct {
	conn  *net.UnixConn
	level slog.Leveler
	attrs []slog.Attr
	group string
	mu    *sync.Mutex
}

// NewJournalHandler connects to the journal socket at path.
func NewJournalHandler(path string, level slog.Leveler) (*JournalHandler, error) {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("connect to journald: %w", err)
	}
	return &JournalHandler{conn: conn, level: level, mu: &sync.Mutex{}}, nil
}

// Enabled reports whether the level is logged.
func (h *JournalHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// Handle sends one record as one datagram.
func (h *JournalHandler) Handle(_ context.Context, r slog.Record) error {
	var buf bytes.Buffer
	writeField(&buf, "MESSAGE", r.Message)
	writeField(&buf, "PRIORITY", priority(r.Level))
	writeField(&buf, "SYSLOG_IDENTIFIER", "agent-runner")
	for _, a := range h.attrs {
		h.writeAttr(&buf, a)
	}
	r.Attrs(func(a slog.Attr) bool {
		h.writeAttr(&buf, a)
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.conn.Write(buf.Bytes())
	return err
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *JournalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

// WithGroup returns a handler that prefixes later keys with name.
func (h *JournalHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.group = strings.Trim(h.group+"_"+name, "_")
	return &c
}

func (h *JournalHandler) writeAttr(buf *bytes.Buffer, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	key := fieldName(strings.Trim(h.group+"_"+a.Key, "_"))
	if key == "" {
		return
	}
	writeField(buf, key, a.Value.String())
}

// fieldName turns a slog key into a journal field name: upper case
// letters, digits and underscores, not starting with an underscore or a
// digit, since journald drops other names.
func fieldName(key string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(key) {
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9' && b.Len() > 0:
			b.WriteRune(c)
		case b.Len() > 0:
			b.WriteByte('_')
		}
	}
	return strings.TrimRight(b.String(), "_")
}

// writeField writes KEY=value, or the length-prefixed form the native
// protocol requires for a value with a newline.
func writeField(buf *bytes.Buffer, key, value string) {
	buf.WriteString(key)
	if !strings.Contains(value, "\n") {
		buf.WriteByte('=')
		buf.WriteString(value)
		buf.WriteByte('\n')
		return
	}
	buf.WriteByte('\n')
	_ = binary.Write(buf, binary.LittleEndian, uint64(len(value)))
	buf.WriteString(value)
	buf.WriteByte('\n')
}

// priority maps slog levels to syslog priorities.
func priority(level slog.Level) string {
	switch {
	case level >= slog.LevelError:
		return "3"
	case level >= slog.LevelWarn:
		return "4"
	case level >= slog.LevelInfo:
		return "6"
	default:
		return "7"
	}
}
