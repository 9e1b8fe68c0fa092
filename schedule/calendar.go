package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Calendar is a schedule given as systemd calendar expressions, the
// OnCalendar= syntax of systemd.time(7), so timer units move over
// unchanged. Its slots are the union of the instants of its expressions.
//
// Parsing and the slot search follow systemd 252, including its DST
// behavior: a wall time that falls in a spring-forward gap is skipped. A
// wall time that occurs twice at a fall-back fires at its first
// occurrence, and at the second only when the search starts after the
// clock change, inside the repeated hour.
type Calendar struct {
	specs []*calendarSpec
}

// ParseCalendar parses one or more systemd calendar expressions (a job may
// list several; the schedule fires at the union of their instants). loc is
// the zone used when an expression names none, and nil means UTC.
//
// Like a unit file's parser, it ignores white space around each
// expression. An expression that can never fire, such as "*-02-30", parses
// as it does in systemd, and its Next returns the zero time.
func ParseCalendar(exprs []string, loc *time.Location) (Schedule, error) {
	if len(exprs) == 0 {
		return nil, errors.New("parse calendar: no expression given")
	}
	if loc == nil {
		loc = time.UTC
	}
	cal := &Calendar{}
	for _, expr := range exprs {
		trimmed := strings.Trim(expr, " \t\n\r")
		spec, err := parseCalendarSpec(trimmed, loc)
		if err != nil {
			return nil, fmt.Errorf("invalid calendar expression %q: %w", expr, err)
		}
		cal.specs = append(cal.specs, spec)
	}
	return cal, nil
}

// Next returns the first slot strictly after t, or the zero time when no
// expression fires again. Slots have microsecond precision, and t counts
// from the start of its microsecond.
func (c *Calendar) Next(t time.Time) time.Time {
	var first time.Time
	for _, spec := range c.specs {
		next := spec.next(t)
		if !next.IsZero() && (first.IsZero() || next.Before(first)) {
			first = next
		}
	}
	return first
}

// Normalized returns each expression in systemd's normalized form, as
// systemd-analyze calendar prints it.
func (c *Calendar) Normalized() []string {
	forms := make([]string, len(c.specs))
	for i, spec := range c.specs {
		forms[i] = spec.String()
	}
	return forms
}

// String returns the normalized forms joined by "; ".
func (c *Calendar) String() string {
	return strings.Join(c.Normalized(), "; ")
}
