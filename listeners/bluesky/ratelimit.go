package bluesky

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/agent-runner/agent-runner/internal/wait"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/bluesky-social/indigo/atproto/atclient"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// rateLimitReset returns when a 429 response allows the next request. It
// reads the ratelimit-reset header (Unix seconds) that Bluesky servers
// send, then the standard Retry-After header (seconds or an HTTP date),
// and falls back to now plus fallback.
func rateLimitReset(header http.Header, now time.Time, fallback time.Duration) time.Time {
	if reset, err := strconv.ParseInt(header.Get("Ratelimit-Reset"), 10, 64); err == nil {
		return time.Unix(reset, 0)
	}

	retryAfter := header.Get("Retry-After")
	if seconds, err := strconv.Atoi(retryAfter); err == nil {
		return now.Add(time.Duration(seconds) * time.Second)
	}
	if date, err := http.ParseTime(retryAfter); err == nil {
		return date
	}
	return now.Add(fallback)
}

// waitRateLimit sleeps until until, or at least minRateWait so that a
// server that keeps naming a past reset time is not polled in a tight
// loop. It returns the cause of ctx's end when ctx ends first. waited is
// the time one request has spent in these waits so far, which the sleep
// adds to. Waits of more than maxInlineRateWait in all are not slept
// here, because the listener would show as running or starting
// meanwhile: pauseRequests returns an error instead. That includes a
// server that returns a 429 with a reset a few seconds away for every
// request.
func (l *Listener) waitRateLimit(ctx context.Context, endpoint syntax.NSID, until time.Time, waited *time.Duration) error {
	delay := max(time.Until(until), l.minRateWait)
	if *waited+delay > l.maxInlineRateWait {
		return l.pauseRequests(endpoint, until, delay)
	}
	*waited += delay
	l.logger().Warn("rate limited by bluesky; waiting for the reset",
		"endpoint", endpoint.String(), "wait", delay.Round(time.Millisecond), "reset", until.UTC())
	return wait.For(ctx, delay)
}

// isRateLimited reports whether err is an HTTP 429 API error.
func isRateLimited(err error) bool {
	var apiErr *atclient.APIError
	return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests
}

// errRateLimited marks the error of a request that a rate limit held
// back.
var errRateLimited = errors.New("rate limited by bluesky")

// pauseRequests holds back every request of the Listener for wait,
// capped at maxRateWait, and returns an errRateLimited error. The cap
// keeps a far reset time from stopping the listener for hours, and after
// it one request checks the limit again.
func (l *Listener) pauseRequests(endpoint syntax.NSID, reset time.Time, wait time.Duration) error {
	resume := time.Now().Add(min(wait, l.maxRateWait))
	l.mu.Lock()
	l.pausedUntil = resume
	l.mu.Unlock()

	l.logger().Warn("rate limited by bluesky; pausing requests",
		"endpoint", endpoint.String(), "resume", resume.UTC(), "reset", reset.UTC())
	return rateLimitedError(resume)
}

// checkRateLimitPause returns an errRateLimited error while pauseRequests
// holds requests back.
func (l *Listener) checkRateLimitPause() error {
	l.mu.Lock()
	resume := l.pausedUntil
	l.mu.Unlock()
	if time.Now().Before(resume) {
		return rateLimitedError(resume)
	}
	return nil
}

// rateLimitedError returns an error whose retry time is resume, so the
// supervisor retries once when the pause ends instead of failing at each
// backoff step.
func rateLimitedError(resume time.Time) error {
	return &listeners.RetryError{
		Err: fmt.Errorf("%w: no request before %s", errRateLimited, resume.UTC().Format(time.RFC3339)),
		At:  resume,
	}
}
