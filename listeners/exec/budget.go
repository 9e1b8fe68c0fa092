package exec

import (
	"log/slog"
	"sync"
	"time"
)

// A child that prints without pause, such as `yes`, would otherwise fill
// the daemon's log with gigabytes in seconds. Under systemd it would also
// make journald drop the daemon's own lines, because journald keeps
// 10,000 messages per 30 s of a unit by default. So a listener's child
// may log a burst of outputBurst lines and then outputRate lines a second.
const (
	outputBurst = 500
	outputRate  = 50
	// dropReportInterval is how often a child that keeps over its budget
	// gets a line that counts what was dropped.
	dropReportInterval = 10 * time.Second
)

// outputBudget is a token bucket of output lines for one child. Lines
// come from the stdout and stderr readers at once, so it locks.
type outputBudget struct {
	mu       sync.Mutex
	now      func() time.Time
	tokens   float64
	last     time.Time
	dropped  int
	reported time.Time
}

func newOutputBudget(now func() time.Time) *outputBudget {
	start := now()
	return &outputBudget{now: now, tokens: outputBurst, last: start, reported: start}
}

// take reports whether a line may be logged. When lines were dropped and
// the last report is dropReportInterval old, it also returns how many, so
// the caller can log them.
func (b *outputBudget) take() (allowed bool, dropped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.tokens = min(outputBurst, b.tokens+now.Sub(b.last).Seconds()*outputRate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		allowed = true
	} else {
		b.dropped++
	}
	if b.dropped > 0 && now.Sub(b.reported) >= dropReportInterval {
		dropped, b.dropped, b.reported = b.dropped, 0, now
	}
	return allowed, dropped
}

// flush returns the lines dropped since the last report.
func (b *outputBudget) flush() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	dropped := b.dropped
	b.dropped = 0
	return dropped
}

// logDropped logs how many output lines the budget dropped, if any.
func logDropped(log *slog.Logger, dropped int) {
	if dropped > 0 {
		log.Warn("dropped output lines of the child over its log budget",
			"dropped", dropped, "burst", outputBurst, "lines_per_second", outputRate)
	}
}
