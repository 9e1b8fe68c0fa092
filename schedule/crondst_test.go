package schedule

import (
	"strings"
	"testing"
	"time"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// slots returns the first n slots of s after from, in UTC.
func slots(s Schedule, from time.Time, n int) []string {
	var out []string
	for t := from; len(out) < n; {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t.UTC().Format("2006-01-02 15:04"))
	}
	return out
}

func TestCronDST(t *testing.T) {
	tests := []struct {
		name string
		zone string
		expr string
		from time.Time
		want []string
	}{
		{
			// New York springs forward at 02:00 on 2026-03-08: 02:30
			// does not exist that day and runs at 03:00 EDT (07:00Z).
			name: "US spring gap runs after the change",
			zone: "America/New_York", expr: "30 2 * * *",
			from: time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC),
			want: []string{"2026-03-08 07:00", "2026-03-09 06:30", "2026-03-10 06:30"},
		},
		{
			// New York falls back at 02:00 on 2026-11-01: 01:30 happens
			// at 05:30Z (EDT) and again at 06:30Z (EST); it runs once.
			name: "US fall-back repeat runs once",
			zone: "America/New_York", expr: "30 1 * * *",
			from: time.Date(2026, 10, 31, 12, 0, 0, 0, time.UTC),
			want: []string{"2026-11-01 05:30", "2026-11-02 06:30"},
		},
		{
			// Berlin springs forward at 02:00 CET on 2027-03-28.
			name: "EU spring gap runs after the change",
			zone: "Europe/Berlin", expr: "15 2 * * *",
			from: time.Date(2027, 3, 27, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-03-28 01:00", "2027-03-29 00:15"},
		},
		{
			// Berlin falls back at 03:00 CEST on 2027-10-31; 02:45 repeats.
			name: "EU fall-back repeat runs once",
			zone: "Europe/Berlin", expr: "45 2 * * *",
			from: time.Date(2027, 10, 30, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-10-31 00:45", "2027-11-01 01:45"},
		},
		{
			name: "hourly job keeps every real hour across fall-back",
			zone: "Europe/Berlin", expr: "0 * * * *",
			from: time.Date(2026, 10, 24, 23, 30, 0, 0, time.UTC),
			want: []string{"2026-10-25 00:00", "2026-10-25 01:00", "2026-10-25 02:00"},
		},
		{
			name: "hourly job runs once at the spring change",
			zone: "Europe/Berlin", expr: "0 * * * *",
			from: time.Date(2026, 3, 28, 23, 30, 0, 0, time.UTC),
			want: []string{"2026-03-29 00:00", "2026-03-29 01:00", "2026-03-29 02:00"},
		},
		{
			// 02:15 does not exist on 2026-03-08 in New York. An hourly
			// job runs at the next real hour, 03:15 EDT, with no extra
			// run at the change.
			name: "hourly job at minute 15 skips the gap",
			zone: "America/New_York", expr: "15 * * * *",
			from: time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC),
			want: []string{"2026-03-08 05:15", "2026-03-08 06:15", "2026-03-08 07:15", "2026-03-08 08:15"},
		},
		{
			name: "hourly job at minute 59 skips the gap",
			zone: "America/New_York", expr: "59 * * * *",
			from: time.Date(2026, 3, 8, 5, 30, 0, 0, time.UTC),
			want: []string{"2026-03-08 05:59", "2026-03-08 06:59", "2026-03-08 07:59"},
		},
		{
			// 01:15 happens at 05:15Z (EDT) and at 06:15Z (EST).
			name: "hourly job at minute 15 keeps the repeat",
			zone: "America/New_York", expr: "15 * * * *",
			from: time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC),
			want: []string{"2026-11-01 04:15", "2026-11-01 05:15", "2026-11-01 06:15", "2026-11-01 07:15"},
		},
		{
			// robfig/cron clears the "*" mark of a stepped hour field, so
			// "*/2" follows the fixed-time rules and 02:15 runs at 03:00 EDT.
			name: "stepped hour job moves out of the gap",
			zone: "America/New_York", expr: "15 */2 * * *",
			from: time.Date(2026, 3, 8, 5, 30, 0, 0, time.UTC),
			want: []string{"2026-03-08 07:00", "2026-03-08 08:15"},
		},
		{
			// Berlin repeats 02:00-02:59 on 2027-10-31, and 02:30 runs once.
			name: "stepped hour job runs a repeat once",
			zone: "Europe/Berlin", expr: "30 */2 * * *",
			from: time.Date(2027, 10, 30, 23, 0, 0, 0, time.UTC),
			want: []string{"2027-10-31 00:30", "2027-10-31 03:30"},
		},
		{
			// Berlin repeats 02:00-02:59 on 2027-10-31, so the twelve
			// repeated slots are skipped, and the next is on 11-01.
			name: "every 5 minutes in a repeated hour",
			zone: "Europe/Berlin", expr: "*/5 2 * * *",
			from: time.Date(2027, 10, 31, 0, 50, 0, 0, time.UTC),
			want: []string{"2027-10-31 00:55", "2027-11-01 01:00", "2027-11-01 01:05"},
		},
		{
			name: "every minute in a repeated hour",
			zone: "Europe/Berlin", expr: "* 2 * * *",
			from: time.Date(2027, 10, 31, 0, 58, 0, 0, time.UTC),
			want: []string{"2027-10-31 00:59", "2027-11-01 01:00"},
		},
		{
			name: "every minute in Lord Howe's repeat",
			zone: "Australia/Lord_Howe", expr: "* 1 * * *",
			from: time.Date(2027, 4, 3, 14, 58, 0, 0, time.UTC),
			want: []string{"2027-04-03 14:59", "2027-04-04 14:30"},
		},
		{
			// Lord Howe falls back 30 minutes at 02:00 +11 on 2027-04-04
			// (15:00Z on 04-03), so 01:30-01:59 repeats and 02:00 +1030
			// happens once, at 15:30Z.
			name: "Lord Howe fall-back keeps 02:00",
			zone: "Australia/Lord_Howe", expr: "0 2 * * *",
			from: time.Date(2027, 4, 2, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-04-02 15:00", "2027-04-03 15:30", "2027-04-04 15:30"},
		},
		{
			name: "Lord Howe fall-back keeps 02:15",
			zone: "Australia/Lord_Howe", expr: "15 2 * * *",
			from: time.Date(2027, 4, 2, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-04-02 15:15", "2027-04-03 15:45", "2027-04-04 15:45"},
		},
		{
			name: "Lord Howe fall-back keeps 02:59",
			zone: "Australia/Lord_Howe", expr: "59 2 * * *",
			from: time.Date(2027, 4, 2, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-04-02 15:59", "2027-04-03 16:29", "2027-04-04 16:29"},
		},
		{
			name: "Lord Howe fall-back keeps 03:00",
			zone: "Australia/Lord_Howe", expr: "0 3 * * *",
			from: time.Date(2027, 4, 2, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-04-02 16:00", "2027-04-03 16:30", "2027-04-04 16:30"},
		},
		{
			// 01:45 happens at 14:45Z (+11) and at 15:15Z (+1030).
			name: "Lord Howe fall-back repeat runs once",
			zone: "Australia/Lord_Howe", expr: "45 1 * * *",
			from: time.Date(2027, 4, 2, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-04-02 14:45", "2027-04-03 14:45", "2027-04-04 15:15"},
		},
		{
			name: "Lord Howe hourly job across fall-back",
			zone: "Australia/Lord_Howe", expr: "45 * * * *",
			from: time.Date(2027, 4, 3, 13, 30, 0, 0, time.UTC),
			want: []string{"2027-04-03 13:45", "2027-04-03 14:45", "2027-04-03 15:15", "2027-04-03 16:15"},
		},
		{
			name: "Lord Howe stepped hours across fall-back",
			zone: "Australia/Lord_Howe", expr: "0 */2 * * *",
			from: time.Date(2027, 4, 3, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-04-03 13:00", "2027-04-03 15:30", "2027-04-03 17:30"},
		},
		{
			// Lord Howe springs forward 30 minutes at 02:00 +1030 on
			// 2027-10-03 (15:30Z on 10-02), so 02:00-02:29 is skipped.
			name: "Lord Howe spring-forward keeps 03:00",
			zone: "Australia/Lord_Howe", expr: "0 3 * * *",
			from: time.Date(2027, 10, 1, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-10-01 16:30", "2027-10-02 16:00", "2027-10-03 16:00"},
		},
		{
			name: "Lord Howe spring gap runs after the change",
			zone: "Australia/Lord_Howe", expr: "15 2 * * *",
			from: time.Date(2027, 10, 1, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-10-01 15:45", "2027-10-02 15:30", "2027-10-03 15:15"},
		},
		{
			name: "Lord Howe spring-forward keeps 02:45",
			zone: "Australia/Lord_Howe", expr: "45 2 * * *",
			from: time.Date(2027, 10, 1, 12, 0, 0, 0, time.UTC),
			want: []string{"2027-10-01 16:15", "2027-10-02 15:45", "2027-10-03 15:45"},
		},
		{
			// 02:15 +1030 is skipped, and the hourly job runs on at 03:15.
			name: "Lord Howe hourly job across spring-forward",
			zone: "Australia/Lord_Howe", expr: "15 * * * *",
			from: time.Date(2027, 10, 2, 14, 0, 0, 0, time.UTC),
			want: []string{"2027-10-02 14:45", "2027-10-02 16:15", "2027-10-02 17:15"},
		},
		{
			// Caracas moved from -04 to -0430 at 03:00 on 2007-12-09.
			name: "Caracas 30-minute fall-back keeps 03:00",
			zone: "America/Caracas", expr: "0 3 * * *",
			from: time.Date(2007, 12, 8, 0, 0, 0, 0, time.UTC),
			want: []string{"2007-12-08 07:00", "2007-12-09 07:30", "2007-12-10 07:30"},
		},
		{
			// Caracas moved from -0430 to -04 at 02:30 on 2016-05-01.
			name: "Caracas 30-minute spring-forward keeps 03:00",
			zone: "America/Caracas", expr: "0 3 * * *",
			from: time.Date(2016, 4, 30, 0, 0, 0, 0, time.UTC),
			want: []string{"2016-04-30 07:30", "2016-05-01 07:00", "2016-05-02 07:00"},
		},
		{
			name: "Caracas 30-minute gap runs after the change",
			zone: "America/Caracas", expr: "45 2 * * *",
			from: time.Date(2016, 4, 30, 0, 0, 0, 0, time.UTC),
			want: []string{"2016-04-30 07:15", "2016-05-01 07:00", "2016-05-02 06:45"},
		},
		{
			// Pyongyang moved from +09 to +0830 at midnight on 2015-08-15,
			// so 23:30-23:59 on 08-14 repeats.
			name: "Pyongyang midnight fall-back keeps 01:00",
			zone: "Asia/Pyongyang", expr: "0 1 * * *",
			from: time.Date(2015, 8, 13, 0, 0, 0, 0, time.UTC),
			want: []string{"2015-08-13 16:00", "2015-08-14 16:30", "2015-08-15 16:30"},
		},
		{
			name: "Pyongyang midnight repeat runs once",
			zone: "Asia/Pyongyang", expr: "45 23 * * *",
			from: time.Date(2015, 8, 13, 12, 0, 0, 0, time.UTC),
			want: []string{"2015-08-13 14:45", "2015-08-14 14:45", "2015-08-15 15:15"},
		},
		{
			// Pyongyang moved from +0830 to +09 at 23:30 on 2018-05-04.
			name: "Pyongyang late gap runs after the change",
			zone: "Asia/Pyongyang", expr: "45 23 * * *",
			from: time.Date(2018, 5, 3, 0, 0, 0, 0, time.UTC),
			want: []string{"2018-05-03 15:15", "2018-05-04 15:00", "2018-05-05 14:45"},
		},
		{
			name: "Pyongyang spring-forward keeps midnight",
			zone: "Asia/Pyongyang", expr: "0 0 * * *",
			from: time.Date(2018, 5, 3, 0, 0, 0, 0, time.UTC),
			want: []string{"2018-05-03 15:30", "2018-05-04 15:00", "2018-05-05 15:00"},
		},
		{
			// Troll springs forward two hours at 01:00 UTC on 2027-03-28.
			name: "Troll two-hour gap runs after the change",
			zone: "Antarctica/Troll", expr: "30 2 * * *",
			from: time.Date(2027, 3, 27, 0, 0, 0, 0, time.UTC),
			want: []string{"2027-03-27 02:30", "2027-03-28 01:00", "2027-03-29 00:30"},
		},
		{
			name: "yearly gap date crossing both changes",
			zone: "America/New_York", expr: "30 2 8 3 *",
			from: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			want: []string{"2026-03-08 07:00", "2027-03-08 07:30"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseCron(tt.expr, mustZone(t, tt.zone))
			if err != nil {
				t.Fatal(err)
			}
			got := slots(s, tt.from, len(tt.want))
			for i := range tt.want {
				if i >= len(got) || got[i] != tt.want[i] {
					t.Errorf("slots = %v, want %v", got, tt.want)
					break
				}
			}
		})
	}
}

func TestRestartAfterFallBackDoesNotRepeat(t *testing.T) {
	s, err := ParseCron("30 1 * * *", mustZone(t, "America/New_York"))
	if err != nil {
		t.Fatal(err)
	}
	first := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)
	// A restart resumes from the stored slot, the first 01:30.
	if next := s.Next(first); !next.Equal(time.Date(2026, 11, 2, 6, 30, 0, 0, time.UTC)) {
		t.Errorf("Next after the first 01:30 = %v, want the next day", next)
	}
}

func TestDelayedIsStable(t *testing.T) {
	d1 := StableDelay("digest", time.Hour)
	d2 := StableDelay("digest", time.Hour)
	other := StableDelay("collect", time.Hour)
	if d1 != d2 {
		t.Errorf("StableDelay differs between calls: %v, %v", d1, d2)
	}
	if d1 < 0 || d1 >= time.Hour {
		t.Errorf("StableDelay = %v, want within [0, 1h)", d1)
	}
	if d1 == other {
		t.Errorf("two job names got the same delay %v", d1)
	}
	s := Delayed{Inner: Every{Anchor: time.Unix(0, 0), Interval: time.Hour}, Offset: 10 * time.Minute}
	got := s.Next(time.Unix(0, 0).Add(30 * time.Minute))
	if want := time.Unix(0, 0).Add(70 * time.Minute); !got.Equal(want) {
		t.Errorf("Delayed.Next = %v, want %v", got, want)
	}
}

func TestAtHasOneSlot(t *testing.T) {
	at := time.Date(2026, 12, 24, 10, 0, 0, 0, time.UTC)
	s := At{Instant: at}
	if got := s.Next(at.Add(-time.Hour)); !got.Equal(at) {
		t.Errorf("Next before = %v, want %v", got, at)
	}
	if got := s.Next(at); !got.IsZero() {
		t.Errorf("Next at the instant = %v, want none", got)
	}
}

func TestLatestFindsNewestMissedSlot(t *testing.T) {
	s, _ := ParseCron("* * * * *", time.UTC)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start.Add(365*24*time.Hour + 30*time.Second)
	slot, ok := Latest(s, start, now)
	if !ok || !slot.Equal(now.Truncate(time.Minute)) {
		t.Errorf("Latest = %v %v, want %v", slot, ok, now.Truncate(time.Minute))
	}
	if _, ok := Latest(s, now, now.Add(20*time.Second)); ok {
		t.Errorf("Latest found a slot in a window without one")
	}
}

func TestNoteExplainsDSTSlots(t *testing.T) {
	ny := mustZone(t, "America/New_York")
	gap, _ := ParseCron("30 2 * * *", ny)
	moved := time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC)
	if n := Note(gap, moved); !strings.Contains(n, "moved by DST") {
		t.Errorf("Note(gap slot) = %q", n)
	}
	if n := Note(gap, time.Date(2026, 3, 9, 6, 30, 0, 0, time.UTC)); n != "" {
		t.Errorf("Note(ordinary slot) = %q, want none", n)
	}
	repeat, _ := ParseCron("30 1 * * *", ny)
	if n := Note(repeat, time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)); !strings.Contains(n, "runs once") {
		t.Errorf("Note(repeated slot) = %q", n)
	}
}
