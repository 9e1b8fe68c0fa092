package schedule

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// The parser follows systemd's src/shared/calendarspec.c step by step, so
// it accepts and rejects the same expressions as systemd-analyze calendar
// of systemd 252. Its error messages are its own.

const (
	minYear = 1970
	maxYear = 2199

	// maxComponents caps comma-separated lists the way systemd does
	// (CALENDARSPEC_COMPONENTS_MAX): a list may hold 241 values.
	maxComponents = 240

	usecPerSec  = 1_000_000
	allWeekdays = 127 // bits 0 (Monday) to 6 (Sunday)
	cIntMax     = math.MaxInt32

	// maxTimestamp is 2199-12-31 23:59:59 UTC, the last second of maxYear.
	maxTimestamp = 7258118399
)

// calendarComponent is one value of a field list: start alone, the range
// start..stop stepping by repeat, or start/repeat with no upper end. Stop
// is -1 when absent and repeat is 0 when absent. Seconds are stored in
// microseconds.
type calendarComponent struct {
	start, stop, repeat int
}

// calendarSpec is one parsed expression, the counterpart of systemd's
// CalendarSpec. A nil field list matches every value.
type calendarSpec struct {
	weekdays    int // bit 0 is Monday; -1 matches every day
	endOfMonth  bool
	utc         bool
	dst         int    // 0 or 1 when the expression ends in a local zone abbreviation, else -1
	dstName     string // that abbreviation, as the zone spells it
	timezone    string // IANA zone named by the expression
	year        []calendarComponent
	month       []calendarComponent
	day         []calendarComponent
	hour        []calendarComponent
	minute      []calendarComponent
	microsecond []calendarComponent

	loc *time.Location // zone Next works in unless utc is set
}

var weekdayNames = []struct {
	name string
	nr   int
}{
	// Full names come first so "Monday" is not read as "Mon" + "day".
	{"Monday", 0}, {"Mon", 0},
	{"Tuesday", 1}, {"Tue", 1},
	{"Wednesday", 2}, {"Wed", 2},
	{"Thursday", 3}, {"Thu", 3},
	{"Friday", 4}, {"Fri", 4},
	{"Saturday", 5}, {"Sat", 5},
	{"Sunday", 6}, {"Sun", 6},
}

// parseCalendarSpec parses one expression evaluated in loc unless it
// names its own zone.
func parseCalendarSpec(expr string, loc *time.Location) (*calendarSpec, error) {
	spec := &calendarSpec{dst: -1, loc: loc}
	p := spec.parseZoneSuffix(expr)
	if p == "" {
		return nil, errors.New("missing date and time")
	}
	if !spec.parseShortcut(p) {
		if err := spec.parseDateTime(p); err != nil {
			return nil, err
		}
	}
	spec.normalize()
	if err := spec.validate(); err != nil {
		return nil, err
	}
	return spec, nil
}

// parseZoneSuffix strips a trailing " UTC", an abbreviation of loc, or an
// IANA zone name, and returns the rest of the expression.
func (spec *calendarSpec) parseZoneSuffix(p string) string {
	if hasSuffixFold(p, " UTC") {
		spec.utc = true
		return p[:len(p)-len(" UTC")]
	}

	// systemd checks the two names in tzname[] that tzset() set for the
	// local zone before it tries a zone name.
	for j, name := range zoneAbbreviations(spec.loc) {
		if name == "" || len(p) <= len(name) || !hasSuffixFold(p, name) {
			continue
		}
		rest := p[:len(p)-len(name)]
		if !strings.HasSuffix(rest, " ") {
			continue
		}
		spec.dst = j
		spec.dstName = name
		return rest[:len(rest)-1]
	}

	space := strings.LastIndexByte(p, ' ')
	if space < 0 {
		return p
	}
	name := p[space+1:]
	zone, err := loadZone(name)
	if err != nil {
		// Not a zone, so the word stays part of the expression and the
		// time parser reports it.
		return p
	}
	spec.timezone = name
	spec.loc = zone
	return p[:space]
}

