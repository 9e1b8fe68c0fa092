package schedule

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// glibcProbe is a C program that prints what the C library's mktime and
// tzname return, for comparing calendarClock with glibc. It reads lines of
// "year mon mday hour min sec isdst" in struct tm units and keeps one
// process, so mktime's guess carries from line to line as in systemd.
const glibcProbe = `#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
	struct tm tm;
	tzset();
	if (argc > 1) {
		printf("%s %s\n", tzname[0], tzname[1]);
		return 0;
	}
	while (scanf("%d %d %d %d %d %d %d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			&tm.tm_hour, &tm.tm_min, &tm.tm_sec, &tm.tm_isdst) == 7) {
		time_t t = mktime(&tm);
		printf("%ld %d %d %d %d %d %d %d %d %d\n", (long)t, tm.tm_year, tm.tm_mon, tm.tm_mday,
			tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_wday, tm.tm_yday, tm.tm_isdst);
	}
	return 0;
}
`

// buildGlibcProbe compiles glibcProbe, or skips the test where there is
// no C compiler or the C library is not glibc.
func buildGlibcProbe(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("compares with glibc, which needs Linux")
	}
	if testing.Short() {
		t.Skip("compiles a C program")
	}
	compiler, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler")
	}
	if out, err := exec.Command("ldd", "--version").CombinedOutput(); err != nil ||
		!strings.Contains(strings.ToLower(string(out)), "glibc") && !strings.Contains(string(out), "GNU libc") {
		t.Skip("the C library is not glibc")
	}
	dir := t.TempDir()
	source := filepath.Join(dir, "probe.c")
	if err := os.WriteFile(source, []byte(glibcProbe), 0o644); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "probe")
	if out, err := exec.Command(compiler, "-o", binary, source).CombinedOutput(); err != nil {
		t.Fatalf("compile the glibc probe: %v\n%s", err, out)
	}
	return binary
}

func runGlibcProbe(t *testing.T, probe, zone, input string, args ...string) string {
	t.Helper()
	cmd := exec.Command(probe, args...)
	cmd.Env = []string{"TZ=" + zone}
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run the glibc probe in %s: %v", zone, err)
	}
	return string(out)
}

// Zones with DST changes, half-hour and 45-minute offsets, negative DST
// (Europe/Dublin), and no DST at all, where glibc falls back to a one-hour
// shift for a requested tm_isdst of 1.
var glibcZones = []string{
	"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham",
	"Europe/Dublin", "Asia/Tokyo",
}

func TestMktimeMatchesGlibc(t *testing.T) {
	probe := buildGlibcProbe(t)
	for _, zone := range glibcZones {
		loc := mustLoadLocation(t, zone)
		inputs := mktimeInputs(loc, rand.New(rand.NewSource(1)), 5000)
		var request strings.Builder
		for _, in := range inputs {
			fmt.Fprintf(&request, "%d %d %d %d %d %d %d\n", in.year, in.mon, in.mday, in.hour, in.min, in.sec, in.isdst)
		}
		output := runGlibcProbe(t, probe, zone, request.String())
		clk := &calendarClock{loc: loc}
		scanner := bufio.NewScanner(strings.NewReader(output))
		failures := 0
		for i := 0; scanner.Scan() && failures < 5; i++ {
			in := inputs[i]
			out := in
			got := clk.mktime(&out)
			line := fmt.Sprintf("%d %d %d %d %d %d %d %d %d %d", got, out.year, out.mon, out.mday,
				out.hour, out.min, out.sec, out.wday, out.yday, out.isdst)
			if got == -1 {
				// mktime leaves the struct alone when it fails.
				line = fmt.Sprintf("-1 %d %d %d %d %d %d %d %d %d", in.year, in.mon, in.mday,
					in.hour, in.min, in.sec, in.wday, in.yday, in.isdst)
			}
			if line != scanner.Text() {
				failures++
				t.Errorf("%s: mktime(%+v) = %s, glibc returns %s", zone, in, line, scanner.Text())
			}
		}
	}
}

// mktimeInputs returns wall times around loc's clock changes in 2024-2029,
// with every tm_isdst request and fields pushed out of range.
func mktimeInputs(loc *time.Location, rng *rand.Rand, count int) []brokenTime {
	var changes []int64
	for at := time.Date(2024, 1, 1, 0, 0, 0, 0, loc); at.Year() < 2030; at = at.Add(30 * time.Minute) {
		_, before := at.Zone()
		_, after := at.Add(30 * time.Minute).Zone()
		if before != after {
			changes = append(changes, at.Unix())
		}
	}
	var inputs []brokenTime
	for range count {
		var instant int64
		if len(changes) > 0 && rng.Intn(4) > 0 {
			instant = changes[rng.Intn(len(changes))] + rng.Int63n(4*3600) - 2*3600
		} else {
			instant = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix() + rng.Int63n(6*365*86400)
		}
		at := time.Unix(instant, 0).In(loc)
		in := brokenTime{
			sec: at.Second(), min: at.Minute(), hour: at.Hour(), mday: at.Day(),
			mon: int(at.Month()) - 1, year: at.Year() - 1900, isdst: rng.Intn(3) - 1,
		}
		switch rng.Intn(7) {
		case 0:
			in.min += 30
		case 1:
			in.min = 60
		case 2:
			in.hour++
		case 3:
			in.mday = 1 - rng.Intn(3)
		case 4:
			in.mon++
		case 5:
			in.sec = 60
		}
		inputs = append(inputs, in)
	}
	return inputs
}

func TestZoneAbbreviationsMatchGlibc(t *testing.T) {
	probe := buildGlibcProbe(t)
	for _, zone := range append(glibcZones, "Asia/Kolkata", "Europe/London", "Etc/GMT+5") {
		names := zoneAbbreviations(mustLoadLocation(t, zone))
		got := names[0] + " " + names[1]
		want := strings.TrimSpace(runGlibcProbe(t, probe, zone, "", "tzname"))
		if got != want {
			t.Errorf("%s: abbreviations %q, glibc's tzname is %q", zone, got, want)
		}
	}
}

func TestZoneAbbreviations(t *testing.T) {
	tests := []struct {
		zone, std, dst string
	}{
		{"UTC", "UTC", "UTC"},
		{"Europe/Berlin", "CET", "CEST"},
		{"America/New_York", "EST", "EDT"},
		{"Australia/Lord_Howe", "+1030", "+11"},
		// Japan last observed DST in 1951, and glibc still reports it.
		{"Asia/Tokyo", "JST", "JDT"},
	}
	for _, test := range tests {
		names := zoneAbbreviations(mustLoadLocation(t, test.zone))
		if names != [2]string{test.std, test.dst} {
			t.Errorf("%s: abbreviations %v, want [%s %s]", test.zone, names, test.std, test.dst)
		}
	}
}

func TestCivilDate(t *testing.T) {
	for days := int64(-800_000); days < 800_000; days += 97 {
		at := time.Unix(days*86400, 0).UTC()
		year, month, day := civilDate(days)
		if year != int64(at.Year()) || month != int(at.Month()) || day != at.Day() {
			t.Fatalf("civilDate(%d) = %d-%d-%d, want %s", days, year, month, day, at.Format(time.DateOnly))
		}
		if got := daysBeforeYear(year) + int64(at.YearDay()-1); got != days {
			t.Fatalf("daysBeforeYear(%d) + yday = %d, want %d", year, got, days)
		}
	}
}
