package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/agent-runner/agent-runner/bench"
)

// execOverhead compares sequential runs of /bin/true through the run
// boundary with raw os/exec.
func (h *harness) execOverhead() []row {
	reps := pick(h, 3, 2)
	args := workerArgs{kind: workerExec, rounds: pick(h, 5, 3), runs: pick(h, 100, 50)}
	var raw, reaper, runner, reaperRatio, runnerRatio, runnerP99 []float64
	var firstErr error
	for rep := range reps {
		h.progress("exec: repetition %d of %d", rep+1, reps)
		var result bench.ExecResult
		if err := h.runWorkerProcess(args, &result); err != nil {
			firstErr = err
			break
		}
		rawP50 := bench.Percentile(result.Raw, 50)
		reaperP50 := bench.Percentile(result.Reaper, 50)
		runnerP50 := bench.Percentile(result.Runner, 50)
		raw = append(raw, bench.Milliseconds(rawP50))
		reaper = append(reaper, bench.Milliseconds(reaperP50))
		runner = append(runner, bench.Milliseconds(runnerP50))
		runnerP99 = append(runnerP99, bench.Milliseconds(bench.Percentile(result.Runner, 99)))
		reaperRatio = append(reaperRatio, float64(reaperP50)/float64(rawP50))
		runnerRatio = append(runnerRatio, float64(runnerP50)/float64(rawP50))
	}
	note := fmt.Sprintf("%d rounds × %d sequential runs each way per run, alternating", args.rounds, args.runs)
	return []row{
		{figure: "exec: raw os/exec of /bin/true p50", unit: "ms", values: raw, err: firstErr, note: note},
		{figure: "exec: process.Reaper.Run of /bin/true p50", unit: "ms", values: reaper, err: firstErr},
		{figure: "exec: jobs.Runner.Run of /bin/true p50", unit: "ms", values: runner, err: firstErr},
		{figure: "exec: jobs.Runner.Run of /bin/true p99", unit: "ms", values: runnerP99, err: firstErr},
		{figure: "exec: ratio Reaper.Run / raw (p50)", unit: "×", values: reaperRatio, err: firstErr},
		{figure: "exec: ratio Runner.Run / raw (p50)", unit: "×", values: runnerRatio, target: atMost(1.4, "×"), err: firstErr},
	}
}

// durable measures the store's commits per run and counts the fsync
// calls of a run with strace.
func (h *harness) durable() []row {
	reps := pick(h, 3, 2)
	args := workerArgs{kind: workerCommits, runs: pick(h, 500, 200)}
	var claim, finish, runP50, runP99, syncP50, syncP99, afterChildP50, ratio []float64
	var firstErr error
	for rep := range reps {
		h.progress("durable: commits, repetition %d of %d", rep+1, reps)
		var result bench.CommitResult
		if err := h.runWorkerProcess(args, &result); err != nil {
			firstErr = err
			break
		}
		claim = append(claim, bench.Milliseconds(bench.Percentile(result.Claim, 99)))
		finish = append(finish, bench.Milliseconds(bench.Percentile(result.Finish, 99)))
		runP50 = append(runP50, bench.Milliseconds(bench.Percentile(result.Run, 50)))
		runP99 = append(runP99, bench.Milliseconds(bench.Percentile(result.Run, 99)))
		syncP50 = append(syncP50, bench.Milliseconds(bench.Percentile(result.Fdatasync, 50)))
		syncP99 = append(syncP99, bench.Milliseconds(bench.Percentile(result.Fdatasync, 99)))
		afterChildP50 = append(afterChildP50, bench.Milliseconds(bench.Percentile(result.SyncAfterChild, 50)))
		ratio = append(ratio, float64(bench.Percentile(result.Run, 99))/float64(bench.Percentile(result.Fdatasync, 99)))
	}
	note := fmt.Sprintf("%d scheduled runs of one job per run, store and page file in one folder of %s", args.runs, os.TempDir())
	rows := []row{
		{figure: "durable: Claim p99 (claim log sync)", unit: "ms", values: claim, err: firstErr, note: note},
		{figure: "durable: Finish p99 (claim log write, no sync)", unit: "ms", values: finish, err: firstErr},
		{figure: "durable: Claim+Finish per run p50", unit: "ms", values: runP50, err: firstErr},
		{figure: "durable: Claim+Finish per run p99", unit: "ms", values: runP99, err: firstErr},
		{figure: "durable: bare 4 KiB pwrite+fdatasync p50", unit: "ms", values: syncP50, err: firstErr},
		{figure: "durable: bare 4 KiB pwrite+fdatasync p99", unit: "ms", values: syncP99, err: firstErr},
		{figure: "durable: bare 4 KiB pwrite+fdatasync right after a /bin/true child p50", unit: "ms", values: afterChildP50, err: firstErr,
			note: "as a claim's sync follows the previous run in the exec figure"},
		{figure: "durable: ratio Claim+Finish / bare fdatasync (p99)", unit: "×", values: ratio, err: firstErr},
	}
	return append(rows, h.fsyncsPerRun(reps), h.fsyncsPerRunTogether(reps))
}

