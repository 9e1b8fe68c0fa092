package main

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/agent-runner/agent-runner/bench"
)

// target is a project goal for one row: the median of the row's values
// must be at most limit, or at least limit when atLeast is set.
type target struct {
	limit   float64
	atLeast bool
	// text is the target as the table shows it, such as "≤ 2 ms".
	text string
}

// met reports whether value meets the target.
func (t target) met(value float64) bool {
	if t.atLeast {
		return value >= t.limit
	}
	return value <= t.limit
}

// row is one line of the results table: one figure measured once per
// repetition.
type row struct {
	figure string
	unit   string
	values []float64
	target *target
	// err is set when the figure could not be measured.
	err  error
	note string
}

// status returns "met", "MISSED", "FAILED" or "" for a row without a
// target.
func (r row) status() string {
	if r.err != nil || len(r.values) == 0 {
		return "FAILED"
	}
	if r.target == nil {
		return ""
	}
	if r.target.met(bench.SpreadOf(r.values).Median) {
		return "met"
	}
	return "MISSED"
}

func atMost(limit float64, unit string) *target {
	return &target{limit: limit, text: "≤ " + formatValue(limit) + " " + unit}
}

func atLeast(limit float64, unit string) *target {
	return &target{limit: limit, atLeast: true, text: "≥ " + formatValue(limit) + " " + unit}
}

// formatValue prints v with three significant digits, and whole numbers
// from 1,000 up without a fraction.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.2f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.3f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// printTable writes the rows as a Markdown table: the median over the
// repetitions, their minimum and maximum, and the target's status.
func printTable(w io.Writer, rows []row) {
	header := []string{"figure", "median", "min–max", "runs", "target", "result", "note"}
	lines := [][]string{header}
	for _, r := range rows {
		if r.err != nil {
			lines = append(lines, []string{r.figure, "—", "—", "0", targetText(r), r.status(), "error: " + r.err.Error()})
			continue
		}
		s := bench.SpreadOf(r.values)
		lines = append(lines, []string{
			r.figure,
			formatValue(s.Median) + " " + r.unit,
			formatValue(s.Min) + "–" + formatValue(s.Max),
			fmt.Sprint(s.Count),
			targetText(r),
			r.status(),
			r.note,
		})
	}
	widths := make([]int, len(header))
	for _, line := range lines {
		for i, cell := range line {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for i, line := range lines {
		writeTableLine(w, line, widths)
		if i == 0 {
			separator := make([]string, len(widths))
			for j, width := range widths {
				separator[j] = strings.Repeat("-", width)
			}
			writeTableLine(w, separator, widths)
		}
	}
}

func writeTableLine(w io.Writer, cells []string, widths []int) {
	var b strings.Builder
	b.WriteString("|")
	for i, cell := range cells {
		b.WriteString(" ")
		b.WriteString(cell)
		b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(cell))))
		b.WriteString(" |")
	}
	fmt.Fprintln(w, b.String())
}

func targetText(r row) string {
	if r.target == nil {
		return ""
	}
	return r.target.text
}

// misses returns the rows whose target was missed or that could not be
// measured.
func misses(rows []row) []row {
	var missed []row
	for _, r := range rows {
		if s := r.status(); s == "MISSED" || s == "FAILED" {
			missed = append(missed, r)
		}
	}
	return missed
}
