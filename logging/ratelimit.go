package logging

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// RepeatWindow is how long an identical error is held back after it was
// logged.
const RepeatWindow = time.Minute

// RateLimit wraps a handler so that an error record identical to one
// logged within RepeatWindow (same message and attributes) is counted
// instead of logged; the next one logged after the window carries the
// count as "repeats". Records below error level pass through.
type RateLimit struct {
	next  slog.Handler
	attrs []slog.Attr
	state *limitState
}

type limitState struct {
	mu   sync.Mutex
	seen map[string]*seenRecord
	now  func() time.Time
	// swept is the time of the last sweep.
	swept time.Time
}

type seenRecord struct {
	at         time.Time
	suppressed int
}

// NewRateLimit wraps next.
func NewRateLimit(next slog.Handler) *RateLimit {
	return &RateLimit{next: next, state: &limitState{seen: map[string]*seenRecord{}, now: time.Now}}
}

// Enabled defers to the wrapped handler.
func (h *RateLimit) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle logs the record unless it repeats a recent error.
func (h *RateLimit) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		return h.next.Handle(ctx, r)
	}
	key := r.Message
	for _, a := range h.attrs {
		key += "\x00" + a.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		key += "\x00" + a.String()
		return true
	})
	s := h.state
	s.mu.Lock()
	now := s.now()
	if now.Sub(s.swept) >= RepeatWindow {
		s.sweep(now)
	}
	seen, ok := s.seen[key]
	if ok && now.Sub(seen.at) < RepeatWindow {
		seen.suppressed++
		s.mu.Unlock()
		return nil
	}
	repeats := 0
	if ok {
		repeats = seen.suppressed
	}
	s.seen[key] = &seenRecord{at: now}
	if len(s.seen) > 10000 {
		// Forget everything rather than grow without bound.
		s.seen = map[string]*seenRecord{key: s.seen[key]}
	}
	s.mu.Unlock()
	if repeats > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeats", repeats))
	}
	return h.next.Handle(ctx, r)
}

// sweep removes the records whose window has passed and that held
// nothing back. Most error records differ in an attribute such as the
// run ID and never repeat, so without it seen would keep every error
// logged until the 10,000-entry reset. A record with a held-back count
// stays, so that the next identical error still reports it. The caller
// holds mu.
func (s *limitState) sweep(now time.Time) {
	for key, seen := range s.seen {
		if seen.suppressed == 0 && now.Sub(seen.at) >= RepeatWindow {
			delete(s.seen, key)
		}
	}
	s.swept = now
}

// WithAttrs returns a rate limiter over the wrapped handler with attrs.
func (h *RateLimit) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &RateLimit{next: h.next.WithAttrs(attrs), attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...), state: h.state}
}

// WithGroup returns a rate limiter over the wrapped handler's group.
func (h *RateLimit) WithGroup(name string) slog.Handler {
	return &RateLimit{next: h.next.WithGroup(name), attrs: h.attrs, state: h.state}
}
