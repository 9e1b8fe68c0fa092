package schedule

import (
	"time"

	"github.com/robfig/cron/v3"
)

// cronSchedule applies classic cron's daylight saving rules on top of
// robfig/cron, which on its own skips a time that a spring-forward change
// removes and runs a time that a fall-back change repeats twice:
//
//   - a time in a spring-forward gap runs once, right after the change;
//   - a time that a fall-back change repeats runs once, at its first
//     occurrence.
type cronSchedule struct {
	spec *cron.SpecSchedule
}

// maxShift bounds a zone's daylight saving shift; real zones shift by 30
// minutes to 2 hours.
const maxShift = 3 * time.Hour

// Next returns the first slot after t under the rules above.
func (c cronSchedule) Next(t time.Time) time.Time {
	// Each pass skips all of one change's repeated times, so a few cover
	// any real zone.
	for range 8 {
		next := c.wallNext(t)
		if next.IsZero() {
			return next
		}
		if change, ok := c.gapSlot(t, next); ok {
			return change
		}
		if !c.isRepeat(next) {
			return next
		}
		t = repeatEnd(next, c.spec.Location)
	}
	return time.Time{}
}

// repeatEnd returns the last second of the fall-back repeat that contains
// n, so that one pass of Next skips all of its slots, such as the sixty of
// a job that runs every minute of the repeated hour.
func repeatEnd(n time.Time, loc *time.Location) time.Time {
	change, _ := n.In(loc).ZoneBounds()
	_, offset := n.In(loc).Zone()
	_, earlier := change.Add(-time.Second).In(loc).Zone()
	end := change.Add(time.Duration(earlier-offset)*time.Second - time.Second)
	if change.IsZero() || end.Before(n) {
		return n
	}
	return end
}

// wallNext returns the first instant after t whose wall-clock time in the
// spec's zone matches the expression, so a repeated time matches twice and
// a skipped one never. robfig/cron v3.0.1 finds the hour by adding real
// hours, which keeps the minute only while the offset changes by whole
// hours. Across a 30-minute change it lands at minute 30, and its minute
// search then runs past the matching hour and drops that day's slot. So
// each stretch of constant offset is searched under a fixed zone, where
// real and wall-clock hours agree.
func (c cronSchedule) wallNext(t time.Time) time.Time {
	loc := c.spec.Location
	if loc == time.Local {
		// robfig/cron reads a Local schedule in t's own zone.
		loc = t.Location()
	}
	yearLimit := t.In(loc).Year() + 5
	from, at := t, t
	for {
		_, offset := at.In(loc).Zone()
		_, end := at.In(loc).ZoneBounds()
		fixed := *c.spec
		fixed.Location = time.FixedZone("", offset)
		next := fixed.Next(from)
		if next.IsZero() || next.In(loc).Year() > yearLimit {
			return time.Time{}
		}
		if end.IsZero() || next.Before(end) {
			return next.In(t.Location())
		}
		// Search the next stretch from its first second on.
		from, at = end.Add(-time.Second), end
	}
}

// starBit is robfig/cron's mark for a field written as "*". robfig/cron
// v3.0.1 sets it for "*" and "*/1" but not for a step above 1, so "*/2"
// follows the fixed-time rules.
const starBit = 1 << 63

// everyHour reports whether the hour field is "*". Such a job runs at each
// wall-clock time that exists, as in classic cron, so no slot moves out of
// a spring-forward gap and none counts as a fall-back repeat.
func (c cronSchedule) everyHour() bool {
	return c.spec.Hour&starBit != 0
}

// isRepeat reports whether the wall-clock time of n already occurred
// earlier the same night, which happens only after a fall-back change.
// No slot of an everyHour job is a repeat.
func (c cronSchedule) isRepeat(n time.Time) bool {
	if c.everyHour() {
		return false
	}
	loc := c.spec.Location
	_, offset := n.In(loc).Zone()
	_, earlier := n.Add(-maxShift).In(loc).Zone()
	if earlier <= offset {
		return false
	}
	twin := n.Add(-time.Duration(earlier-offset) * time.Second)
	return wallEqual(twin.In(loc), n.In(loc))
}

func wallEqual(a, b time.Time) bool {
	return a.Year() == b.Year() && a.YearDay() == b.YearDay() &&
		a.Hour() == b.Hour() && a.Minute() == b.Minute() && a.Second() == b.Second()
}

// gapSlot returns the moment of a spring-forward change between t and
// next when the expression matches a wall-clock time that the change
// skipped. It looks at one day at a time, since a long wait between slots
// can cross both of a year's changes. An everyHour job never has one.
func (c cronSchedule) gapSlot(t, next time.Time) (time.Time, bool) {
	if c.everyHour() {
		return time.Time{}, false
	}
	loc := c.spec.Location
	for from := t; from.Before(next); from = from.Add(24 * time.Hour) {
		to := from.Add(24 * time.Hour)
		if to.After(next) {
			to = next
		}
		_, before := from.In(loc).Zone()
		_, after := to.In(loc).Zone()
		if after <= before {
			continue
		}
		change := findChange(from, to, loc)
		// Read the skipped wall-clock times as if the old offset had
		// stayed: they lie in [change, change+shift) on that clock.
		fixed := *c.spec
		fixed.Location = time.FixedZone("", before)
		skipped := fixed.Next(change.Add(-time.Second))
		shift := time.Duration(after-before) * time.Second
		if change.After(t) && !skipped.IsZero() && skipped.Before(change.Add(shift)) {
			return change, true
		}
	}
	return time.Time{}, false
}

// findChange returns the first instant in (from, to] whose zone offset
// differs from from's, found by bisection to the second.
func findChange(from, to time.Time, loc *time.Location) time.Time {
	_, start := from.In(loc).Zone()
	lo, hi := from, to
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if _, off := mid.In(loc).Zone(); off == start {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi.Truncate(time.Second)
}

// note explains a slot that daylight saving rules moved or merged.
func (c cronSchedule) note(slot time.Time) string {
	prev := slot.Add(-time.Second)
	if c.wallNext(prev).Equal(slot) {
		if !c.everyHour() && c.repeatsLater(slot) {
			return "this wall-clock time repeats at a DST change; it runs once, now"
		}
		return ""
	}
	return "moved by DST: the scheduled time does not exist that day, so it runs right after the change"
}

// repeatsLater reports whether slot's wall-clock time occurs again
// within the next few hours, after a fall-back change.
func (c cronSchedule) repeatsLater(slot time.Time) bool {
	loc := c.spec.Location
	_, offset := slot.In(loc).Zone()
	_, later := slot.Add(maxShift).In(loc).Zone()
	if later >= offset {
		return false
	}
	twin := slot.Add(time.Duration(offset-later) * time.Second)
	return wallEqual(twin.In(loc), slot.In(loc))
}

// Note returns why a slot of s is not where its expression alone would
// put it, such as a time moved by a DST change, or "" when nothing is
// special about it.
func Note(s Schedule, slot time.Time) string {
	switch v := s.(type) {
	case cronSchedule:
		return v.note(slot)
	case Delayed:
		return Note(v.Inner, slot.Add(-v.Offset))
	default:
		return ""
	}
}
