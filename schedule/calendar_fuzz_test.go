package schedule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseCalendar checks that no expression makes ParseCalendar or Next
// panic or hang, that slots move forward, and that a normalized form
// parses back to itself.
//
// NOTE: Next stops after maxCalendarIterations (1000) search steps, as
// systemd does, which is what bounds its run time here. The fuzzer's own
// timeout catches a hang.
func FuzzParseCalendar(f *testing.F) {
	data, err := os.ReadFile(filepath.Join(goldenDir, "expressions.txt"))
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			f.Add(line, int64(1774738800))
		}
	}
	f.Add("Sun *-*~07/1 02:30:00.5 CEST", int64(1792886400))
	f.Add("*-02-29 Mon 01:59:59.999999", int64(0))

	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string, base int64) {
		sched, err := ParseCalendar([]string{expr}, berlin)
		if err != nil {
			return
		}
		cal := sched.(*Calendar)
		normalized := cal.String()
		again, err := ParseCalendar([]string{normalized}, berlin)
		if err != nil {
			t.Fatalf("%q normalizes to %q, which does not parse: %v", expr, normalized, err)
		}
		if got := again.(*Calendar).String(); got != normalized {
			t.Fatalf("%q normalizes to %q, which normalizes to %q", expr, normalized, got)
		}

		// Keep base times within systemd's range of years.
		at := time.Unix(base%(7_258_118_400+86400), 0)
		for range 5 {
			next := cal.Next(at)
			if next.IsZero() {
				return
			}
			if !next.After(at) {
				t.Fatalf("%q: Next(%s) = %s, not after it", expr, at.UTC(), next.UTC())
			}
			at = next
		}
	})
}
