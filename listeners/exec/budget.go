package exec

import (
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"
)

// A child that prints without pause, such as `yes`, would otherwise fill
// the daemon's log with gigabytes in seconds. Under systemd it would also
// make journald drop the daemon's own lines, because journald keeps
// 10,000 messages per 30 s of a unit by default. So a listener's child
// may log a burst of outputBurst lines and then outputRate lines a second.
// A line counts once per started outputLineBytes, because a child's lines
// can be up to 64 KiB long. Counted as one each, 50 of them a second
// would write over 3 MB a second to the log.
const (
	outputBurst     = 500
	outputRate      = 50
	outputLineBytes = 512
	// dropReportInterval is how often a child that keeps over its budget
	// gets a line that counts what was dropped.
	dropReportInterval = 10 * time.Second
)

// outputBudget is a token bucket of output lines for one child. Lines
// come from the stdout and stderr readers at once, so it locks. The count
// of dropped lines is reported on a timer, so that a burst followed by
// silence is reported within dropReportInterval, not when the child ends.
type outputBudget struct {
	mu       sync.Mutex
	now      func() time.Time
	report   func(dropped int)
	tokens   float64
	last     time.Time
	dropped  int
	reported time.Time
	timer    *time.Timer
}

// newOutputBudget returns a full budget that passes the count of dropped
// lines to report.
func newOutputBudget(now func() time.Time, report func(dropped int)) *outputBudget {
	start := now()
	return &outputBudget{now: now, report: report, tokens: outputBurst, last: start, reported: start}
}

// take reports whether a line of size bytes may be logged, and counts it
// as dropped when it may not. The line costs one token per started
// outputLineBytes.
func (b *outputBudget) take(size int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.tokens = min(outputBurst, b.tokens+now.Sub(b.last).Seconds()*outputRate)
	b.last = now
	cost := float64(max(1, (size+outputLineBytes-1)/outputLineBytes))
	// A line that costs more than the burst is logged once the bucket is
	// full, and the debt it leaves keeps the rate.
	if b.tokens >= min(cost, outputBurst) {
		b.tokens -= cost
		return true
	}
	b.dropped++
	if b.timer == nil {
		wait := max(dropReportInterval-now.Sub(b.reported), 0)
		b.timer = time.AfterFunc(wait, b.reportDropped)
	}
	return false
}

// reportDropped passes on the lines dropped since the last report.
func (b *outputBudget) reportDropped() {
	b.mu.Lock()
	dropped := b.dropped
	b.dropped, b.reported, b.timer = 0, b.now(), nil
	b.mu.Unlock()
	if dropped > 0 {
		b.report(dropped)
	}
}

// flush reports what is still counted, once the child's output is read.
func (b *outputBudget) flush() {
	b.mu.Lock()
	if b.timer != nil {
		b.timer.Stop()
	}
	b.mu.Unlock()
	b.reportDropped()
}

// loggedSize returns how many bytes text can take in the log, which take
// counts. The JSON handler writes a control character or a byte that is
// not UTF-8 as a 6-byte escape such as \u0001, and a quote or backslash
// as 2 bytes. Counted by its length, a child printing binary data would
// log 6 times its budget.
func loggedSize(text string) int {
	size := 0
	for i := 0; i < len(text); {
		r, width := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == utf8.RuneError && width == 1, r < 0x20, r == 0x7f:
			size += 6
		case r == '"', r == '\\':
			size += 2
		default:
			size += width
		}
		i += width
	}
	return size
}

// logDropped returns a report function that logs how many output lines
// the budget dropped.
func logDropped(log *slog.Logger) func(int) {
	return func(dropped int) {
		log.Warn("dropped output lines of the child over its log budget",
			"dropped", dropped, "burst", outputBurst, "lines_per_second", outputRate)
	}
}
