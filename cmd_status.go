package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/daemon"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("status", stdout, stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 1, "at most one job or listener name"); code >= 0 {
		return code
	}
	status, err := statusFor(*configPath, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	// The summary line describes the whole daemon, also for one name.
	summary := daemon.Summary(status)
	if name := fs.Arg(0); name != "" {
		selected := only(status, name)
		if len(selected.Jobs)+len(selected.Listeners) == 0 {
			fmt.Fprintf(stderr, "agent-runner: no job or listener is named %q; jobs: %s; listeners: %s\n",
				name, joinNames(statusJobNames(status)), joinNames(statusListenerNames(status)))
			return exitFailure
		}
		status = selected
	}
	if *asJSON {
		if code := printJSON(stdout, stderr, status); code != exitOK {
			return code
		}
	} else {
		printStatus(stdout, summary, status, time.Now())
	}
	if status.Daemon == nil {
		// The status came from the store because no daemon responds.
		// Exiting 1 lets a script such as "agent-runner status || alert"
		// notice a stopped daemon.
		return exitFailure
	}
	return exitOK
}

// printStatus prints the summary line, the daemon and cluster lines, and
// the tables of jobs and listeners.
func printStatus(stdout io.Writer, summary string, status control.Status, now time.Time) {
	fmt.Fprintln(stdout, summary)
	if d := status.Daemon; d != nil {
		fmt.Fprintf(stdout, "daemon %s since %s; config %s (sha256 %s…) loaded %s\n", d.Version,
			formatTime(d.StartedAt, now), d.Config, d.ConfigHash[:12], formatTime(d.LoadedAt, now))
		if d.ReloadError != "" {
			fmt.Fprintf(stdout, "last reload rejected %s: %s%s\n", formatTime(d.ReloadFailedAt, now), firstLine(d.ReloadError), moreProblems(d.ReloadError))
		}
		if d.StateError != "" {
			fmt.Fprintf(stdout, "state folder failing since %s: %s\n", formatTime(d.StateErrorAt, now), firstLine(d.StateError))
		}
	}
	printCluster(stdout, status.Cluster, now)
	fmt.Fprintln(stdout)
	printTables(stdout, status, now)
}

// moreProblems counts the problems of a rejected reload after the first,
// which is the only one status shows.
func moreProblems(reloadError string) string {
	n := strings.Count(strings.TrimRight(reloadError, "\n"), "\n")
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (and %s: agent-runner check lists them)", daemon.Count(n, "more problem"))
}

func statusJobNames(status control.Status) []string {
	names := make([]string, len(status.Jobs))
	for i, job := range status.Jobs {
		names[i] = job.Name
	}
	return names
}

func statusListenerNames(status control.Status) []string {
	names := make([]string, len(status.Listeners))
	for i, l := range status.Listeners {
		names[i] = l.Name
	}
	return names
}

// only keeps the job or listener called name.
func only(status control.Status, name string) control.Status {
	// Empty lists, not nil, so the JSON shows [] like the full status.
	out := control.Status{Daemon: status.Daemon, Jobs: []jobs.JobStatus{}, Listeners: []listeners.Health{}}
	for _, j := range status.Jobs {
		if j.Name == name {
			out.Jobs = append(out.Jobs, j)
		}
	}
	for _, l := range status.Listeners {
		if l.Name == name {
			out.Listeners = append(out.Listeners, l)
		}
	}
	return out
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func cmdRuns(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("runs", stdout, stderr)
	limit := fs.Int("n", 20, "how many of the newest runs to show")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 1, 1, "one job name"); code >= 0 {
		return code
	}
	if !validCount(*limit, stderr) {
		return exitUsage
	}
	runs, err := readRuns(*configPath, fs.Arg(0), *limit, "", stderr)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		return printJSON(stdout, stderr, runs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED\tTRIGGER\tSLOT\tRESULT\tEXIT\tDURATION\tERROR")
	now := time.Now()
	for _, r := range runs {
		slot := "-"
		if !r.Slot.IsZero() {
			slot = r.Slot.UTC().Format("2006-01-02 15:04:05Z")
		}
		exit, duration := strconv.Itoa(r.ExitCode), r.Duration.Round(time.Millisecond).String()
		switch {
		case r.Result == state.ResultRunning || r.Result == state.ResultSkipped:
			exit, duration = "-", "-"
		case r.ExitCode < 0:
			// The run never started, or a crash hid how it ended.
			exit = "-"
			if r.Duration == 0 {
				duration = "-"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, formatTime(r.Start, now), r.Trigger, slot,
			r.Result, exit, duration, orDash(firstLine(r.Error)))
	}
	tw.Flush()
	return exitOK
}

func cmdLogs(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("logs", stdout, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 1, 2, "a job name and, optionally, a run ID"); code >= 0 {
		return code
	}
	id := fs.Arg(1)
	if id != "" {
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			fmt.Fprintf(stderr, "agent-runner: invalid run ID %q: use a number from agent-runner runs\n", id)
			return exitUsage
		}
	}
	runs, err := readRuns(*configPath, fs.Arg(0), 1, id, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	if len(runs) == 0 {
		fmt.Fprintf(stderr, "agent-runner: job %s has no runs yet\n", fs.Arg(0))
		return exitFailure
	}
	r := runs[0]
	fmt.Fprintf(stderr, "run %s of %s, %s, started %s: %s\n", r.ID, r.Job, r.Trigger, r.Start.UTC().Format(time.RFC3339), r.Result)
	fmt.Fprint(stdout, r.Output)
	return exitOK
}

// readRuns asks the daemon, or reads the store when none runs.
func readRuns(configPath, job string, limit int, id string, stderr io.Writer) ([]state.Run, error) {
	if err := configMissing(configPath); err != nil {
		return nil, err
	}
	cfg, ok := loadConfig(configPath, stderr)
	if !ok {
		// The daemon keeps running its last valid config and can still
		// answer, which is when history matters most.
		socket, err := config.LocateSocket(configPath)
		if err != nil {
			return nil, err
		}
		runs, err := control.Runs(socket, job, limit, id)
		if err != nil {
			return nil, fmt.Errorf("the config has problems and the daemon did not respond: %w", err)
		}
		fmt.Fprintln(stderr, "agent-runner: showing the running daemon's history")
		return runs, nil
	}
	if cfg.Job(job) == nil {
		return nil, unknownJob(cfg, job)
	}
	available, err := daemonAvailable(cfg)
	if err != nil {
		return nil, err
	}
	if available {
		return control.Runs(cfg.Runner.Socket, job, limit, id)
	}
	return offlineRuns(cfg, job, limit, id, stderr)
}

func offlineRuns(cfg *config.Config, job string, limit int, id string, stderr io.Writer) ([]state.Run, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := openStoreOffline(cfg, true, log)
	if err != nil || store == nil {
		return nil, err
	}
	defer store.Close()
	return daemon.JobRuns(store, job, limit, id)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
