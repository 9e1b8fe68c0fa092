package jobs

import (
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

func TestWakeTimerFiresWithinSameSecond(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 3, 1, 12, 0, 0, 100*int(time.Millisecond), time.UTC))
	w, err := newWakeTimer(clock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	for i, wait := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 1500 * time.Millisecond} {
		w.Reset(wait)
		deadline := clock.Now().Add(wait)
		if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(wait)
		select {
		case fired := <-w.Chan():
			if fired.Before(deadline) {
				t.Errorf("wake-up %d fired at %v, before its deadline %v", i, fired, deadline)
			}
		case <-time.After(5 * time.Second):
			next, _ := w.job.NextRun()
			t.Fatalf("wake-up %d, %v after %v, did not fire at its deadline; gocron armed it for %v", i, wait, deadline.Add(-wait), next)
		}
	}
}
