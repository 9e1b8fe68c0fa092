package control

import (
	"strings"
	"testing"

	"github.com/agent-runner/agent-runner/jobs"
)

func TestOutputQueueDropsPastItsCap(t *testing.T) {
	q := newOutputQueue()
	line := strings.Repeat("x", 1<<20)
	for range 6 {
		q.add(jobs.Line{Stream: "stdout", Text: line})
	}
	q.close()
	var got int
	dropped, err := q.drain(func(jobs.Line) error { got++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if got != 4 || dropped != 2 {
		t.Errorf("drained %d lines and dropped %d, want 4 and 2 of 6 lines of 1 MiB", got, dropped)
	}
}

func TestOutputQueueKeepsOrder(t *testing.T) {
	q := newOutputQueue()
	var got []string
	done := make(chan error)
	go func() {
		_, err := q.drain(func(l jobs.Line) error { got = append(got, l.Text); return nil })
		done <- err
	}()
	for _, text := range []string{"one", "two", "three"} {
		q.add(jobs.Line{Stream: "stdout", Text: text})
	}
	q.close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "one,two,three" {
		t.Errorf("drained %q, want the lines in order", got)
	}
}
