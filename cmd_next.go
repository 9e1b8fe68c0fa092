package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/schedule"
	"github.com/agent-runner/agent-runner/state"
)

func cmdNext(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("next", stdout, stderr)
	count := fs.Int("n", 10, "how many run times to show")
	downSince := fs.String("down-since", "", "also show what catch-up would do after an outage since TIME (RFC 3339, such as 2026-12-01T08:00:00Z)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 1, 1, "one job name"); code >= 0 {
		return code
	}
	if !validCount(*count, stderr) {
		return exitUsage
	}
	var since time.Time
	if *downSince != "" {
		var err error
		if since, err = time.Parse(time.RFC3339, *downSince); err != nil {
			fmt.Fprintf(stderr, "agent-runner: invalid --down-since %q: %s\n", *downSince, instantHint(*downSince))
			return exitUsage
		}
		if since.After(time.Now()) {
			fmt.Fprintf(stderr, "agent-runner: invalid --down-since %s: it is in the future; give the time the machine went down\n", *downSince)
			return exitUsage
		}
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitFailure
	}
	job := cfg.Job(fs.Arg(0))
	if job == nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", unknownJob(cfg, fs.Arg(0)))
		return exitFailure
	}
	status, err := currentStatus(cfg, io.Discard)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	var st state.JobState
	for _, s := range status.Jobs {
		if s.Name == job.Name {
			st = s.JobState
		}
	}
	now := time.Now()
	if st.FirstSeen.IsZero() {
		st.FirstSeen = now
	}
	sched, err := jobs.Schedule(job, st)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	if !job.Enabled {
		fmt.Fprintf(stdout, "%s is disabled (enabled = false): it runs at none of these times until it is enabled; run-job still runs it\n", job.Name)
	}
	printNext(stdout, job.Name, jobs.Describe(job), job.Location, sched, now, *count)
	if !since.IsZero() {
		printCatchUp(stdout, jobs.PlanCatchUp(job, sched, since, now), job.CatchUp)
	}
	return exitOK
}

func printNext(w io.Writer, name, describe string, loc *time.Location, sched schedule.Schedule, now time.Time, n int) {
	fmt.Fprintf(w, "%s: %s\n", name, describe)
	t := now
	for i := 0; i < n; i++ {
		t = sched.Next(t)
		if t.IsZero() {
			fmt.Fprintln(w, "  no further runs")
			return
		}
		line := fmt.Sprintf("  %s  %s", t.UTC().Format("2006-01-02 15:04:05Z"), t.In(loc).Format("Mon 2006-01-02 15:04:05 MST"))
		if note := schedule.Note(sched, t); note != "" {
			line += "  (" + note + ")"
		}
		fmt.Fprintln(w, line)
	}
}

func printCatchUp(w io.Writer, plan jobs.CatchUpPlan, policy string) {
	fmt.Fprintf(w, "after that outage: %s slot(s) missed; catch_up = %q ", plan.Missed, policy)
	switch {
	case plan.Missed == "0":
		fmt.Fprintln(w, "has nothing to do")
	case len(plan.Runs) == 0:
		fmt.Fprintln(w, "skips them and waits for the next slot")
	default:
		var slots []string
		for _, s := range plan.Runs {
			slots = append(slots, s.UTC().Format("15:04:05Z Jan 2"))
		}
		fmt.Fprintf(w, "runs %d at start: %s\n", len(plan.Runs), strings.Join(slots, ", "))
	}
}

// instantHint returns how to write the RFC 3339 instant that text is
// not. A date and time without a zone gets its own hint, because the zone
// is the part most often left out.
func instantHint(text string) string {
	if _, err := time.Parse("2006-01-02T15:04:05", text); err == nil {
		return "add the time zone: Z for UTC or an offset, such as " + text + "Z or " + text + "+01:00"
	}
	return "write an instant such as 2026-12-01T08:00:00Z"
}
