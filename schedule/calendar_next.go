package schedule

import (
	"cmp"
	"time"
)

// Next ports find_next and calendar_spec_next_usec from systemd's
// src/shared/calendarspec.c as systemd 252 (Debian 12) builds it. Each
// loop iteration moves the candidate time to the next matching value of
// one field, from the year down to the microsecond, and lets mktime
// normalize it. At DST changes that normalization is what skips wall
// times in a gap and fires only once for wall times that occur twice.

// maxCalendarIterations is systemd's MAX_CALENDAR_ITERATIONS.
//
// NOTE: Next gives up and returns the zero time after this many
// iterations, as systemd does. That bounds the cost of one call for any
// expression, and it also means that a slot lying behind more near misses
// than this is never found, in systemd too.
const maxCalendarIterations = 1000

// maxFormattableUsec is 9999-12-30 23:59:59 UTC, the last base time
// systemd accepts.
const maxFormattableUsec = 253402214399000000

// next returns the first instant strictly after the microsecond that
// contains after, or the zero time when there is none.
func (spec *calendarSpec) next(after time.Time) time.Time {
	if after.Unix() > maxFormattableUsec/usecPerSec {
		return time.Time{}
	}
	usec := after.Unix()*usecPerSec + int64(after.Nanosecond()/1000)
	if usec < 0 {
		// systemd's clock starts at 1970. Searching from the epoch itself
		// keeps every returned slot after t.
		usec = -1
	}
	if usec > maxFormattableUsec {
		return time.Time{}
	}
	usec++

	clk := spec.clock()
	tm := clk.localtime(floorDiv(usec, usecPerSec))
	clk.offset = floorDiv(usec, usecPerSec) - tm.wallSeconds()
	tmUsec := int(usec % usecPerSec)
	if !spec.findNext(clk, &tm, &tmUsec) {
		return time.Time{}
	}
	t := clk.mktime(&tm)
	if t < 0 {
		return time.Time{}
	}
	result := time.Unix(t, int64(tmUsec)*1000)
	if clk.loc == nil {
		return result.UTC()
	}
	return result.In(clk.loc)
}

// clock returns a clock for the zone the expression is evaluated in.
func (spec *calendarSpec) clock() *calendarClock {
	if spec.utc {
		return &calendarClock{}
	}
	return &calendarClock{loc: spec.loc}
}

// findNext ports find_next. It moves *tm and *usec to the first matching
// time at or after them and reports whether there is one.
func (spec *calendarSpec) findNext(clk *calendarClock, tm *brokenTime, usec *int) bool {
	c := *tm
	tmUsec := *usec
	// keepDST is set once a match fell before the start, which happens
	// when the clock went back. From then on the candidate keeps the
	// tm_isdst that mktime gave it, so the repeated hour is read the same
	// way on every iteration.
	keepDST := false
	for range maxCalendarIterations {
		clk.mktime(&c)
		if !keepDST {
			c.isdst = spec.dst
		}

		c.year += 1900
		r := matchComponent(clk, spec.year, false, &c, &c.year)
		c.year -= 1900
		if r > 0 {
			c.mon, c.mday = 0, 1
			c.hour, c.min, c.sec, tmUsec = 0, 0, 0, 0
		}
		if r < 0 || clk.withinBounds(&c) <= 0 {
			return false
		}

		c.mon++
		r = matchComponent(clk, spec.month, false, &c, &c.mon)
		c.mon--
		if r > 0 {
			c.mday = 1
			c.hour, c.min, c.sec, tmUsec = 0, 0, 0, 0
		}
		if r >= 0 {
			r = clk.withinBounds(&c)
		}
		if r < 0 {
			c.year++
			c.mon, c.mday = 0, 1
			c.hour, c.min, c.sec, tmUsec = 0, 0, 0, 0
			continue
		}
		if r == 0 {
			continue
		}

		r = matchComponent(clk, spec.day, spec.endOfMonth, &c, &c.mday)
		if r > 0 {
			c.hour, c.min, c.sec, tmUsec = 0, 0, 0, 0
		}
		if r >= 0 {
			r = clk.withinBounds(&c)
		}
		if r < 0 {
			c.mon++
			c.mday = 1
			c.hour, c.min, c.sec, tmUsec = 0, 0, 0, 0
			continue
		}
		if r == 0 {
			continue
		}

		if !spec.matchesWeekday(clk, &c) {
			c.mday++
			c.hour, c.min, c.sec, tmUsec = 0, 0, 0, 0
			continue
		}

		r = matchComponent(clk, spec.hour, false, &c, &c.hour)
		if r > 0 {
			c.min, c.sec, tmUsec = 0, 0, 0
		}
		if r >= 0 {
			r = clk.withinBounds(&c)
		}
		if r < 0 {
			c.mday++
			c.hour, c.min, c.sec, tmUsec = 0, 0, 0, 0
			continue
		}
		if r == 0 {
			// The hour may not exist because of a clock change, so start
			// again from the normalized time.
			continue
		}

		r = matchComponent(clk, spec.minute, false, &c, &c.min)
		if r > 0 {
			c.sec, tmUsec = 0, 0
		}
		if r >= 0 {
			r = clk.withinBounds(&c)
		}
		if r < 0 {
			c.hour++
			c.min, c.sec, tmUsec = 0, 0, 0
			continue
		}
		if r == 0 {
			continue
		}

		c.sec = c.sec*usecPerSec + tmUsec
		r = matchComponent(clk, spec.microsecond, false, &c, &c.sec)
		tmUsec = c.sec % usecPerSec
		c.sec /= usecPerSec
		if r >= 0 {
			r = clk.withinBounds(&c)
		}
		if r < 0 {
			c.min++
			c.sec, tmUsec = 0, 0
			continue
		}
		if r == 0 {
			continue
		}

		if compareWallTime(&c, tmUsec, tm, *usec) < 0 {
			c.hour++
			keepDST = true
			continue
		}
		*tm = c
		*usec = tmUsec
		return true
	}
	return false
}

