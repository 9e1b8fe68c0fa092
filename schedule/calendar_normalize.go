package schedule

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// fieldRange is the name and valid values of one calendar field.
type fieldRange struct {
	name     string
	from, to int
	usec     bool
}

var (
	yearRange   = fieldRange{"year", minYear, maxYear, false}
	monthRange  = fieldRange{"month", 1, 12, false}
	dayRange    = fieldRange{"day", 1, 31, false}
	hourRange   = fieldRange{"hour", 0, 23, false}
	minuteRange = fieldRange{"minute", 0, 59, false}
	secondRange = fieldRange{"second", 0, 60*usecPerSec - 1, true}
)

// normalize mirrors calendar_spec_normalize: it expands two-digit years,
// trims ranges to a whole number of steps, sorts lists and drops
// duplicates.
func (spec *calendarSpec) normalize() {
	if spec.timezone == "UTC" {
		spec.utc = true
		spec.timezone = ""
	}
	if spec.weekdays <= 0 || spec.weekdays >= allWeekdays {
		spec.weekdays = -1
	}
	if spec.endOfMonth && spec.day == nil {
		spec.endOfMonth = false
	}
	for i := range spec.year {
		spec.year[i].start = expandYear(spec.year[i].start)
		spec.year[i].stop = expandYear(spec.year[i].stop)
	}
	for _, chain := range []*[]calendarComponent{&spec.year, &spec.month, &spec.day,
		&spec.hour, &spec.minute, &spec.microsecond} {
		*chain = normalizeChain(*chain)
	}
}

// expandYear turns 0-69 into 2000-2069 and 70-99 into 1970-1999.
func expandYear(year int) int {
	switch {
	case year >= 0 && year < 70:
		return year + 2000
	case year >= 70 && year < 100:
		return year + 1900
	}
	return year
}

func normalizeChain(chain []calendarComponent) []calendarComponent {
	for i := range chain {
		c := &chain[i]
		if c.stop > c.start && c.repeat > 0 {
			c.stop -= (c.stop - c.start) % c.repeat
		}
		// A range that cannot step even once, or that starts and stops
		// at the same value, is a single value.
		if c.stop > c.start && c.repeat > 0 && c.start+c.repeat > c.stop || c.start == c.stop {
			c.repeat = 0
			c.stop = -1
		}
	}
	if len(chain) <= 1 {
		return chain
	}
	slices.SortFunc(chain, compareComponents)
	return slices.Compact(chain)
}

func compareComponents(a, b calendarComponent) int {
	return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.stop, b.stop), cmp.Compare(a.repeat, b.repeat))
}

// validate mirrors calendar_spec_valid.
func (spec *calendarSpec) validate() error {
	checks := []struct {
		chain []calendarComponent
		field fieldRange
		eom   bool
	}{
		{spec.year, yearRange, false},
		{spec.month, monthRange, false},
		{spec.day, dayRange, spec.endOfMonth},
		{spec.hour, hourRange, false},
		{spec.minute, minuteRange, false},
		{spec.microsecond, secondRange, false},
	}
	for _, check := range checks {
		for _, c := range check.chain {
			if err := validateComponent(c, check.field, check.eom); err != nil {
				return err
			}
		}
	}
	return nil
}

// validateComponent mirrors systemd's chain_valid for one list value.
func validateComponent(c calendarComponent, field fieldRange, eom bool) error {
	from, to := field.from, field.to
	value := func(v int) string { return field.format(v, eom) }
	if eom {
		// "~" counts back from the last day and may reach the 28th-last.
		to -= 3
	}
	span := fmt.Sprintf("%s-%s", value(from), value(to))
	if c.start < from || c.start > to {
		return fmt.Errorf("%s %s is out of range %s", field.name, value(c.start), span)
	}
	if c.repeat > to-from {
		return fmt.Errorf("%s repetition /%s is larger than the range %s", field.name,
			field.format(c.repeat, false), span)
	}
	if c.stop >= 0 {
		if c.stop < from || c.stop > to {
			return fmt.Errorf("%s %s is out of range %s", field.name, value(c.stop), span)
		}
		if c.start+c.repeat > c.stop {
			return fmt.Errorf("%s range %s..%s is empty: its start must be below its end", field.name,
				value(c.start), value(c.stop))
		}
		return nil
	}
	if eom && c.start-c.repeat < from {
		return fmt.Errorf("%s %s/%d repeats past the last day of the month", field.name,
			value(c.start), c.repeat)
	}
	if !eom && c.start+c.repeat > to {
		return fmt.Errorf("%s %s/%s never repeats before the maximum %s", field.name,
			value(c.start), field.format(c.repeat, false), value(to))
	}
	return nil
}

