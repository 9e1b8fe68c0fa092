package exec

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBudgetBurstThenRate(t *testing.T) {
	now := time.Unix(1000, 0)
	budget := newOutputBudget(func() time.Time { return now })
	allowed := 0
	for range outputBurst + 100 {
		if ok, _ := budget.take(); ok {
			allowed++
		}
	}
	if allowed != outputBurst {
		t.Errorf("%d lines allowed at once, want the burst of %d", allowed, outputBurst)
	}

	now = now.Add(time.Second)
	allowed = 0
	for range 2 * outputRate {
		if ok, _ := budget.take(); ok {
			allowed++
		}
	}
	if allowed != outputRate {
		t.Errorf("%d lines allowed a second later, want %d", allowed, outputRate)
	}
}

func TestBudgetReportsDroppedLines(t *testing.T) {
	now := time.Unix(1000, 0)
	budget := newOutputBudget(func() time.Time { return now })
	for range outputBurst + 7 {
		if _, dropped := budget.take(); dropped != 0 {
			t.Fatalf("a report of %d dropped lines before the report interval", dropped)
		}
	}

	now = now.Add(dropReportInterval)
	_, dropped := budget.take()
	if dropped != 7 {
		t.Errorf("report of %d dropped lines, want 7", dropped)
	}
	if left := budget.flush(); left != 0 {
		t.Errorf("flush after a report = %d, want 0", left)
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