// loadZone loads an IANA zone under the rules of systemd's
// timezone_is_valid: letters, digits, "-", "_", "+" and single slashes
// between names, no leading or trailing slash.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name[0] == '/' || name[len(name)-1] == '/' {
		return nil, fmt.Errorf("invalid time zone name %q", name)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		valid := isDigit(ch) || isLetter(ch) || ch == '-' || ch == '_' || ch == '+' || ch == '/'
		if !valid || ch == '/' && name[i+1] == '/' {
			return nil, fmt.Errorf("invalid time zone name %q", name)
		}
	}
	// time.LoadLocation maps "Local" to the process zone, which has no
	// file under /usr/share/zoneinfo, and "UTC" never reaches this point.
	if name == "Local" {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return time.LoadLocation(name)
}

// parseShortcut fills spec from a named schedule such as "daily" and
// reports whether p was one.
func (spec *calendarSpec) parseShortcut(p string) bool {
	zero := []calendarComponent{{0, -1, 0}}
	one := []calendarComponent{{1, -1, 0}}
	switch asciiLower(p) {
	case "minutely":
		spec.microsecond = zero
	case "hourly":
		spec.minute, spec.microsecond = zero, zero
	case "daily":
		spec.hour, spec.minute, spec.microsecond = zero, zero, zero
	case "weekly":
		spec.weekdays = 1
		spec.hour, spec.minute, spec.microsecond = zero, zero, zero
	case "monthly":
		spec.day = one
		spec.hour, spec.minute, spec.microsecond = zero, zero, zero
	case "annually", "yearly", "anually":
		spec.month, spec.day = one, one
		spec.hour, spec.minute, spec.microsecond = zero, zero, zero
	case "quarterly":
		spec.month = []calendarComponent{{1, -1, 0}, {4, -1, 0}, {7, -1, 0}, {10, -1, 0}}
		spec.day = one
		spec.hour, spec.minute, spec.microsecond = zero, zero, zero
	case "biannually", "bi-annually", "semiannually", "semi-annually":
		spec.month = []calendarComponent{{1, -1, 0}, {7, -1, 0}}
		spec.day = one
		spec.hour, spec.minute, spec.microsecond = zero, zero, zero
	default:
		return false
	}
	return true
}

// parseDateTime parses "[WEEKDAYS] [DATE] [TIME]".
func (spec *calendarSpec) parseDateTime(p string) error {
	p, err := spec.parseWeekdays(p)
	if err != nil {
		return err
	}
	p, done, err := spec.parseDate(p)
	if err != nil {
		return err
	}
	if !done {
		p, err = spec.parseTime(p)
		if err != nil {
			return err
		}
	}
	if p != "" {
		return fmt.Errorf("unexpected %q at the end", p)
	}
	return nil
}

func (spec *calendarSpec) parseWeekdays(p string) (string, error) {
	last := -1
	for first := true; ; first = false {
		name, nr, ok := matchWeekday(p)
		if !ok {
			if first {
				return p, nil
			}
			return "", fmt.Errorf("expected a weekday at %q", p)
		}
		if len(p) > len(name) && !strings.ContainsRune("-., ", rune(p[len(name)])) {
			return "", fmt.Errorf("unknown weekday %q", firstWord(p))
		}
		spec.weekdays |= 1 << nr
		if last >= 0 {
			if last > nr {
				return "", fmt.Errorf("weekday range ends at %s before it starts", name)
			}
			for j := last + 1; j < nr; j++ {
				spec.weekdays |= 1 << j
			}
		}
		p = p[len(name):]
		if p == "" {
			return p, nil
		}
		if p[0] == ' ' {
			return strings.TrimLeft(p, " "), nil
		}
		switch {
		case p[0] == '.':
			if last >= 0 {
				return "", errors.New("weekday range has two ends")
			}
			if len(p) < 2 || p[1] != '.' {
				return "", fmt.Errorf("expected \"..\" at %q", p)
			}
			last = nr
			p = p[2:]
		case p[0] == '-':
			// "-" is an old spelling of "..".
			if last >= 0 {
				return "", errors.New("weekday range has two ends")
			}
			last = nr
			p = p[1:]
		case p[0] == ',':
			last = -1
			p = p[1:]
		}
		// A trailing comma is fine, an open range is not.
		if p == "" || p[0] == ' ' {
			if last >= 0 {
				return "", errors.New("weekday range has no end")
			}
			return strings.TrimLeft(p, " "), nil
		}
	}
}

