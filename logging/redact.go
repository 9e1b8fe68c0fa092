package logging

import (
	"context"
	"log/slog"
)

// Redacting is a slog.Handler that passes the message and every string
// and error value of a record through redact before the wrapped handler
// receives them. A listener logs what its server sends, and a server can
// echo the token or password that the listener sent it.
type Redacting struct {
	next   slog.Handler
	redact func(string) string
}

// NewRedacting wraps next. A nil redact returns next itself.
func NewRedacting(next slog.Handler, redact func(string) string) slog.Handler {
	if redact == nil {
		return next
	}
	return &Redacting{next: next, redact: redact}
}

// Enabled defers to the wrapped handler.
func (h *Redacting) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle redacts the record and passes it on.
func (h *Redacting) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.redact(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs redacts the attributes and passes them on.
func (h *Redacting) WithAttrs(attrs []slog.Attr) slog.Handler {
	redacted := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		redacted[i] = h.attr(a)
	}
	return &Redacting{next: h.next.WithAttrs(redacted), redact: h.redact}
}

// WithGroup passes the group on.
func (h *Redacting) WithGroup(name string) slog.Handler {
	return &Redacting{next: h.next.WithGroup(name), redact: h.redact}
}

// attr redacts a string or error value, and the members of a group.
func (h *Redacting) attr(a slog.Attr) slog.Attr {
	value := a.Value.Resolve()
	switch value.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.redact(value.String()))
	case slog.KindGroup:
		members := value.Group()
		redacted := make([]any, len(members))
		for i, member := range members {
			redacted[i] = h.attr(member)
		}
		return slog.Group(a.Key, redacted...)
	case slog.KindAny:
		if err, ok := value.Any().(error); ok {
			return slog.String(a.Key, h.redact(err.Error()))
		}
	}
	return slog.Attr{Key: a.Key, Value: value}
}
