package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
)

func cmdList(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("list", stdout, stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 0, "no arguments; run agent-runner status NAME to show one job or listener"); code >= 0 {
		return code
	}
	status, err := statusFor(*configPath, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		return printJSON(stdout, stderr, status)
	}
	if d := status.Daemon; d != nil && d.StateError != "" {
		fmt.Fprintf(stderr, "agent-runner: the state folder is failing: %s\n", firstLine(d.StateError))
	}
	printTables(stdout, status, time.Now())
	return exitOK
}

// printTables prints the job table and, when there are listeners, the
// listener table.
func printTables(w io.Writer, status control.Status, now time.Time) {
	hasJobs := len(status.Jobs) > 0 || len(status.Listeners) == 0
	if hasJobs {
		printJobs(w, status.Jobs, now)
	}
	if len(status.Listeners) > 0 {
		if hasJobs {
			fmt.Fprintln(w)
		}
		printListeners(w, status.Listeners, now)
	}
}

// statusFor returns the status for the config at path. A file with
// problems is reported, and the daemon, which keeps running the last
// valid config, is still asked.
func statusFor(path string, stderr io.Writer) (control.Status, error) {
	if err := configMissing(path); err != nil {
		return control.Status{}, err
	}
	cfg, ok := loadConfig(path, stderr)
	if ok {
		return currentStatus(cfg, stderr)
	}
	socket, err := config.LocateSocket(path)
	if err != nil {
		return control.Status{}, err
	}
	status, err := control.GetStatus(socket)
	if err != nil {
		return control.Status{}, errors.New("the config has problems and no daemon responds; fix the config first")
	}
	fmt.Fprintln(stderr, "agent-runner: the daemon keeps running its last valid config; showing its status")
	return status, nil
}

// currentStatus asks the daemon when one answers, and reads the config
// and the store otherwise.
func currentStatus(cfg *config.Config, stderr io.Writer) (control.Status, error) {
	status, err := control.GetStatus(cfg.Runner.Socket)
	if err == nil {
		return status, nil
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return control.Status{}, err
	}
	fmt.Fprintln(stderr, "agent-runner: the daemon is not running; next runs show when it would run them after a start")
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := openStoreOffline(cfg, true, log)
	if err != nil {
		return control.Status{}, err
	}
	if store != nil {
		defer store.Close()
	}
	statuses, err := jobs.OfflineStatus(cfg, store, time.Now())
	if err != nil {
		return control.Status{}, err
	}
	return control.Status{Jobs: statuses, Listeners: offlineListeners(cfg)}, nil
}

// offlineListeners shows every listener as the config leaves it while no
// daemon runs: disabled, failed with its problem, or stopped.
func offlineListeners(cfg *config.Config) []listeners.Health {
	out := make([]listeners.Health, 0, len(cfg.Listeners))
	for _, lc := range cfg.Listeners {
		h := listeners.Health{Name: lc.Name, Kind: lc.Kind, State: listeners.StateStopped}
		switch {
		case !lc.Enabled:
			h.State, h.LastError = listeners.StateDisabled, lc.DisabledReason
		case lc.Problem != nil:
			h.State, h.LastError = listeners.StateFailed, lc.Problem.Error()
		}
		out = append(out, h)
	}
	return out
}

func printListeners(w io.Writer, health []listeners.Health, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LISTENER\tKIND\tSTATE\tSINCE\tRESTARTS\tLAST EVENT\tEVENTS\tDROPPED\tREASON OR LAST ERROR")
	for _, h := range health {
		lastError := h.LastError
		switch {
		case lastError == "":
			lastError = "-"
		case h.State == listeners.StateRunning, h.State == listeners.StateStarting:
			// The error is from an earlier attempt, not the current one,
			// because an attempt records its error when it ends.
			lastError = "before the last restart: " + lastError
		}
		state := h.State
		if h.Stale {
			state += " (stale)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\n", h.Name, h.Kind, state,
			formatTime(h.Since, now), h.Restarts, formatTime(h.LastEvent, now), h.Handled, h.Dropped, firstLine(lastError))
	}
	tw.Flush()
}

func printJobs(w io.Writer, statuses []jobs.JobStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCHEDULE\tSTATE\tNEXT RUN\tLAST RUN\tLAST RESULT")
	for _, s := range statuses {
		result := s.LastResult
		if result == "" {
			result = "-"
		} else if s.LastResult != "ok" && s.LastExitCode > 0 {
			result = fmt.Sprintf("%s (exit %d)", s.LastResult, s.LastExitCode)
		}
		state := s.State
		if s.Stale {
			state += " (stale)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Schedule, state,
			formatTime(s.NextRun, now), formatTime(s.LastStart, now), result)
	}
	tw.Flush()
	printJobProblems(w, statuses)
}

// printJobProblems prints why each job that cannot run on this machine
// is failed, and why each job whose position is ahead runs nothing,
// which the table has no room for.
func printJobProblems(w io.Writer, statuses []jobs.JobStatus) {
	for _, s := range statuses {
		if s.PositionAhead > 0 {
			fmt.Fprintf(w, "\n%s runs no slot until the clock passes its position:\n  %s\n", s.Name, s.StaleReason)
		}
		if s.Problem == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s cannot run:\n", s.Name)
		for line := range strings.SplitSeq(s.Problem, "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
}

// formatTime shows an instant in UTC with its distance from now.
func formatTime(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	rel := "now"
	switch {
	case d > 0:
		rel = "in " + shortDuration(d)
	case d < 0:
		rel = shortDuration(-d) + " ago"
	}
	return fmt.Sprintf("%s (%s)", t.UTC().Format("2006-01-02 15:04:05Z"), rel)
}

func shortDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}
