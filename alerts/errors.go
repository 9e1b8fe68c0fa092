package alerts

import "time"

// PermanentError is a failed delivery that retrying cannot fix, such as an
// HTTP 400 or 404 from a webhook.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// RetryAfterError is a failed delivery whose receiver requested a wait before
// the next attempt, such as an HTTP 429 with retry_after.
type RetryAfterError struct {
	Wait time.Duration
	Err  error
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }
