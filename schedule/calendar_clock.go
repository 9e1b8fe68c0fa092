package schedule

import (
	"math"
	"time"
)

// systemd computes calendar slots with the C library's localtime_r and
// mktime, and its behavior at DST changes comes from how glibc's mktime
// resolves wall times that occur twice or not at all. calendarClock
// reproduces glibc 2.36's time/mktime.c (__mktime_internal) so that Next
// returns the same instants as systemd 252 on Debian 12.

// brokenTime is C's struct tm: year counts from 1900, mon from 0, and
// fields may lie outside their usual ranges until mktime normalizes them.
type brokenTime struct {
	sec, min, hour, mday, mon, year int
	wday, yday, isdst               int
}

// calendarClock converts between instants and broken-down times in one
// zone. A nil loc means UTC through timegm.
type calendarClock struct {
	loc *time.Location

	// offset is glibc's static localtime_offset: the negated UTC offset of
	// the last mktime result, which the next mktime call starts its search
	// from. It decides which occurrence of a repeated wall time mktime
	// returns.
	offset int64

	// period caches the zone period of the last conversion, so that
	// converting nearby instants costs no zone lookup.
	period zonePeriod
}

// zonePeriod is a span [start, end) of Unix seconds with one UTC offset.
type zonePeriod struct {
	start, end int64
	utcOffset  int64
	isdst      int
	valid      bool
}

var monthStartYday = [2][13]int{
	{0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365},
	{0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366},
}

