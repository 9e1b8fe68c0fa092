// Package wait pauses a goroutine for a duration unless its context ends
// first, for the backoffs and rate-limit pauses of jobs, listeners and
// alert sinks.
package wait

import (
	"context"
	"time"
)

// For waits for d and returns nil, or returns context.Cause(ctx) when ctx
// ends first. A d of zero or less returns at once, with the cause when
// ctx has already ended.
func For(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return context.Cause(ctx)
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
