package wait

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestForWaitsOutDuration(t *testing.T) {
	start := time.Now()
	if err := For(context.Background(), 20*time.Millisecond); err != nil {
		t.Fatalf("For: got %v, want nil", err)
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("For returned after %v, want at least 20ms", took)
	}
}

func TestForReturnsCauseWhenCancelled(t *testing.T) {
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(10*time.Millisecond, func() { cancel(cause) })
	if err := For(ctx, time.Hour); !errors.Is(err, cause) {
		t.Errorf("For: got %v, want the cancel cause", err)
	}
}

func TestForZeroDuration(t *testing.T) {
	if err := For(context.Background(), 0); err != nil {
		t.Errorf("For(0) with a live context: got %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := For(ctx, -time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("For(-1s) with an ended context: got %v, want context.Canceled", err)
	}
}