func isLeapYear(year int64) bool {
	return year%4 == 0 && (year%100 != 0 || year%400 == 0)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// daysBeforeYear returns the days from 1970-01-01 to January 1 of year.
func daysBeforeYear(year int64) int64 {
	leapsBefore := func(y int64) int64 {
		return floorDiv(y, 4) - floorDiv(y, 100) + floorDiv(y, 400)
	}
	return 365*(year-1970) + leapsBefore(year-1) - leapsBefore(1969)
}

// wallSeconds counts seconds from 1970-01-01 00:00 to the given wall time
// as if no clock change ever happened, like glibc's ydhms_diff. Year
// counts from 1900 and yday from 0, and neither needs to be in range.
func wallSeconds(year, yday int64, hour, minute, sec int) int64 {
	days := daysBeforeYear(year+1900) + yday
	return days*86400 + int64(hour)*3600 + int64(minute)*60 + int64(sec)
}

func (tm *brokenTime) wallSeconds() int64 {
	return wallSeconds(int64(tm.year), int64(tm.yday), tm.hour, tm.min, tm.sec)
}

// localtime is localtime_r, or gmtime_r for a UTC clock.
func (clk *calendarClock) localtime(t int64) brokenTime {
	period := clk.zonePeriod(t)
	wall := t + period.utcOffset
	days := floorDiv(wall, 86400)
	secs := int(wall - days*86400)
	year, month, day := civilDate(days)
	return brokenTime{
		sec: secs % 60, min: secs / 60 % 60, hour: secs / 3600, mday: day, mon: month - 1, year: int(year) - 1900,
		wday:  int(floorMod(days+4, 7)), // 1970-01-01 was a Thursday
		yday:  int(days - daysBeforeYear(year)),
		isdst: period.isdst,
	}
}

// zonePeriod returns the zone period that contains t.
func (clk *calendarClock) zonePeriod(t int64) zonePeriod {
	if clk.loc == nil {
		return zonePeriod{start: math.MinInt64, end: math.MaxInt64, valid: true}
	}
	if p := clk.period; p.valid && t >= p.start && t < p.end {
		return p
	}
	at := time.Unix(t, 0).In(clk.loc)
	_, utcOffset := at.Zone()
	p := zonePeriod{start: math.MinInt64, end: math.MaxInt64, utcOffset: int64(utcOffset), valid: true}
	if at.IsDST() {
		p.isdst = 1
	}
	start, end := at.ZoneBounds()
	if !start.IsZero() {
		p.start = start.Unix()
	}
	if !end.IsZero() {
		p.end = end.Unix()
	}
	clk.period = p
	return p
}

// civilDate converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's days_from_civil inverse).
func civilDate(days int64) (year int64, month, day int) {
	z := days + 719468
	era := floorDiv(z, 146097)
	dayOfEra := z - era*146097
	yearOfEra := (dayOfEra - dayOfEra/1460 + dayOfEra/36524 - dayOfEra/146096) / 365
	dayOfYear := dayOfEra - (365*yearOfEra + yearOfEra/4 - yearOfEra/100)
	shiftedMonth := (5*dayOfYear + 2) / 153
	day = int(dayOfYear - (153*shiftedMonth+2)/5 + 1)
	month = int(shiftedMonth + 3)
	if month > 12 {
		month -= 12
	}
	year = yearOfEra + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

func floorMod(a, b int64) int64 {
	return a - floorDiv(a, b)*b
}

// mktime is mktime, or timegm for a UTC clock. It normalizes *tm and
// returns the instant, or returns -1 and leaves *tm alone when no instant
// fits.
func (clk *calendarClock) mktime(tm *brokenTime) int64 {
	if clk.loc == nil {
		// glibc's timegm clears tm_isdst and keeps its own offset, which
		// stays 0.
		tm.isdst = 0
		var utcOffset int64
		return mktimeInternal(tm, clk.localtime, &utcOffset)
	}
	return mktimeInternal(tm, clk.localtime, &clk.offset)
}

// mktimeInternal ports glibc's __mktime_internal: it guesses the UTC
// offset, converts, and corrects the guess by the wall-time error until
// the wall time matches. A guess that flips between two values means the
// wall time falls in a gap, and a match whose tm_isdst differs from the
// requested one makes it borrow the offset of a nearby instant that has
// the requested tm_isdst.
func mktimeInternal(tp *brokenTime, convert func(int64) brokenTime, offset *int64) int64 {
	sec, minute, hour := tp.sec, tp.min, tp.hour
	isdst := tp.isdst

	// Bring mon into range and carry into the year.
	monRemainder := tp.mon % 12
	negativeRemainder := 0
	if monRemainder < 0 {
		negativeRemainder = 1
	}
	year := int64(tp.year) + int64(tp.mon/12-negativeRemainder)
	leap := 0
	if isLeapYear(year + 1900) {
		leap = 1
	}
	yday := int64(monthStartYday[leap][monRemainder+12*negativeRemainder]-1) + int64(tp.mday)

	// Out-of-range seconds are added back at the end, because the wall
	// time arithmetic assumes every minute has 60 seconds.
	secRequested := sec
	sec = min(max(sec, 0), 59)

	target := wallSeconds(year, yday, hour, minute, sec)
	t0 := target + *offset
	t, t1, t2 := t0, t0, t0
	dst2 := 0
	probes := 6
	var tm brokenTime
	found := false
	for {
		tm = convert(t)
		dt := target - tm.wallSeconds()
		if dt == 0 {
			break
		}
		if t == t1 && t != t2 && oscillationEnds(isdst, dst2, tm.isdst) {
			// The wall time falls in a gap of dt seconds. glibc returns
			// the time dt away from the request, preferring a tm_isdst
			// that differs from the requested one, or a nonzero one when
			// none was requested.
			found = true
			break
		}
		probes--
		if probes == 0 {
			return -1
		}
		t1, t2, t = t2, t, t+dt
		dst2 = boolInt(tm.isdst != 0)
	}
	if !found && isdstDiffer(isdst, tm.isdst) {
		if gt, gtm, ok := borrowNeighborOffset(t, target, isdst, convert); ok {
			t, tm = gt, gtm
		} else {
			// No instant nearby has the requested tm_isdst, so assume
			// DST is one hour ahead of standard time.
			t += 3600 * int64(boolInt(isdst == 0)-boolInt(tm.isdst == 0))
			tm = convert(t)
		}
	}
	*offset = t - t0 + *offset
	if secRequested != tm.sec {
		adjust := int64(boolInt(sec == 0 && tm.sec == 60)) - int64(sec) + int64(secRequested)
		t += adjust
		tm = convert(t)
	}
	*tp = tm
	return t
}

// oscillationEnds is glibc's test for giving up on a gap.
func oscillationEnds(isdst, dst2, probeDST int) bool {
	if isdst < 0 {
		return dst2 <= boolInt(probeDST != 0)
	}
	return (isdst != 0) != (probeDST != 0)
}

// borrowNeighborOffset probes a week apart in both directions, up to about
// eight and a half years, for an instant with the requested tm_isdst and
// applies its UTC offset to the requested wall time.
func borrowNeighborOffset(t, target int64, isdst int, convert func(int64) brokenTime) (int64, brokenTime, bool) {
	const (
		stride      = 601200
		durationMax = 536454000
		deltaBound  = durationMax/2 + stride
	)
	for delta := int64(stride); delta < deltaBound; delta += stride {
		for direction := int64(-1); direction <= 1; direction += 2 {
			ot := t + delta*direction
			otm := convert(ot)
			if !isdstDiffer(isdst, otm.isdst) {
				gt := ot + target - otm.wallSeconds()
				return gt, convert(gt), true
			}
		}
	}
	return 0, brokenTime{}, false
}

// isdstDiffer reports whether two tm_isdst values disagree, where a
// negative value agrees with anything.
func isdstDiffer(a, b int) bool {
	return (a == 0) != (b == 0) && a >= 0 && b >= 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// zoneAbbreviations returns what glibc's tzset stores in tzname[] for loc:
// the abbreviations of its latest standard and daylight time, or the
// standard one twice for a zone that never had DST.
func zoneAbbreviations(loc *time.Location) [2]string {
	var names [2]string
	// glibc takes the names from the last transitions in the zone file,
	// which run to 2037 in Debian's tzdata. Two-week steps are shorter
	// than any DST period in tzdata.
	at := time.Date(2037, time.December, 31, 12, 0, 0, 0, time.UTC)
	stop := time.Date(1800, time.January, 1, 0, 0, 0, 0, time.UTC)
	for ; at.After(stop) && (names[0] == "" || names[1] == ""); at = at.AddDate(0, 0, -14) {
		local := at.In(loc)
		name, _ := local.Zone()
		if i := boolInt(local.IsDST()); names[i] == "" {
			names[i] = name
		}
	}
	if names[0] == "" {
		names[0] = names[1]
	}
	if names[1] == "" {
		names[1] = names[0]
	}
	return names
}
