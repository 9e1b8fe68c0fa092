package config

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/schedule"
)

// Catch-up, overlap and retry policies.
const (
	// CatchUpAll runs every missed slot, up to MaxCatchUp of them.
	CatchUpAll = "all"

	OverlapSkip    = "skip"
	OverlapQueue   = "queue"
	OverlapReplace = "replace"
)

// policyKeys are the run policies that [defaults] may set too.
var policyKeys = []string{
	"catch_up_deadline", "max_catch_up", "overlap",
	"randomized_delay", "retries", "retry_backoff",
}

const (
	defaultMaxCatchUp   = 10
	defaultRetryBackoff = 30 * time.Second
	maxRetries          = 100
)

// policySettings are the run policies of [defaults] or one job.
type policySettings struct {
	overlap         setting[string]
	retries         setting[int]
	retryBackoff    setting[time.Duration]
	randomizedDelay setting[time.Duration]
	maxCatchUp      setting[int]
	catchUpDeadline setting[time.Duration]
}

func (l *loader) decodePolicies(t table) policySettings {
	var p policySettings
	if policy, ok := l.stringValue(t, "overlap", `"skip"`); ok {
		if !slices.Contains([]string{OverlapSkip, OverlapQueue, OverlapReplace}, policy) {
			l.report(t.key("overlap"), `invalid overlap %q: use "skip" to drop a slot that finds the job running, "queue" to run it afterwards, or "replace" to stop the running one`, policy)
		}
		p.overlap = setting[string]{policy, t.key("overlap")}
	}
	if n, ok := l.intRange(t, "retries", "2", 0, maxRetries); ok {
		p.retries = setting[int]{n, t.key("retries")}
	}
	if d, ok := l.durationValue(t, "retry_backoff", time.Second); ok {
		p.retryBackoff = setting[time.Duration]{d, t.key("retry_backoff")}
	}
	if d, ok := l.durationValue(t, "randomized_delay", 0); ok {
		p.randomizedDelay = setting[time.Duration]{d, t.key("randomized_delay")}
	}
	if n, ok := l.intRange(t, "max_catch_up", "10", 1, 10000); ok {
		p.maxCatchUp = setting[int]{n, t.key("max_catch_up")}
	}
	if d, ok := l.durationValue(t, "catch_up_deadline", time.Second); ok {
		p.catchUpDeadline = setting[time.Duration]{d, t.key("catch_up_deadline")}
	}
	return p
}

// intRange returns the integer at name when it lies in [low, high].
func (l *loader) intRange(t table, name, example string, low, high int) (int, bool) {
	n, ok := l.intValue(t, name, example)
	if !ok {
		return 0, false
	}
	if n < int64(low) || n > int64(high) {
		l.report(t.key(name), "%s %d is out of range: keep it between %d and %d", name, n, low, high)
		return 0, false
	}
	return int(n), true
}

func (p policySettings) over(d policySettings) policySettings {
	return policySettings{
		overlap:         p.overlap.or(d.overlap),
		retries:         p.retries.or(d.retries),
		retryBackoff:    p.retryBackoff.or(d.retryBackoff),
		randomizedDelay: p.randomizedDelay.or(d.randomizedDelay),
		maxCatchUp:      p.maxCatchUp.or(d.maxCatchUp),
		catchUpDeadline: p.catchUpDeadline.or(d.catchUpDeadline),
	}
}

// applyPolicies copies the merged policies into job with the built-in
// defaults for the ones nobody set.
func applyPolicies(job *Job, p policySettings) {
	job.Overlap = OverlapSkip
	if p.overlap.isSet() {
		job.Overlap = p.overlap.value
	}
	job.Retries = p.retries.value
	job.RetryBackoff = defaultRetryBackoff
	if p.retryBackoff.isSet() {
		job.RetryBackoff = p.retryBackoff.value
	}
	job.RandomizedDelay = p.randomizedDelay.value
	job.MaxCatchUp = defaultMaxCatchUp
	if p.maxCatchUp.isSet() {
		job.MaxCatchUp = p.maxCatchUp.value
	}
	job.CatchUpDeadline = p.catchUpDeadline.value
}

// decodeChains reads on_success and on_failure: jobs to start when this
// one ends.
func (l *loader) decodeChains(t table, job *Job) {
	job.OnSuccess, _ = l.stringList(t, "on_success", `["publish"]`)
	job.OnFailure, _ = l.stringList(t, "on_failure", `["notify-owner"]`)
}

