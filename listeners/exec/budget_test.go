package exec

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBudgetBurstThenRate(t *testing.T) {
	now := time.Unix(1000, 0)
	budget := newOutputBudget(func() time.Time { return now }, func(int) {})
	defer budget.flush()
	allowed := 0
	for range outputBurst + 100 {
		if budget.take(10) {
			allowed++
		}
	}
	if allowed != outputBurst {
		t.Errorf("%d lines allowed at once, want the burst of %d", allowed, outputBurst)
	}

	now = now.Add(time.Second)
	allowed = 0
	for range 2 * outputRate {
		if budget.take(10) {
			allowed++
		}
	}
	if allowed != outputRate {
		t.Errorf("%d lines allowed a second later, want %d", allowed, outputRate)
	}
}

// A child's lines may be 64 KiB long, so a budget of lines alone let it
// log megabytes a second.
func TestBudgetCountsLongLinesBySize(t *testing.T) {
	now := time.Unix(1000, 0)
	budget := newOutputBudget(func() time.Time { return now }, func(int) {})
	defer budget.flush()
	line := 64 << 10
	logged := 0
	for range 10 * outputBurst {
		if budget.take(line) {
			logged += line
		}
	}
	for range 60 {
		now = now.Add(time.Second)
		for range outputRate {
			if budget.take(line) {
				logged += line
			}
		}
	}
	limit := (outputBurst + 60*outputRate) * outputLineBytes
	if logged > limit {
		t.Errorf("%d bytes of 64 KiB lines logged in a burst and a minute, want at most %d", logged, limit)
	}
	if logged == 0 {
		t.Error("no 64 KiB line logged in a burst and a minute")
	}
}

func TestBudgetReportsDropsAfterSilence(t *testing.T) {
	var reported atomic.Int64
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	budget := newOutputBudget(clock, func(n int) { reported.Add(int64(n)) })
	// The budget's start is nearly an interval old, so the timer fires
	// half a second after the first drop, once all the drops are counted.
	now.Add(int64(dropReportInterval - 500*time.Millisecond))
	for range outputBurst + 7 {
		budget.take(10)
	}
	deadline := time.Now().Add(5 * time.Second)
	for reported.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := reported.Load(); got != 7 {
		t.Errorf("reported %d dropped lines with no line after them, want 7", got)
	}
	budget.flush()
	if got := reported.Load(); got != 7 {
		t.Errorf("flush after the report made it %d, want still 7", got)
	}
}

// logHost is a fakeHost whose log is kept.
type logHost struct {
	fakeHost
	mu  sync.Mutex
	buf bytes.Buffer
}

func (h *logHost) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.Write(p)
}

func (h *logHost) Log() *slog.Logger { return slog.New(slog.NewTextHandler(h, nil)) }

func (h *logHost) text() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.String()
}

func TestFloodingChildKeepsToBudget(t *testing.T) {
	l, _ := newExec(t, "yes | head -n 20000; exit 1", nil)
	host := &logHost{}
	start := time.Now()
	_ = l.Run(context.Background(), host)
	elapsed := time.Since(start)

	logged := strings.Count(host.text(), "msg=output")
	limit := outputBurst + int(elapsed.Seconds()*outputRate) + 1
	if logged > limit {
		t.Errorf("%d output lines logged in %s, want at most %d", logged, elapsed, limit)
	}
	if !strings.Contains(host.text(), "dropped output lines") {
		t.Errorf("the log does not count the dropped lines:\n%.2000s", host.text())
	}
}

// jsonLogHost is a logHost that logs JSON, which escapes control
// characters.
type jsonLogHost struct{ logHost }

func (h *jsonLogHost) Log() *slog.Logger { return slog.New(slog.NewJSONHandler(h, nil)) }

// TestBinaryOutputKeepsToByteBudget checks that a child printing control
// characters, which the JSON log writes as 6-byte escapes, logs no more
// bytes than the budget allows for plain text.
func TestBinaryOutputKeepsToByteBudget(t *testing.T) {
	l, _ := newExec(t, "head -c 2000000 /dev/zero | tr '\\0' '\\1' | fold -w 1000; exit 1", nil)
	host := &jsonLogHost{}
	start := time.Now()
	_ = l.Run(context.Background(), host)
	elapsed := time.Since(start)

	var logged int
	for line := range strings.Lines(host.text()) {
		if strings.Contains(line, `"msg":"output"`) {
			logged += len(line)
		}
	}
	// Each logged line may start a token's worth of bytes and carries
	// about 150 bytes of time, level and keys besides its text.
	tokens := outputBurst + int(elapsed.Seconds()*outputRate) + 1
	if limit := tokens * (outputLineBytes + 200); logged > limit {
		t.Errorf("%d bytes of output logged in %s, want at most %d", logged, elapsed, limit)
	}
}

// TestBudgetPassesLinesOverTheBurst checks that a line that costs more
// than the burst is logged once the budget is full, and then costs its
// size.
func TestBudgetPassesLinesOverTheBurst(t *testing.T) {
	// The clock is atomic because the drop report reads it on a timer.
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	budget := newOutputBudget(func() time.Time { return time.Unix(0, now.Load()) }, func(int) {})
	defer budget.flush()
	line := 2 * outputBurst * outputLineBytes
	if !budget.take(line) {
		t.Fatal("a full budget dropped a line that costs twice the burst")
	}
	// The first line leaves a debt of one burst, which takes as long to
	// pay as the burst then takes to refill.
	now.Add(int64(outputBurst / outputRate * time.Second))
	if budget.take(line) {
		t.Error("a second long line passed before the debt of the first was paid")
	}
	now.Add(int64(outputBurst / outputRate * time.Second))
	if !budget.take(line) {
		t.Error("a long line was dropped after the debt was paid and the budget refilled")
	}
}
