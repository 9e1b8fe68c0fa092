// Package schedule computes when a job's slots fall. A slot is an instant
// at which a job is due; the store records slots, never wall-clock strings,
// so restarts and DST changes neither repeat nor drop one.
package schedule

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule yields a job's slots in order.
type Schedule interface {
	// Next returns the first slot strictly after t, or the zero time when
	// there is none.
	Next(t time.Time) time.Time
}

// cronParser accepts five fields, six with a leading seconds field, and the
// @daily style descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ErrNoFutureSlot reports a schedule that parses but can never fire.
var ErrNoFutureSlot = errors.New("schedule has no future slot")

// UnknownZoneError reports a CRON_TZ= or TZ= prefix that names no time
// zone, so that the config's message can point at the zone, not the fields.
type UnknownZoneError struct {
	Zone string
}

func (e *UnknownZoneError) Error() string {
	return fmt.Sprintf("unknown time zone %q", e.Zone)
}

// ParseCron parses a cron expression evaluated in loc unless the expression
// starts with its own CRON_TZ= or TZ= prefix.
func ParseCron(expr string, loc *time.Location) (Schedule, error) {
	expr = strings.TrimSpace(expr)
	if strings.HasPrefix(expr, "@every") {
		return nil, errors.New("@every is not a calendar schedule: use the every key instead")
	}
	spec := expr
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		// robfig/cron v3.0.1 slices out of range on a zone prefix with
		// nothing after it (parser.go), so that case stops here.
		if !strings.Contains(expr, " ") {
			return nil, fmt.Errorf("parse cron expression %q: a time zone prefix needs the schedule after it, such as \"CRON_TZ=Europe/Berlin 0 8 * * *\"", expr)
		}
		// robfig/cron reads the zone between the "=" and the first space.
		zone := expr[strings.Index(expr, "=")+1 : strings.Index(expr, " ")]
		if _, err := time.LoadLocation(zone); err != nil {
			return nil, fmt.Errorf("parse cron expression %q: %w", expr, &UnknownZoneError{Zone: zone})
		}
	} else {
		spec = "CRON_TZ=" + loc.String() + " " + expr
	}
	parsed, err := cronParser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("parse cron expression %q: %w", expr, err)
	}
	// robfig/cron gives up after five years without a match, which is how
	// impossible dates such as "0 0 30 2 *" show.
	if parsed.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("parse cron expression %q: %w", expr, ErrNoFutureSlot)
	}
	if spec, ok := parsed.(*cron.SpecSchedule); ok {
		return cronSchedule{spec: spec}, nil
	}
	return parsed, nil
}

// Every is a fixed interval counted from Anchor, the moment the job was
// first seen, so its slots stay put across restarts.
type Every struct {
	Anchor   time.Time
	Interval time.Duration
}

// Next returns Anchor + k×Interval for the smallest k that lands after t.
func (e Every) Next(t time.Time) time.Time {
	if e.Interval <= 0 {
		return time.Time{}
	}
	if t.Before(e.Anchor) {
		return e.Anchor
	}
	k := t.Sub(e.Anchor)/e.Interval + 1
	return e.Anchor.Add(k * e.Interval)
}

// Latest returns the last slot in (after, now], and false when no slot
// falls in that window. It searches backwards from now in doubling steps,
// so a year-long outage of a per-minute job costs a few dozen calls to
// Next rather than half a million.
func Latest(s Schedule, after, now time.Time) (time.Time, bool) {
	first := s.Next(after)
	if first.IsZero() || first.After(now) {
		return time.Time{}, false
	}
	from := after
	for step := time.Minute; ; step *= 2 {
		// now.Sub saturates, so this also ends the doubling before step
		// overflows on a window of centuries.
		if step >= now.Sub(after) {
			break
		}
		probe := now.Add(-step)
		if next := s.Next(probe); !next.IsZero() && !next.After(now) {
			from = probe
			break
		}
	}
	slot := s.Next(from)
	for {
		next := s.Next(slot)
		if next.IsZero() || next.After(now) {
			return slot, true
		}
		slot = next
	}
}