func (field fieldRange) format(v int, eom bool) string {
	if field.usec {
		return formatUsec(v)
	}
	if eom {
		return "~" + strconv.Itoa(v)
	}
	return strconv.Itoa(v)
}

// formatUsec prints microseconds as seconds with no trailing zeros.
func formatUsec(v int) string {
	s := strconv.Itoa(v / usecPerSec)
	if frac := v % usecPerSec; frac > 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", frac), "0")
	}
	return s
}

// String returns systemd's normalized form, as systemd-analyze calendar
// prints it.
func (spec *calendarSpec) String() string {
	var b strings.Builder
	if spec.weekdays > 0 && spec.weekdays <= allWeekdays {
		formatWeekdays(&b, spec.weekdays)
		b.WriteByte(' ')
	}
	formatChain(&b, 4, spec.year, false)
	b.WriteByte('-')
	formatChain(&b, 2, spec.month, false)
	if spec.endOfMonth {
		b.WriteByte('~')
	} else {
		b.WriteByte('-')
	}
	formatChain(&b, 2, spec.day, false)
	b.WriteByte(' ')
	formatChain(&b, 2, spec.hour, false)
	b.WriteByte(':')
	formatChain(&b, 2, spec.minute, false)
	b.WriteByte(':')
	formatChain(&b, 2, spec.microsecond, true)
	switch {
	case spec.utc:
		b.WriteString(" UTC")
	case spec.timezone != "":
		b.WriteString(" " + spec.timezone)
	case spec.dst >= 0 && spec.dstName != "":
		b.WriteString(" " + spec.dstName)
	}
	return b.String()
}

// formatWeekdays writes runs of three or more days as ranges.
func formatWeekdays(b *strings.Builder, bits int) {
	days := [...]string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}
	runStart := -1
	comma := false
	endRun := func(x int) {
		if x > runStart+1 {
			if x > runStart+2 {
				b.WriteString("..")
			} else {
				b.WriteByte(',')
			}
			b.WriteString(days[x-1])
		}
	}
	x := 0
	for ; x < len(days); x++ {
		if bits&(1<<x) != 0 {
			if runStart < 0 {
				if comma {
					b.WriteByte(',')
				}
				comma = true
				b.WriteString(days[x])
				runStart = x
			}
		} else if runStart >= 0 {
			endRun(x)
			runStart = -1
		}
	}
	if runStart >= 0 {
		endRun(x)
	}
}

// formatChain mirrors systemd's format_chain. A seconds list whose first
// value is 0/1 prints as "*", even when later values add fractional
// seconds, as systemd-analyze 252 prints it.
func formatChain(b *strings.Builder, width int, chain []calendarComponent, usec bool) {
	d := 1
	if usec {
		d = usecPerSec
	}
	if chain == nil {
		b.WriteByte('*')
		return
	}
	if usec && chain[0] == (calendarComponent{0, -1, usecPerSec}) {
		b.WriteByte('*')
		return
	}
	for i, c := range chain {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "%0*d", width, c.start/d)
		if c.start%d > 0 {
			fmt.Fprintf(b, ".%06d", c.start%d)
		}
		if c.stop > 0 {
			fmt.Fprintf(b, "..%0*d", width, c.stop/d)
		}
		if c.stop%d > 0 {
			fmt.Fprintf(b, ".%06d", c.stop%d)
		}
		if c.repeat > 0 && !(c.stop > 0 && c.repeat == d) {
			fmt.Fprintf(b, "/%d", c.repeat/d)
		}
		if c.repeat%d > 0 {
			fmt.Fprintf(b, ".%06d", c.repeat%d)
		}
	}
}
