package schedule

import (
	"hash/fnv"
	"time"
)

// At is a one-off schedule with a single slot.
type At struct{ Instant time.Time }

// Next returns the instant when it is after t, and the zero time after.
func (a At) Next(t time.Time) time.Time {
	if t.Before(a.Instant) {
		return a.Instant
	}
	return time.Time{}
}

// Delayed shifts every slot of a schedule by a fixed offset, the way
// systemd's RandomizedDelaySec= with FixedRandomDelay=true does: the
// offset is random across jobs but stable for one job, so restarts do not
// re-roll it.
type Delayed struct {
	Inner  Schedule
	Offset time.Duration
}

// Next returns the first shifted slot after t.
func (d Delayed) Next(t time.Time) time.Time {
	next := d.Inner.Next(t.Add(-d.Offset))
	if next.IsZero() {
		return next
	}
	return next.Add(d.Offset)
}

// StableDelay derives an offset in [0, max) from key, the job's name.
func StableDelay(key string, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(max))
}