// matchWeekday matches a weekday name at the start of p, ignoring case.
func matchWeekday(p string) (string, int, bool) {
	for _, day := range weekdayNames {
		if len(p) >= len(day.name) && asciiEqualFold(p[:len(day.name)], day.name) {
			return day.name, day.nr, true
		}
	}
	return "", 0, false
}

// parseDate parses "[[YEAR-]MONTH-DAY]" or "@SECONDS". It reports done
// when "@SECONDS" gave the whole instant and no time may follow. A
// leading field followed by ":" is a time: then parseDate consumes
// nothing.
func (spec *calendarSpec) parseDate(p string) (rest string, done bool, err error) {
	if p == "" {
		return p, false, nil
	}
	if p[0] == '@' {
		rest, err := spec.parseTimestamp(p[1:])
		return rest, true, err
	}
	if isLetter(p[0]) {
		return "", false, unknownWord(p)
	}
	first, t, err := parseChain(p, false, "date")
	if err != nil {
		return "", false, err
	}
	if t == "" || t[0] == ':' {
		return p, false, nil
	}
	if t[0] == ' ' {
		return "", false, fmt.Errorf("date %q needs a month and a day", p[:len(p)-len(t)])
	}
	if t[0] == '~' {
		spec.endOfMonth = true
	} else if t[0] != '-' {
		return "", false, fmt.Errorf("unexpected %q in date", t)
	}
	second, t, err := parseChain(t[1:], false, "date")
	if err != nil {
		return "", false, err
	}
	if t == "" || t[0] == ' ' {
		spec.month, spec.day = first, second
		return strings.TrimLeft(t, " "), false, nil
	}
	if spec.endOfMonth {
		return "", false, errors.New("\"~\" may only separate month and day")
	}
	if t[0] == '~' {
		spec.endOfMonth = true
	} else if t[0] != '-' {
		return "", false, fmt.Errorf("unexpected %q in date", t)
	}
	third, t, err := parseChain(t[1:], false, "date")
	if err != nil {
		return "", false, err
	}
	if t != "" && t[0] != ' ' {
		return "", false, fmt.Errorf("unexpected %q after the date", t)
	}
	spec.year, spec.month, spec.day = first, second, third
	return strings.TrimLeft(t, " "), false, nil
}

// unknownWord explains an expression that starts with a word that is
// neither a weekday nor a shortcut.
func unknownWord(p string) error {
	word, rest, _ := strings.Cut(p, " ")
	if (&calendarSpec{}).parseShortcut(word) {
		return fmt.Errorf("unexpected %q after %q (not a known time zone)", rest, word)
	}
	return fmt.Errorf("unknown word %q: expected a weekday, a date, a time or a shortcut such as \"daily\"", word)
}

// parseTimestamp parses the seconds of "@SECONDS" with strtoul's rules,
// which systemd uses here: leading white space, a sign, and wrap-around
// for negative values.
func (spec *calendarSpec) parseTimestamp(p string) (string, error) {
	value, rest, err := parseUnsigned(p)
	if err != nil {
		return "", err
	}
	// time_t is signed, so values above MaxInt64 count as negative.
	if int64(value) < 0 || value > maxTimestamp {
		return "", fmt.Errorf("timestamp @%s is outside the years %d-%d",
			strings.TrimLeft(p[:len(p)-len(rest)], " \t\n\v\f\r"), minYear, maxYear)
	}
	at := time.Unix(int64(value), 0).UTC()
	spec.utc = true
	spec.year = []calendarComponent{{at.Year(), -1, 0}}
	spec.month = []calendarComponent{{int(at.Month()), -1, 0}}
	spec.day = []calendarComponent{{at.Day(), -1, 0}}
	spec.hour = []calendarComponent{{at.Hour(), -1, 0}}
	spec.minute = []calendarComponent{{at.Minute(), -1, 0}}
	spec.microsecond = []calendarComponent{{at.Second() * usecPerSec, -1, 0}}
	return rest, nil
}

