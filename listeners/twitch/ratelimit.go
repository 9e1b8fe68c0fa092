package twitch

import (
	"context"
	"math"
	"sync"
	"time"
)

// tokenBucket holds up to burst tokens and gains one per interval, so in
// any period T it admits at most burst + T/interval takes.
type tokenBucket struct {
	burst    int
	interval time.Duration

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newTokenBucket(burst int, interval time.Duration) *tokenBucket {
	if burst < 1 {
		burst = DefaultSendBurst
	}
	if interval <= 0 {
		interval = DefaultSendInterval
	}
	return &tokenBucket{burst: burst, interval: interval, tokens: float64(burst), last: time.Now()}
}

// wait takes a token, waiting until one is available or ctx ends.
func (b *tokenBucket) wait(ctx context.Context) error {
	for {
		delay := b.take(time.Now())
		if delay == 0 {
			return nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// take takes a token and returns 0, or returns how long until a token is
// available.
func (b *tokenBucket) take(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	gained := float64(now.Sub(b.last)) / float64(b.interval)
	b.tokens = math.Min(float64(b.burst), b.tokens+gained)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return max(time.Duration(math.Ceil((1-b.tokens)*float64(b.interval))), 1)
}

// joinLimiter is go-twitch-irc's RateLimiter with a configurable sliding
// window: at most limit channels are joined in any window. The library's
// own WindowRateLimiter has a fixed 10 s window and sleeps without a way
// to stop. Throttle runs on the client's writer goroutine (writeMessage
// in client.go), which also sends PONG and chat lines, so those wait
// behind a throttled JOIN; it returns early once the session stops.
type joinLimiter struct {
	limit  int
	window time.Duration
	stop   <-chan struct{}

	mu     sync.Mutex
	recent []time.Time
}

func newJoinLimiter(limit int, window time.Duration, stop <-chan struct{}) *joinLimiter {
	if limit < 1 {
		limit = DefaultJoinLimit
	}
	if window <= 0 {
		window = DefaultJoinWindow
	}
	return &joinLimiter{limit: limit, window: window, stop: stop}
}

// GetLimit returns the most channels go-twitch-irc puts in one JOIN line.
func (j *joinLimiter) GetLimit() int { return j.limit }

func (j *joinLimiter) IsUnlimited() bool { return false }

// Throttle blocks until count more channels may be joined.
func (j *joinLimiter) Throttle(count int) {
	for {
		delay := j.reserve(count, time.Now())
		if delay == 0 {
			return
		}
		timer := time.NewTimer(delay)
		select {
		case <-j.stop:
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// reserve records count joins at now and returns 0, or returns how long
// until enough earlier joins leave the window. A count above the limit
// goes through once the window is empty.
func (j *joinLimiter) reserve(count int, now time.Time) time.Duration {
	j.mu.Lock()
	defer j.mu.Unlock()
	cutoff := now.Add(-j.window)
	inWindow := j.recent[:0]
	for _, at := range j.recent {
		if at.After(cutoff) {
			inWindow = append(inWindow, at)
		}
	}
	j.recent = inWindow

	excess := len(j.recent) + count - j.limit
	if excess <= 0 || len(j.recent) == 0 {
		for range count {
			j.recent = append(j.recent, now)
		}
		return 0
	}
	excess = min(excess, len(j.recent))
	return max(j.recent[excess-1].Add(j.window).Sub(now), 1)
}