// compareWallTime orders two wall times field by field, down to the
// microsecond.
func compareWallTime(a *brokenTime, aUsec int, b *brokenTime, bUsec int) int {
	return cmp.Or(
		cmp.Compare(a.year, b.year), cmp.Compare(a.mon, b.mon), cmp.Compare(a.mday, b.mday),
		cmp.Compare(a.hour, b.hour), cmp.Compare(a.min, b.min), cmp.Compare(a.sec, b.sec),
		cmp.Compare(aUsec, bUsec))
}

// matchComponent ports find_matching_component. It sets *val to the
// smallest value of chain at or above it and returns 1 if that changed
// *val, 0 if not, and -1 if no value of chain is that large. With
// endOfMonth the values count back from the last day of tm's month.
func matchComponent(clk *calendarClock, chain []calendarComponent, endOfMonth bool,
	tm *brokenTime, val *int) int {
	if chain == nil {
		return 0
	}
	best, found := 0, false
	for _, c := range chain {
		start, stop := c.start, c.stop
		if endOfMonth {
			start = clk.endOfMonth(tm, c.start)
			stop = clk.endOfMonth(tm, c.stop)
			if stop > 0 {
				start, stop = stop, start
			}
		}
		if start >= *val {
			if !found || start < best {
				best, found = start, true
			}
		} else if c.repeat > 0 {
			k := start + c.repeat*ceilDiv(*val-start, c.repeat)
			if (!found || k < best) && (stop < 0 || k <= stop) {
				best, found = k, true
			}
		}
	}
	if !found {
		return -1
	}
	changed := boolInt(*val != best)
	*val = best
	return changed
}

func ceilDiv(a, b int) int {
	return (a + b - 1) / b
}

// endOfMonth ports find_end_of_month: the day that lies day-1 days before
// the last of tm's month, or -1 when that is outside the month.
func (clk *calendarClock) endOfMonth(tm *brokenTime, day int) int {
	t := *tm
	t.mon++
	t.mday = 1 - day
	if clk.mktime(&t) < 0 || t.mon != tm.mon {
		return -1
	}
	return t.mday
}

// withinBounds ports tm_within_bounds. It returns 1 when *tm is already
// normalized, and -1 past maxYear, when mktime fails, or when normalizing
// would move backwards. Otherwise it moves *tm forward to its normalized
// value, resets the field below the first one that changed, and returns 0.
func (clk *calendarClock) withinBounds(tm *brokenTime) int {
	if tm.year+1900 > maxYear {
		return -1
	}
	t := *tm
	if clk.mktime(&t) < 0 {
		return -1
	}
	var order int
	switch {
	case t.year != tm.year:
		order = cmp.Compare(t.year, tm.year)
		t.mon = 0
	case t.mon != tm.mon:
		order = cmp.Compare(t.mon, tm.mon)
		t.mday = 1
	case t.mday != tm.mday:
		order = cmp.Compare(t.mday, tm.mday)
		t.hour = 0
	case t.hour != tm.hour:
		order = cmp.Compare(t.hour, tm.hour)
		t.min = 0
	case t.min != tm.min:
		order = cmp.Compare(t.min, tm.min)
		t.sec = 0
	default:
		order = cmp.Compare(t.sec, tm.sec)
	}
	if order < 0 {
		return -1
	}
	if order > 0 {
		*tm = t
		return 0
	}
	return 1
}

// matchesWeekday ports matches_weekday.
func (spec *calendarSpec) matchesWeekday(clk *calendarClock, tm *brokenTime) bool {
	if spec.weekdays < 0 || spec.weekdays >= allWeekdays {
		return true
	}
	t := *tm
	if clk.mktime(&t) < 0 {
		return false
	}
	k := t.wday - 1
	if t.wday == 0 {
		k = 6
	}
	return spec.weekdays&(1<<k) != 0
}