// parseTime parses "HOUR:MINUTE[:SECOND]"; an empty p means 00:00:00.
func (spec *calendarSpec) parseTime(p string) (string, error) {
	zero := []calendarComponent{{0, -1, 0}}
	if p == "" {
		spec.hour, spec.minute, spec.microsecond = zero, zero, zero
		return p, nil
	}
	hour, t, err := parseChain(p, false, "time")
	if err != nil {
		return "", err
	}
	if t == "" {
		return "", errors.New("missing minute: a time is HOUR:MINUTE[:SECOND]")
	}
	if t[0] != ':' {
		return "", fmt.Errorf("unexpected %q after the hour", t)
	}
	minute, t, err := parseChain(t[1:], false, "time")
	if err != nil {
		return "", err
	}
	spec.hour, spec.minute, spec.microsecond = hour, minute, zero
	if t == "" {
		return t, nil
	}
	if t[0] != ':' {
		return "", unexpectedAfterTime(t)
	}
	second, t, err := parseChain(t[1:], true, "time")
	if err != nil {
		return "", err
	}
	if t != "" {
		return "", unexpectedAfterTime(t)
	}
	spec.microsecond = second
	return t, nil
}

func unexpectedAfterTime(t string) error {
	if strings.TrimLeft(t, " ") == "" {
		return errors.New("unexpected space after the time")
	}
	if t[0] == ' ' {
		return fmt.Errorf("unexpected %q after the time (not a known time zone)", t[1:])
	}
	return fmt.Errorf("unexpected %q after the time", t)
}

// parseChain parses "*" or a comma-separated list of values. A "*" in the
// seconds field becomes 0/1, so every whole second matches.
func parseChain(p string, usec bool, part string) ([]calendarComponent, string, error) {
	if p != "" && p[0] == '*' {
		if usec {
			return []calendarComponent{{0, -1, usecPerSec}}, p[1:], nil
		}
		return nil, p[1:], nil
	}
	var chain []calendarComponent
	for nesting := 0; ; nesting++ {
		if nesting > maxComponents {
			return nil, "", fmt.Errorf("list has more than %d values", maxComponents+1)
		}
		component, rest, err := parseComponent(p, usec, part)
		if err != nil {
			return nil, "", err
		}
		chain = append(chain, component)
		if rest == "" || rest[0] != ',' {
			return chain, rest, nil
		}
		p = rest[1:]
	}
}

// parseComponent parses "START[..STOP][/REPEAT]".
func parseComponent(p string, usec bool, part string) (calendarComponent, string, error) {
	c := calendarComponent{stop: -1}
	start, e, err := parseDecimal(p, usec, part)
	if err != nil {
		return c, "", err
	}
	c.start = start
	if strings.HasPrefix(e, "..") {
		c.stop, e, err = parseDecimal(e[2:], usec, part)
		if err != nil {
			return c, "", err
		}
		c.repeat = 1
		if usec {
			c.repeat = usecPerSec
		}
	}
	if e != "" && e[0] == '/' {
		c.repeat, e, err = parseDecimal(e[1:], usec, part)
		if err != nil {
			return c, "", err
		}
		if c.repeat == 0 {
			return c, "", errors.New("repetition /0 is not allowed")
		}
	} else if usec && c.stop >= 0 && c.start+c.repeat > c.stop {
		// Without "/", a seconds range steps by one second, so it must
		// span at least one.
		return c, "", fmt.Errorf("seconds range %s..%s is shorter than its default step of 1 second",
			formatUsec(c.start), formatUsec(c.stop))
	}
	if e != "" && !strings.ContainsRune(" ,-~:", rune(e[0])) {
		return c, "", fmt.Errorf("unexpected %q in %s", e, part)
	}
	return c, e, nil
}