// checkChains reports chained jobs that do not exist and chains that loop
// back to where they started, which would run for ever.
func (l *loader) checkChains(jobs []*Job) {
	byName := make(map[string]*Job, len(jobs))
	for _, job := range jobs {
		byName[job.Name] = job
	}
	for _, plan := range l.jobs {
		for key, targets := range map[string][]string{"on_success": plan.job.OnSuccess, "on_failure": plan.job.OnFailure} {
			for _, target := range targets {
				if byName[target] == nil {
					l.report(plan.path.child(key), "no job is named %q: fix the name or add [jobs.%s]", target, target)
				}
			}
		}
		if cycle := findCycle(plan.job.Name, byName); cycle != nil {
			l.report(plan.path, "on_success and on_failure form a loop %s: a chained job must not start its own chain again",
				strings.Join(cycle, " → "))
		}
	}
}

// findCycle returns a chain from start back to start, or nil.
func findCycle(start string, byName map[string]*Job) []string {
	var walk func(name string, path []string, seen map[string]bool) []string
	walk = func(name string, path []string, seen map[string]bool) []string {
		job := byName[name]
		if job == nil {
			return nil
		}
		for _, next := range append(slices.Clone(job.OnSuccess), job.OnFailure...) {
			if next == start {
				return append(path, next)
			}
			if seen[next] {
				continue
			}
			seen[next] = true
			if cycle := walk(next, append(path, next), seen); cycle != nil {
				return cycle
			}
		}
		return nil
	}
	return walk(start, []string{start}, map[string]bool{})
}

// decodeAt reads a one-off run time, as a TOML date-time with an offset
// or an RFC 3339 string.
func (l *loader) decodeAt(t table) (time.Time, bool) {
	value, ok := t.values["at"]
	if !ok {
		return time.Time{}, false
	}
	switch v := value.(type) {
	case time.Time:
		return v.UTC(), true
	case string:
		at, err := time.Parse(time.RFC3339, v)
		if err == nil {
			return at.UTC(), true
		}
	}
	l.report(t.key("at"), "invalid at %s: write an instant with its offset, such as at = \"2026-12-24T10:00:00Z\"", describeValue(value))
	return time.Time{}, false
}

func describeValue(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return typeName(v)
}

// decodeCalendar reads on_calendar: one systemd calendar expression or a
// list of them, as OnCalendar= lines of a systemd timer.
func (l *loader) decodeCalendar(t table, job *Job) {
	value, ok := t.values["on_calendar"]
	if !ok {
		return
	}
	var exprs []string
	if s, isString := value.(string); isString {
		exprs = []string{s}
	} else if list, ok := l.stringList(t, "on_calendar", `["Mon..Fri 09:00", "Sat 10:00"]`); ok {
		exprs = list
	} else {
		return
	}
	if len(exprs) == 0 {
		l.report(t.key("on_calendar"), "must not be empty: write an expression such as \"Mon..Fri 09:00\"")
		return
	}
	sched, err := schedule.ParseCalendar(exprs, job.Location)
	if err != nil {
		l.report(t.key("on_calendar"), "%v: %s", err, calendarHint(exprs, job.Location))
		return
	}
	if sched.Next(time.Now()).IsZero() {
		l.report(t.key("on_calendar"), "calendar expression never fires, as systemd-analyze calendar would show: check that its day and month exist together")
		return
	}
	job.Calendar = exprs
}

// calendarHint is the fix for on_calendar expressions that
// schedule.ParseCalendar rejects. A line copied whole from a timer unit,
// "OnCalendar=daily", gets the expression without its key, and a cron
// expression gets the schedule key that takes it.
func calendarHint(exprs []string, loc *time.Location) string {
	for _, expr := range exprs {
		if rest, ok := strings.CutPrefix(expr, "OnCalendar="); ok {
			if _, err := schedule.ParseCalendar([]string{rest}, loc); err == nil {
				return fmt.Sprintf("drop the key of the timer unit and write %q", rest)
			}
		}
		if _, err := schedule.ParseCron(expr, loc); err == nil {
			return fmt.Sprintf("%q is a cron expression, so write schedule = %q instead of on_calendar", expr, expr)
		}
	}
	return `write it as systemd.time(7) describes, such as "*-*-* 20:00:00 UTC" or "Mon..Fri 09:00"`
}
