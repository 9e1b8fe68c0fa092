package schedule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zones for machines without /usr/share/zoneinfo
)

// The golden files under testdata/calendar hold what systemd-analyze
// calendar of systemd 252 (Debian 12) printed for every expression in
// expressions.txt, per zone and base time. Regenerate them on a machine
// with that systemd-analyze:
//
//	go test ./schedule/ -run TestCalendarGolden -update-golden
var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/calendar/*.jsonl from systemd-analyze")

const (
	goldenDir        = "testdata/calendar"
	goldenIterations = 8
)

// goldenZones lists the zones the goldens cover and the base times for
// each: month ends, the leap day of 2028, and the 2026 and 2027 DST
// changes of the zone. Fall-back bases sit in the first occurrence of the
// repeated hour and, once per zone, in the second.
var goldenZones = []struct {
	zone  string
	bases []string
}{
	{"UTC", []string{
		"2026-01-31T22:30:00Z", "2026-02-28T21:00:00Z", "2027-12-31T22:00:00Z", "2028-02-28T21:00:00Z",
		"2026-03-29T00:30:00Z", "2026-10-25T00:30:00Z", "2026-11-01T05:30:00Z", "2026-10-03T15:00:00Z",
	}},
	{"Europe/Berlin", []string{
		"2026-01-31T22:30:00Z", "2026-02-28T21:00:00Z", "2027-12-31T22:00:00Z", "2028-02-28T21:00:00Z",
		"2026-03-29T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:10:00Z",
		"2027-03-28T00:30:00Z", "2027-10-31T00:30:00Z",
	}},
	{"America/New_York", []string{
		"2026-01-31T22:30:00Z", "2026-02-28T21:00:00Z", "2027-12-31T22:00:00Z", "2028-02-28T21:00:00Z",
		"2026-03-08T06:30:00Z", "2026-11-01T05:30:00Z", "2026-11-01T06:10:00Z",
		"2027-03-14T06:30:00Z", "2027-11-07T05:30:00Z",
	}},
	{"Australia/Lord_Howe", []string{
		"2026-01-31T22:30:00Z", "2026-02-28T21:00:00Z", "2027-12-31T22:00:00Z", "2028-02-28T21:00:00Z",
		"2026-04-04T14:30:00Z", "2026-04-04T15:10:00Z", "2026-10-03T15:00:00Z",
		"2027-04-03T14:30:00Z", "2027-10-02T15:00:00Z",
	}},
}

// calendarGolden is systemd's verdict on one expression in one zone.
type calendarGolden struct {
	Zone       string      `json:"zone"`
	Expr       string      `json:"expr"`
	Rejected   bool        `json:"rejected,omitempty"`
	Normalized string      `json:"normalized,omitempty"`
	Runs       []goldenRun `json:"runs,omitempty"`
}

// goldenRun lists the slots after Base, truncated to whole seconds as
// systemd-analyze prints them. End is "never" when systemd found no
// further slot and "error" when it gave up; it is empty when the list
// merely stopped at goldenIterations.
type goldenRun struct {
	Base string   `json:"base"`
	Next []string `json:"next"`
	End  string   `json:"end,omitempty"`
}

func TestCalendarGolden(t *testing.T) {
	if *updateGolden {
		writeGoldens(t)
	}
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no golden files in %s: run with -update-golden", goldenDir)
	}
	count := 0
	for _, file := range files {
		for _, golden := range readGoldens(t, file) {
			checkGolden(t, golden)
			count++
		}
	}
	t.Logf("checked %d golden cases", count)
}

// TestCalendarMatchesSystemdAnalyze compares a sample of the expressions
// with the installed systemd-analyze from the current time on, so it also
// covers base times the goldens do not.
func TestCalendarMatchesSystemdAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	if testing.Short() {
		t.Skip("runs systemd-analyze")
	}
	exprs := readExpressions(t)
	var sample []string
	for i := 0; i < len(exprs); i += 7 {
		sample = append(sample, exprs[i])
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, zone := range goldenZones {
		bases := []time.Time{now, mustParseTime(t, zone.bases[len(zone.bases)-1])}
		for _, golden := range runOracle(t, zone.zone, bases, sample) {
			checkGolden(t, golden)
		}
	}
}

func checkGolden(t *testing.T, golden calendarGolden) {
	t.Helper()
	loc, err := time.LoadLocation(golden.Zone)
	if err != nil {
		t.Fatal(err)
	}
	sched, err := ParseCalendar([]string{golden.Expr}, loc)
	if golden.Rejected {
		if err == nil {
			t.Errorf("%s %q: systemd rejects it, ParseCalendar accepted it as %q",
				golden.Zone, golden.Expr, sched.(*Calendar).String())
		}
		return
	}
	if err != nil {
		t.Errorf("%s %q: systemd accepts it as %q, ParseCalendar: %v",
			golden.Zone, golden.Expr, golden.Normalized, err)
		return
	}
	cal := sched.(*Calendar)
	if got := cal.String(); got != golden.Normalized {
		t.Errorf("%s %q: normalized form %q, systemd prints %q", golden.Zone, golden.Expr, got, golden.Normalized)
	}
	for _, run := range golden.Runs {
		checkGoldenRun(t, golden, cal, run)
	}
}

func checkGoldenRun(t *testing.T, golden calendarGolden, cal *Calendar, run goldenRun) {
	t.Helper()
	at := mustParseTime(t, run.Base)
	for i, want := range run.Next {
		next := cal.Next(at)
		got := next.UTC().Truncate(time.Second).Format(time.RFC3339)
		if next.IsZero() {
			got = "never"
		}
		if got != want {
			t.Errorf("%s %q from %s: slot %d is %s, systemd gives %s (all: %s)",
				golden.Zone, golden.Expr, run.Base, i+1, got, want, strings.Join(run.Next, " "))
			return
		}
		at = next
	}
	if run.End != "" {
		if next := cal.Next(at); !next.IsZero() {
			t.Errorf("%s %q from %s: slot %d is %s, systemd finds none (%s)",
				golden.Zone, golden.Expr, run.Base, len(run.Next)+1, next.UTC().Format(time.RFC3339), run.End)
		}
	}
}

func mustParseTime(t *testing.T, value string) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339, value)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

func readGoldens(t *testing.T, file string) []calendarGolden {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var goldens []calendarGolden
	decoder := json.NewDecoder(bytes.NewReader(data))
	for decoder.More() {
		var golden calendarGolden
		if err := decoder.Decode(&golden); err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		goldens = append(goldens, golden)
	}
	return goldens
}

// readExpressions reads expressions.txt: one expression per line, with
// "#" starting a comment line.
func readExpressions(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "expressions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		exprs = append(exprs, line)
	}
	return exprs
}

func writeGoldens(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Fatalf("-update-golden needs systemd-analyze: %v", err)
	}
	exprs := readExpressions(t)
	for _, zone := range goldenZones {
		var bases []time.Time
		for _, base := range zone.bases {
			bases = append(bases, mustParseTime(t, base))
		}
		var buf bytes.Buffer
		for _, golden := range runOracle(t, zone.zone, bases, exprs) {
			line, err := json.Marshal(golden)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(line)
			buf.WriteByte('\n')
		}
		file := filepath.Join(goldenDir, strings.ReplaceAll(zone.zone, "/", "_")+".jsonl")
		if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// runOracle runs systemd-analyze to get its verdict on each expression in
// zone, then the slots of the accepted ones after each base time, which
// it passes as --base-time=@SECONDS.
func runOracle(t *testing.T, zone string, bases []time.Time, exprs []string) []calendarGolden {
	t.Helper()
	goldens := make([]calendarGolden, len(exprs))
	var accepted []string
	for i, expr := range exprs {
		goldens[i] = calendarGolden{Zone: zone, Expr: expr}
		// One expression per call, because rejections go to stderr and
		// could not be matched to the expressions otherwise.
		blocks, stderr := runSystemdAnalyze(t, zone, bases[0], 1, []string{expr})
		if strings.Contains(stderr, "Failed to parse calendar specification") {
			goldens[i].Rejected = true
			continue
		}
		if len(blocks) != 1 || blocks[0].original != expr {
			t.Fatalf("systemd-analyze %q in %s: unexpected output, stderr: %s", expr, zone, stderr)
		}
		goldens[i].Normalized = blocks[0].normalized
		accepted = append(accepted, expr)
	}
	for _, base := range bases {
		blocks, stderr := runSystemdAnalyze(t, zone, base, goldenIterations, accepted)
		byExpr := make(map[string]oracleBlock, len(blocks))
		for _, block := range blocks {
			byExpr[block.original] = block
		}
		for i := range goldens {
			if goldens[i].Rejected {
				continue
			}
			goldens[i].Runs = append(goldens[i].Runs, oracleRun(t, base, goldens[i], byExpr, stderr))
		}
	}
	return goldens
}

func oracleRun(t *testing.T, base time.Time, golden calendarGolden, byExpr map[string]oracleBlock, stderr string) goldenRun {
	t.Helper()
	run := goldenRun{Base: base.UTC().Format(time.RFC3339), Next: []string{}}
	block, ok := byExpr[golden.Expr]
	if !ok {
		// systemd-analyze prints no table when computing a slot fails.
		if !strings.Contains(stderr, fmt.Sprintf("Failed to determine next elapse for '%s'", golden.Expr)) {
			t.Fatalf("systemd-analyze printed nothing for %q in %s, stderr: %s", golden.Expr, golden.Zone, stderr)
		}
		run.End = "error"
		return run
	}
	for _, next := range block.next {
		run.Next = append(run.Next, next.Format(time.RFC3339))
	}
	if len(block.next) < goldenIterations {
		run.End = "never"
	}
	return run
}

// oracleBlock is the table systemd-analyze calendar prints for one
// accepted expression.
type oracleBlock struct {
	original   string
	normalized string
	next       []time.Time
}

func runSystemdAnalyze(t *testing.T, zone string, base time.Time, iterations int, exprs []string) ([]oracleBlock, string) {
	t.Helper()
	if len(exprs) == 0 {
		return nil, ""
	}
	args := []string{"--no-pager", "calendar",
		fmt.Sprintf("--iterations=%d", iterations),
		fmt.Sprintf("--base-time=@%d", base.Unix()), "--"}
	cmd := exec.Command("systemd-analyze", append(args, exprs...)...)
	cmd.Env = append(os.Environ(), "TZ="+zone, "LC_ALL=C", "SYSTEMD_COLORS=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run systemd-analyze: %v", err)
	}
	blocks, err := parseOracleOutput(stdout.String())
	if err != nil {
		t.Fatalf("systemd-analyze in %s from %s: %v", zone, base, err)
	}
	return blocks, stderr.String()
}

// parseOracleOutput reads the tables of systemd-analyze calendar. A table
// starts with "Original form:", or with "Normalized form:" when the two
// are equal. Each slot line shows local time; outside UTC a "(in UTC):"
// line follows it, and that is the one kept.
func parseOracleOutput(output string) ([]oracleBlock, error) {
	var blocks []oracleBlock
	var raw []string
	flush := func() error {
		if len(blocks) == 0 {
			return nil
		}
		for _, value := range raw {
			fields := strings.Fields(value)
			if len(fields) != 4 || fields[3] != "UTC" {
				return fmt.Errorf("unexpected slot %q", value)
			}
			at, err := time.Parse("2006-01-02 15:04:05", fields[1]+" "+fields[2])
			if err != nil {
				return err
			}
			last := &blocks[len(blocks)-1]
			last.next = append(last.next, at)
		}
		raw = nil
		return nil
	}
	scanner := bufio.NewScanner(strings.NewReader(output))
	for scanner.Scan() {
		label, value, found := strings.Cut(strings.TrimLeft(scanner.Text(), " "), ": ")
		if !found {
			continue
		}
		switch {
		case label == "Original form":
			if err := flush(); err != nil {
				return nil, err
			}
			blocks = append(blocks, oracleBlock{original: value})
		case label == "Normalized form":
			// The original form is left out when it equals this one.
			if len(blocks) == 0 || blocks[len(blocks)-1].normalized != "" {
				if err := flush(); err != nil {
					return nil, err
				}
				blocks = append(blocks, oracleBlock{original: value})
			}
			blocks[len(blocks)-1].normalized = value
		case label == "Next elapse" || strings.HasPrefix(label, "Iter. #"):
			if value != "never" {
				raw = append(raw, value)
			}
		case label == "(in UTC)":
			raw[len(raw)-1] = value
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return blocks, scanner.Err()
}