// parseDecimal parses a non-negative integer, or seconds with up to six
// decimals when usec is set, which it returns in microseconds.
func parseDecimal(p string, usec bool, part string) (int, string, error) {
	if p == "" || !isDigit(p[0]) {
		if p == "" {
			return 0, "", fmt.Errorf("missing number at the end of the %s", part)
		}
		return 0, "", fmt.Errorf("expected a number at %q", p)
	}
	digits := leadingDigits(p)
	value, rest, err := parseUnsigned(p)
	if err != nil {
		return 0, "", err
	}
	if usec {
		if value > math.MaxUint64/usecPerSec {
			return 0, "", fmt.Errorf("number %s is too large", digits)
		}
		value *= usecPerSec
		// One "." is a decimal point, but ".." separates a range.
		if strings.HasPrefix(rest, ".") && !strings.HasPrefix(rest, "..") {
			var fraction uint64
			fraction, rest, err = parseFraction(rest[1:])
			if err != nil {
				return 0, "", err
			}
			value += fraction
		}
	}
	if value > cIntMax {
		return 0, "", fmt.Errorf("number %s is too large", digits)
	}
	return int(value), rest, nil
}

// parseFraction reads the digits after a decimal point as microseconds,
// rounding at the seventh digit and ignoring the rest, like systemd's
// parse_fractional_part_u.
func parseFraction(p string) (uint64, string, error) {
	digits := leadingDigits(p)
	if digits == "" {
		return 0, "", fmt.Errorf("expected digits after the decimal point at %q", p)
	}
	var value uint64
	for i := 0; i < 6; i++ {
		value *= 10
		if i < len(digits) {
			value += uint64(digits[i] - '0')
		}
	}
	if len(digits) > 6 && digits[6] >= '5' {
		value++
	}
	return value, p[len(digits):], nil
}

// parseUnsigned follows strtoul(p, &end, 10): it skips leading white
// space, takes a sign, and negates in unsigned arithmetic.
func parseUnsigned(p string) (uint64, string, error) {
	s := strings.TrimLeft(p, " \t\n\v\f\r")
	negative := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		negative = s[0] == '-'
		s = s[1:]
	}
	digits := leadingDigits(s)
	if digits == "" {
		return 0, "", fmt.Errorf("expected a number at %q", p)
	}
	var value uint64
	for i := 0; i < len(digits); i++ {
		d := uint64(digits[i] - '0')
		if value > (math.MaxUint64-d)/10 {
			return 0, "", fmt.Errorf("number %s is too large", digits)
		}
		value = value*10 + d
	}
	if negative {
		value = -value
	}
	return value, s[len(digits):], nil
}

func isLetter(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z'
}

func isDigit(ch byte) bool {
	return ch >= '0' && ch <= '9'
}

func leadingDigits(p string) string {
	i := 0
	for i < len(p) && isDigit(p[i]) {
		i++
	}
	return p[:i]
}

func firstWord(p string) string {
	if i := strings.IndexAny(p, " ,.-"); i >= 0 {
		return p[:i]
	}
	return p
}

func hasSuffixFold(s, suffix string) bool {
	return len(s) >= len(suffix) && asciiEqualFold(s[len(s)-len(suffix):], suffix)
}

// asciiEqualFold compares like C's strcasecmp in the C locale.
// strings.EqualFold would also match "K" (U+212A) with "k", which systemd
// does not.
func asciiEqualFold(a, b string) bool {
	return len(a) == len(b) && asciiLower(a) == asciiLower(b)
}

func asciiLower(s string) string {
	lower := []byte(s)
	for i, ch := range lower {
		if ch >= 'A' && ch <= 'Z' {
			lower[i] = ch + 'a' - 'A'
		}
	}
	return string(lower)
}
