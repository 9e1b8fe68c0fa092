package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// TruePath is the program every exec measurement runs.
const TruePath = "/bin/true"

// ExecResult holds one duration per sequential run of TruePath, by the
// way it was started.
type ExecResult struct {
	// Raw runs are exec.Command(TruePath).Run().
	Raw []time.Duration `json:"raw"`
	// Reaper runs are process.Reaper.Run: own process group, two output
	// pipes, and the search for leftovers after exit.
	Reaper []time.Duration `json:"reaper"`
	// Runner runs are jobs.Runner.Run of a manual run: the job lock,
	// Claim, the child as under Reaper, and Finish.
	Runner []time.Duration `json:"runner"`
}

// MeasureExec runs TruePath runs times each way in each of rounds rounds,
// keeping a store and lock files in dir. Raw runs happen while no Reaper
// is running, since a Reaper reaps every exited child that it did not
// start, which would make exec.Cmd.Wait fail.
func MeasureExec(ctx context.Context, dir string, rounds, runs int) (ExecResult, error) {
	log := slog.New(slog.DiscardHandler)
	store, err := state.Open(filepath.Join(dir, "state.db"), state.Options{Logger: log})
	if err != nil {
		return ExecResult{}, err
	}
	defer store.Close()
	cfg := RunnerConfig(dir)
	job := TrueJob("true", dir)
	job.Command = []string{TruePath}
	cfg.Jobs = []*config.Job{job}

	var result ExecResult
	for round := range rounds {
		raw, err := timeRuns(runs, func(int) error { return exec.Command(TruePath).Run() })
		if err != nil {
			return result, fmt.Errorf("raw exec: %w", err)
		}
		result.Raw = append(result.Raw, raw...)

		reaper, err := process.NewReaper(log)
		if err != nil {
			return result, err
		}
		viaReaper, err := timeRuns(runs, func(i int) error {
			return reaperRunTrue(ctx, reaper, dir, fmt.Sprintf("%d-%d", round, i))
		})
		if err != nil {
			reaper.Close()
			return result, fmt.Errorf("process.Reaper.Run: %w", err)
		}
		runner := jobs.NewRunner(cfg, store, reaper, log, time.Now)
		viaRunner, err := timeRuns(runs, func(int) error { return runnerRunTrue(ctx, runner, job.Name) })
		reaper.Close()
		if err != nil {
			return result, fmt.Errorf("jobs.Runner.Run: %w", err)
		}
		result.Reaper = append(result.Reaper, viaReaper...)
		result.Runner = append(result.Runner, viaRunner...)
	}
	return result, nil
}

// timeRuns calls run n times in sequence and returns the duration of
// each call.
func timeRuns(n int, run func(i int) error) ([]time.Duration, error) {
	durations := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if err := run(i); err != nil {
			return durations, err
		}
		durations = append(durations, time.Since(start))
	}
	return durations, nil
}

func reaperRunTrue(ctx context.Context, reaper *process.Reaper, dir, id string) error {
	marker := "BENCH_RUN_ID=" + id
	exit, err := reaper.Run(ctx, process.Spec{
		Path:   TruePath,
		Args:   []string{"true"},
		Dir:    dir,
		Env:    []string{"PATH=/usr/bin:/bin", marker},
		Marker: marker,
		Grace:  10 * time.Second,
	}, func(process.Line) {})
	if err != nil {
		return err
	}
	if exit.Code != 0 {
		return fmt.Errorf("%s exited with status %d", TruePath, exit.Code)
	}
	return nil
}

// runnerRunTrue runs the job name once by hand and checks its result.
func runnerRunTrue(ctx context.Context, runner *jobs.Runner, name string) error {
	run, err := runner.Run(ctx, jobs.Request{Job: name, Trigger: state.TriggerManual})
	if err != nil {
		return err
	}
	if run.Result != state.ResultOK {
		return fmt.Errorf("run %s of %s: result %s: %s", run.ID, name, run.Result, run.Error)
	}
	return nil
}

// RunTrueTogether runs jobs jobs of TruePath once each through
// jobs.Runner.Run, all started at once from their own goroutines, with a
// store in dir. Under strace it shows the fsync calls per run when runs
// share commits.
func RunTrueTogether(ctx context.Context, dir string, count int) error {
	jobList := make([]*config.Job, 0, count)
	for i := range count {
		job := TrueJob(fmt.Sprintf("true-%03d", i), dir)
		job.Command = []string{TruePath}
		jobList = append(jobList, job)
	}
	runner, closeRunner, err := openTrueRunner(dir, jobList)
	if err != nil {
		return err
	}
	defer closeRunner()
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i, job := range jobList {
		wg.Go(func() { errs[i] = runnerRunTrue(ctx, runner, job.Name) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RunTrueSequential runs a job of TruePath runs times through
// jobs.Runner.Run with a store in dir. Under strace it shows the fsync
// calls that the runs add to the cost of setting up.
func RunTrueSequential(ctx context.Context, dir string, runs int) error {
	job := TrueJob("true", dir)
	job.Command = []string{TruePath}
	runner, closeRunner, err := openTrueRunner(dir, []*config.Job{job})
	if err != nil {
		return err
	}
	defer closeRunner()
	for i := range runs {
		if err := runnerRunTrue(ctx, runner, job.Name); err != nil {
			return fmt.Errorf("run %s: %w", strconv.Itoa(i+1), err)
		}
	}
	return nil
}

// openTrueRunner opens a store in dir and a reaper, and returns a
// jobs.Runner for jobList with a function that closes the reaper and then
// the store.
func openTrueRunner(dir string, jobList []*config.Job) (*jobs.Runner, func(), error) {
	log := slog.New(slog.DiscardHandler)
	store, err := state.Open(filepath.Join(dir, "state.db"), state.Options{Logger: log})
	if err != nil {
		return nil, nil, err
	}
	reaper, err := process.NewReaper(log)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	cfg := RunnerConfig(dir)
	cfg.Jobs = jobList
	runner := jobs.NewRunner(cfg, store, reaper, log, time.Now)
	closeRunner := func() {
		reaper.Close()
		store.Close()
	}
	return runner, closeRunner, nil
}