// syncRuns is how many runs each sync-count worker makes.
const syncRuns = 50

// fsyncsPerRun counts the sync calls of jobs.Runner.Run under strace. It
// subtracts the calls of a worker that only sets up from those of a
// worker that also runs the job 50 times, and divides by 50.
func (h *harness) fsyncsPerRun(reps int) row {
	r := row{figure: "durable: fsync+fdatasync calls per run", unit: "calls", target: atMost(1, "calls"),
		note: "strace -f -c of jobs.Runner.Run of /bin/true, less setup; the target is the project's goal"}
	return h.syncCallsPerRun(r, reps, "strace", workerArgs{kind: workerRuns, runs: syncRuns})
}

// fsyncsPerRunTogether counts the sync calls of 50 jobs whose runs start
// at once, as when they share a slot, less those of a worker that only
// sets them up, divided by 50.
func (h *harness) fsyncsPerRunTogether(reps int) row {
	r := row{figure: "durable: fsync+fdatasync calls per run, 50 runs started together", unit: "calls", target: atMost(1, "calls"),
		note: "strace -f -c of 50 jobs.Runner.Run of /bin/true from 50 goroutines, less setup"}
	return h.syncCallsPerRun(r, reps, "strace of runs together", workerArgs{kind: workerTogether, jobs: syncRuns})
}

// syncCallsPerRun fills r with the sync calls per run of the worker a,
// which makes syncRuns runs, less those of a worker that only sets up.
func (h *harness) syncCallsPerRun(r row, reps int, label string, a workerArgs) row {
	strace, err := exec.LookPath("strace")
	if err != nil {
		r.err = fmt.Errorf("strace is not installed (apt-get install strace)")
		return r
	}
	var base, total int
	for rep := range reps {
		h.progress("durable: %s, repetition %d of %d", label, rep+1, reps)
		var err error
		if base, err = h.countSyncCalls(strace, workerArgs{kind: workerRuns, runs: 0}); err != nil {
			r.err = err
			return r
		}
		if total, err = h.countSyncCalls(strace, a); err != nil {
			r.err = err
			return r
		}
		r.values = append(r.values, float64(total-base)/syncRuns)
	}
	r.note = fmt.Sprintf("%s; last run: %d calls with %d runs, %d for setup alone", r.note, total, syncRuns, base)
	return r
}

// countSyncCalls returns the fsync and fdatasync calls, with the other
// calls of bench.SyncCalls, of the worker a describes.
func (h *harness) countSyncCalls(strace string, a workerArgs) (int, error) {
	dir, err := h.tempDir("strace")
	if err != nil {
		return 0, err
	}
	out := filepath.Join(dir, "strace.txt")
	a.dir = dir
	args := append([]string{"-f", "-c", "-e", "trace=" + strings.Join(bench.SyncCalls, ","), "-o", out, h.self}, a.args()...)
	cmd := exec.Command(strace, args...)
	cmd.Stderr = h.log
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("strace worker: %w", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return 0, err
	}
	counts, err := bench.ParseStraceSummary(string(data))
	if err != nil {
		return 0, err
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	return total, nil
}
