package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustLoadLocation(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func mustParseCalendar(t testing.TB, loc *time.Location, exprs ...string) *Calendar {
	t.Helper()
	sched, err := ParseCalendar(exprs, loc)
	if err != nil {
		t.Fatal(err)
	}
	return sched.(*Calendar)
}

// nextSlots returns the next n slots after from, in UTC RFC 3339.
func nextSlots(cal *Calendar, from time.Time, n int) []string {
	var slots []string
	for range n {
		from = cal.Next(from)
		if from.IsZero() {
			slots = append(slots, "never")
			break
		}
		slots = append(slots, from.UTC().Format(time.RFC3339Nano))
	}
	return slots
}

func utc(value string) time.Time {
	at, err := time.Parse(time.RFC3339, value)
	if err != nil {
		panic(err)
	}
	return at
}

func TestParseCalendarErrorMessage(t *testing.T) {
	_, err := ParseCalendar([]string{"Mon..Fri 25:00"}, time.UTC)
	want := `invalid calendar expression "Mon..Fri 25:00": hour 25 is out of range 0-23`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
}

func TestParseCalendarRejects(t *testing.T) {
	tests := []struct {
		expr, reason string
	}{
		{"fortnightly", `unknown word "fortnightly"`},
		{"daily EDT", `unexpected "EDT" after "daily" (not a known time zone)`},
		{"Fri..Mon", "weekday range ends at Mon before it starts"},
		{"Mon..", "weekday range has no end"},
		{"Mond 10:00", `unknown weekday "Mond"`},
		{"*-13-01", "month 13 is out of range 1-12"},
		{"*-*-32", "day 32 is out of range 1-31"},
		{"1969-01-01", "year 1969 is out of range 1970-2199"},
		{"*-*~29", "day ~29 is out of range ~1-~28"},
		{"*-05~1/2", "day ~1/2 repeats past the last day of the month"},
		{"*-*~03..01", "day range ~3..~1 is empty"},
		{"12:60", "minute 60 is out of range 0-59"},
		{"*:*:60", "second 60 is out of range 0-59.999999"},
		{"*:59/1", "minute 59/1 never repeats before the maximum 59"},
		{"*:0/0", "repetition /0 is not allowed"},
		{"*:*:1..1.5", "seconds range 1..1.5 is shorter than its default step of 1 second"},
		{"12", "missing minute"},
		{"10:00 Mars/Olympus", `unexpected "Mars/Olympus" after the time (not a known time zone)`},
		{"10:00 Local", `unexpected "Local" after the time`},
		{"@-1", "timestamp @-1 is outside the years 1970-2199"},
		{"4294967296:00", "number 4294967296 is too large"},
		{"Mon\t10:00", "unknown weekday"},
		{"*:*:" + strings.Repeat("1,", 241) + "1", "list has more than 241 values"},
		{"", "missing date and time"},
	}
	for _, test := range tests {
		_, err := ParseCalendar([]string{test.expr}, time.UTC)
		if err == nil {
			t.Errorf("ParseCalendar(%q) accepted it, want an error containing %q", test.expr, test.reason)
			continue
		}
		if !strings.Contains(err.Error(), test.reason) {
			t.Errorf("ParseCalendar(%q) error %q, want it to contain %q", test.expr, err, test.reason)
		}
	}
}

func TestParseCalendarNormalizedForm(t *testing.T) {
	berlin := mustLoadLocation(t, "Europe/Berlin")
	tests := []struct {
		expr, want string
	}{
		{"minutely", "*-*-* *:*:00"},
		{"hourly", "*-*-* *:00:00"},
		{"daily", "*-*-* 00:00:00"},
		{"weekly", "Mon *-*-* 00:00:00"},
		{"monthly", "*-*-01 00:00:00"},
		{"yearly", "*-01-01 00:00:00"},
		{"annually", "*-01-01 00:00:00"},
		{"quarterly", "*-01,04,07,10-01 00:00:00"},
		{"semiannually", "*-01,07-01 00:00:00"},
		{"Sat,Sun", "Sat,Sun *-*-* 00:00:00"},
		{"mon,tue,wed", "Mon..Wed *-*-* 00:00:00"},
		{"Mon..Sun 10:00", "*-*-* 10:00:00"},
		{"*:0/15", "*-*-* *:00/15:00"},
		{"8..18/2:00", "*-*-* 08..18/2:00:00"},
		{"*:5..58/10", "*-*-* *:05..55/10:00"},
		{"*:30,0,15,0", "*-*-* *:00,15,30:00"},
		{"26-1-1", "2026-01-01 00:00:00"},
		{"*-02~03", "*-02~03 00:00:00"},
		{"*:*:1.5/0.25", "*-*-* *:*:01.500000/0.250000"},
		{"*:*:*", "*-*-* *:*:*"},
		{"daily UTC", "*-*-* 00:00:00 UTC"},
		{"daily cet", "*-*-* 00:00:00 CET"},
		{"12:00 America/New_York", "*-*-* 12:00:00 America/New_York"},
		{"@1800000000", "2027-01-15 08:00:00 UTC"},
		{"  daily  ", "*-*-* 00:00:00"},
	}
	for _, test := range tests {
		cal := mustParseCalendar(t, berlin, test.expr)
		if got := cal.String(); got != test.want {
			t.Errorf("ParseCalendar(%q) normalized form %q, want %q", test.expr, got, test.want)
		}
	}
}

func TestParseCalendarNoExpression(t *testing.T) {
	if _, err := ParseCalendar(nil, time.UTC); err == nil {
		t.Fatal("ParseCalendar(nil) accepted an empty list")
	}
}

func TestParseCalendarNilLocationIsUTC(t *testing.T) {
	cal := mustParseCalendar(t, nil, "daily")
	got := cal.Next(utc("2026-05-01T12:00:00Z"))
	if want := utc("2026-05-02T00:00:00Z"); !got.Equal(want) {
		t.Fatalf("Next = %s, want %s", got, want)
	}
}

func TestCalendarNextInLocation(t *testing.T) {
	berlin := mustLoadLocation(t, "Europe/Berlin")
	cal := mustParseCalendar(t, berlin, "Mon..Fri 09:00")
	// Friday 2026-05-01 10:00 CEST is past 09:00, so the next slot is
	// Monday 09:00 CEST.
	got := cal.Next(utc("2026-05-01T08:00:00Z"))
	if want := utc("2026-05-04T07:00:00Z"); !got.Equal(want) {
		t.Fatalf("Next = %s, want %s", got, want)
	}
	if got.Location() != berlin {
		t.Errorf("Next returned a time in %s, want Europe/Berlin", got.Location())
	}
}

func TestCalendarNextIsStrictlyAfter(t *testing.T) {
	cal := mustParseCalendar(t, time.UTC, "*:*:*")
	slot := utc("2026-05-01T12:00:00Z")
	if got := cal.Next(slot); !got.Equal(slot.Add(time.Second)) {
		t.Errorf("Next(%s) = %s, want one second later", slot, got)
	}
	// t counts from the start of its microsecond, so a time inside the
	// slot's microsecond is not after it.
	inside := slot.Add(-500 * time.Nanosecond)
	if got := cal.Next(inside); !got.Equal(slot) {
		t.Errorf("Next(%s) = %s, want %s", inside, got, slot)
	}
}

func TestCalendarUnionOfExpressions(t *testing.T) {
	cal := mustParseCalendar(t, time.UTC, "Mon 08:00", "Wed 12:30", "Mon 08:00")
	got := nextSlots(cal, utc("2026-05-01T00:00:00Z"), 4)
	want := []string{"2026-05-04T08:00:00Z", "2026-05-06T12:30:00Z", "2026-05-11T08:00:00Z", "2026-05-13T12:30:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("slots %v, want %v", got, want)
	}
	if normalized := cal.Normalized(); len(normalized) != 3 {
		t.Errorf("Normalized() = %v, want three forms", normalized)
	}
}

func TestCalendarNeverFires(t *testing.T) {
	for _, expr := range []string{"*-02-30", "2026-01-01", "*-04-31 12:00"} {
		cal := mustParseCalendar(t, time.UTC, expr)
		if got := cal.Next(utc("2026-05-01T00:00:00Z")); !got.IsZero() {
			t.Errorf("%q: Next = %s, want the zero time", expr, got)
		}
	}
}

func TestCalendarLastDayOfMonth(t *testing.T) {
	cal := mustParseCalendar(t, time.UTC, "*-*~01")
	got := nextSlots(cal, utc("2027-12-31T12:00:00Z"), 3)
	want := []string{"2028-01-31T00:00:00Z", "2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("slots %v, want %v", got, want)
	}
}

func TestCalendarFractionalSeconds(t *testing.T) {
	cal := mustParseCalendar(t, time.UTC, "*:*:10.25/0.5")
	got := nextSlots(cal, utc("2026-05-01T12:00:00Z"), 3)
	want := []string{"2026-05-01T12:00:10.25Z", "2026-05-01T12:00:10.75Z", "2026-05-01T12:00:11.25Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("slots %v, want %v", got, want)
	}
}

// The DST cases below were checked against systemd-analyze calendar of
// systemd 252; the goldens cover many more.

func TestCalendarSkipsSpringForwardGap(t *testing.T) {
	berlin := mustLoadLocation(t, "Europe/Berlin")
	// 02:30 does not exist on 2026-03-29 in Berlin: clocks jump from
	// 02:00 CET to 03:00 CEST.
	cal := mustParseCalendar(t, berlin, "02:30")
	got := nextSlots(cal, utc("2026-03-28T12:00:00Z"), 2)
	want := []string{"2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("slots %v, want %v", got, want)
	}
}

func TestCalendarFallBackFiresOnce(t *testing.T) {
	berlin := mustLoadLocation(t, "Europe/Berlin")
	// 02:00-02:59 occurs twice on 2026-10-25 in Berlin, first in CEST
	// (00:00-00:59 UTC) and then in CET (01:00-01:59 UTC).
	cal := mustParseCalendar(t, berlin, "*:0/20")
	got := nextSlots(cal, utc("2026-10-25T00:00:00Z"), 4)
	want := []string{"2026-10-25T00:20:00Z", "2026-10-25T00:40:00Z", "2026-10-25T02:00:00Z", "2026-10-25T02:20:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("from the first 02:00: slots %v, want %v", got, want)
	}
	// Searching from inside the second 02:00 hour finds its slots.
	got = nextSlots(cal, utc("2026-10-25T01:10:00Z"), 2)
	want = []string{"2026-10-25T01:20:00Z", "2026-10-25T01:40:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("from the second 02:10: slots %v, want %v", got, want)
	}
}

func TestCalendarHalfHourShift(t *testing.T) {
	lordHowe := mustLoadLocation(t, "Australia/Lord_Howe")
	// On 2026-10-04 Lord Howe moves from 02:00 +10:30 to 02:30 +11.
	cal := mustParseCalendar(t, lordHowe, "*:0/30")
	got := nextSlots(cal, utc("2026-10-03T15:00:00Z"), 2)
	want := []string{"2026-10-03T15:30:00Z", "2026-10-03T16:00:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("slots %v, want %v", got, want)
	}
}

func TestCalendarNamedZone(t *testing.T) {
	cal := mustParseCalendar(t, time.UTC, "*-*-* 02:30 America/New_York")
	// 2026-03-08 02:30 does not exist in New York.
	got := nextSlots(cal, utc("2026-03-08T00:00:00Z"), 2)
	want := []string{"2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("slots %v, want %v", got, want)
	}
}

func TestCalendarWithLatest(t *testing.T) {
	cal := mustParseCalendar(t, time.UTC, "*:0/15")
	slot, ok := Latest(cal, utc("2026-05-01T00:00:00Z"), utc("2026-05-01T10:07:00Z"))
	if !ok || !slot.Equal(utc("2026-05-01T10:00:00Z")) {
		t.Errorf("Latest = %s, %v, want 2026-05-01T10:00:00Z, true", slot, ok)
	}
}

func TestParseCalendarErrorNamesExpression(t *testing.T) {
	_, err := ParseCalendar([]string{"daily", "bogus"}, time.UTC)
	if err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Fatalf("error %v, want it to name the invalid expression", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("error %v wraps no reason", err)
	}
}

func BenchmarkCalendarNext(b *testing.B) {
	berlin := mustLoadLocation(b, "Europe/Berlin")
	for _, expr := range []string{"*:0/15", "Mon..Fri 09:00", "*-*~01 23:00", "Fri *-*-13", "*-02-29"} {
		cal := mustParseCalendar(b, berlin, expr)
		b.Run(expr, func(b *testing.B) {
			at := utc("2026-01-01T00:00:00Z")
			for b.Loop() {
				at = cal.Next(at)
				if at.IsZero() || at.Year() > 2190 {
					at = utc("2026-01-01T00:00:00Z")
				}
			}
		})
	}
}
