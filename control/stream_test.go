package control

import (
	"strings"
	"testing"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/state"
)

// drainAll drains q and returns the messages written.
func drainAll(t *testing.T, q *outputQueue) []Message {
	t.Helper()
	var got []Message
	if err := q.drain(func(m Message) error { got = append(got, m); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestOutputQueueDropsPastItsCap(t *testing.T) {
	q := newOutputQueue()
	text := strings.Repeat("x", 1<<20)
	for range 6 {
		q.addLine(jobs.Line{Stream: "stdout", Text: text})
	}
	q.finish(Message{Run: &state.Run{ID: "1"}})
	got := drainAll(t, q)
	if len(got) != 4 {
		t.Fatalf("drained %d messages, want 3 lines of 1 MiB and the final one", len(got))
	}
	if final := got[3]; final.Run == nil || final.OutputDropped != 3 {
		t.Errorf("final message %+v, want the run with 3 lines dropped", final)
	}
}

func TestOutputQueueBoundsEmptyLines(t *testing.T) {
	q := newOutputQueue()
	for range 200000 {
		q.addLine(jobs.Line{Stream: "stdout"})
	}
	q.finish(Message{Run: &state.Run{ID: "1"}})
	got := drainAll(t, q)
	if final := got[len(got)-1]; final.OutputDropped == 0 || len(got)-1 > maxQueuedOutput/lineOverhead {
		t.Errorf("queued %d empty lines and dropped %d, want at most %d queued", len(got)-1, final.OutputDropped, maxQueuedOutput/lineOverhead)
	}
}

func TestOutputQueueKeepsOrder(t *testing.T) {
	q := newOutputQueue()
	var got []Message
	done := make(chan error)
	go func() {
		done <- q.drain(func(m Message) error { got = append(got, m); return nil })
	}()
	q.add(Message{Started: &state.Run{ID: "1"}})
	for _, text := range []string{"one", "two", "three"} {
		q.addLine(jobs.Line{Stream: "stdout", Text: text})
	}
	q.finish(Message{Run: &state.Run{ID: "1"}})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, m := range got {
		switch {
		case m.Started != nil:
			order = append(order, "started")
		case m.Line != nil:
			order = append(order, m.Line.Text)
		case m.Run != nil:
			order = append(order, "run")
		}
	}
	if strings.Join(order, ",") != "started,one,two,three,run" {
		t.Errorf("drained %q, want the messages in order", order)
	}
}
