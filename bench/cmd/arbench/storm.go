package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/agent-runner/agent-runner/bench"
	"github.com/agent-runner/agent-runner/state"
)

// stormOptions is the catch-up storm: 500 jobs that missed a week. Each
// catch-up run sleeps 0.4 s, so the 8 places of max_concurrent can serve
// all 500 runs in 25 s, within the 30 s spread.
var stormOptions = bench.StormOptions{
	Jobs:          500,
	Spread:        30 * time.Second,
	MaxConcurrent: 8,
	Sleep:         400 * time.Millisecond,
	Outage:        7 * 24 * time.Hour,
}

// childPollInterval is how often the storm counts the daemon's children.
const childPollInterval = 5 * time.Millisecond

func (h *harness) storm() []row {
	opts := stormOptions
	reps := pick(h, 2, 1)
	var last, first, span, started, peakChildren, peakRuns []float64
	var firstErr error
	for rep := range reps {
		h.progress("storm: repetition %d of %d, %d jobs over %s", rep+1, reps, opts.Jobs, opts.Spread)
		r, err := h.stormOnce(opts)
		if err != nil {
			firstErr = err
			break
		}
		first = append(first, r.firstStart.Seconds())
		last = append(last, r.lastStart.Seconds())
		span = append(span, (r.lastStart - r.firstStart).Seconds())
		started = append(started, float64(r.started))
		peakChildren = append(peakChildren, float64(r.peakChildren))
		peakRuns = append(peakRuns, float64(r.peakRuns))
	}
	note := fmt.Sprintf("%d jobs, outage %s, catch_up_spread = %q, max_concurrent = %d, each run sleeps %s",
		opts.Jobs, opts.Outage, opts.Spread.String(), opts.MaxConcurrent, opts.Sleep)
	limit := float64(opts.MaxConcurrent)
	return []row{
		{figure: "storm: catch-up runs recorded", unit: "runs", values: started, target: atLeast(float64(opts.Jobs), "runs"), err: firstErr, note: note},
		{figure: "storm: exec to first catch-up start", unit: "s", values: first, err: firstErr},
		{figure: "storm: exec to last catch-up start", unit: "s", values: last, target: atMost(opts.Spread.Seconds(), "s"), err: firstErr,
			note: "start times from the run records"},
		{figure: "storm: first to last catch-up start", unit: "s", values: span, err: firstErr},
		{figure: "storm: peak concurrent children", unit: "children", values: peakChildren, target: atMost(limit, "children"), err: firstErr,
			note: fmt.Sprintf("/proc/PID/task/*/children polled every %s", childPollInterval)},
		{figure: "storm: peak overlapping runs in the records", unit: "runs", values: peakRuns, target: atMost(limit, "runs"), err: firstErr,
			note: "from each run's start and finish"},
	}
}

type stormResult struct {
	started      int
	firstStart   time.Duration
	lastStart    time.Duration
	peakChildren int
	peakRuns     int
}

func (h *harness) stormOnce(opts bench.StormOptions) (stormResult, error) {
	dir, err := h.tempDir("storm")
	if err != nil {
		return stormResult{}, err
	}
	configPath, err := bench.WriteStormConfig(dir, opts)
	if err != nil {
		return stormResult{}, err
	}
	if err := bench.SeedStorm(dir, opts, time.Now()); err != nil {
		return stormResult{}, fmt.Errorf("seed storm store: %w", err)
	}

	d, err := bench.StartDaemon(h.binary, configPath, filepath.Join(dir, "daemon.log"))
	if err != nil {
		return stormResult{}, err
	}
	stopPolling := pollChildren(d.Pid())
	waitErr := waitForRuns(d, opts.Jobs, time.Now().Add(opts.Spread+time.Minute))
	peakChildren := stopPolling()
	if err := d.Stop(stopTimeout); err != nil {
		return stormResult{}, err
	}
	if waitErr != nil {
		return stormResult{}, waitErr
	}

	result, err := readStormRuns(dir, opts, d.Started)
	result.peakChildren = peakChildren
	return result, err
}

// waitForRuns returns once the daemon's log shows runs finished runs,
// the daemon exited, or the deadline passed.
func waitForRuns(d *bench.Daemon, runs int, deadline time.Time) error {
	for time.Now().Before(deadline) {
		counts, err := bench.CountLines(d.LogPath, logRunFinished, logRunFailed)
		if err != nil {
			return fmt.Errorf("read daemon log: %w", err)
		}
		if counts[logRunFinished]+counts[logRunFailed] >= runs {
			return nil
		}
		select {
		case <-d.Exited():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

// pollChildren counts the children of pid every childPollInterval until
// the returned stop function is called, which returns the peak.
func pollChildren(pid int) func() int {
	peak := 0
	stop := bench.PollEvery(childPollInterval, func() {
		peak = max(peak, len(bench.ChildPids(pid)))
	})
	return func() int {
		stop()
		return peak
	}
}

// readStormRuns reads the catch-up runs from the stopped daemon's store.
func readStormRuns(dir string, opts bench.StormOptions, started time.Time) (stormResult, error) {
	store, err := state.Open(filepath.Join(dir, "state", "state.db"), state.Options{ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return stormResult{}, err
	}
	defer store.Close()

	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	var result stormResult
	first := true
	for i := range opts.Jobs {
		runs, err := store.Runs(bench.StormJobName(i), 0)
		if err != nil {
			return result, err
		}
		for _, run := range runs {
			if run.Trigger != state.TriggerCatchUp {
				continue
			}
			result.started++
			offset := run.Start.Sub(started)
			if first || offset < result.firstStart {
				result.firstStart = offset
			}
			first = false
			result.lastStart = max(result.lastStart, offset)
			finish := run.Finish
			if finish.IsZero() {
				finish = run.Start
			}
			edges = append(edges, edge{run.Start, 1}, edge{finish, -1})
		}
	}

	// Ends sort before starts at the same instant, so back-to-back runs
	// do not count as overlapping.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	running := 0
	for _, e := range edges {
		running += e.delta
		result.peakRuns = max(result.peakRuns, running)
	}
	return result, nil
}
