package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/agent-runner/agent-runner/bench"
)

// Worker kinds: each measures one thing in a fresh process and writes
// its result as JSON to stdout.
const (
	workerDispatch = "dispatch"
	workerExec     = "exec"
	workerCommits  = "commits"
	workerRuns     = "runs"
	// workerTogether runs -jobs jobs once each, all at once.
	workerTogether = "together"
	// workerChat counts -runs chat lines from the server at -addr with a
	// bare go-twitch-irc client.
	workerChat = "chat"
)

// Dispatch implementations a dispatch worker measures.
const (
	implRunnerNoop = "agent-runner-noop"
	implRunnerTrue = "agent-runner-true"
	implGocron     = "gocron"
	implHeap       = "timer-heap"
)

// workerArgs are the flags of a worker process.
type workerArgs struct {
	kind   string
	impl   string
	jobs   int
	period time.Duration
	slots  int
	warmup bool
	rounds int
	runs   int
	dir    string
	addr   string
}

func (a *workerArgs) register(fs *flag.FlagSet) {
	fs.StringVar(&a.kind, "worker", "", "internal: run one measurement (dispatch, exec, commits, runs, together or chat) and print it as JSON")
	fs.StringVar(&a.impl, "impl", implRunnerNoop, "internal: dispatch implementation")
	fs.IntVar(&a.jobs, "jobs", 10, "internal: jobs sharing each slot")
	fs.DurationVar(&a.period, "period", time.Second, "internal: time between slots")
	fs.IntVar(&a.slots, "slots", 5, "internal: measured slots")
	fs.BoolVar(&a.warmup, "warmup", false, "internal: run one unmeasured slot first")
	fs.IntVar(&a.rounds, "rounds", 3, "internal: rounds of the exec measurement")
	fs.IntVar(&a.runs, "runs", 100, "internal: runs per round or measurement")
	fs.StringVar(&a.dir, "dir", "", "internal: empty folder for the store")
	fs.StringVar(&a.addr, "addr", "", "internal: host:port of the chat server")
}

// args returns the command line that starts a worker with these
// arguments.
func (a workerArgs) args() []string {
	return []string{
		"-worker", a.kind, "-impl", a.impl, "-jobs", fmt.Sprint(a.jobs),
		"-period", a.period.String(), "-slots", fmt.Sprint(a.slots), "-warmup=" + fmt.Sprint(a.warmup),
		"-rounds", fmt.Sprint(a.rounds), "-runs", fmt.Sprint(a.runs), "-dir", a.dir, "-addr", a.addr,
	}
}

// runWorker runs the measurement a describes and writes its JSON result
// to stdout.
func runWorker(a workerArgs) error {
	ctx := context.Background()
	var result any
	var err error
	switch a.kind {
	case workerDispatch:
		result, err = runDispatch(ctx, a)
	case workerExec:
		result, err = bench.MeasureExec(ctx, a.dir, a.rounds, a.runs)
	case workerCommits:
		result, err = bench.MeasureCommits(a.dir, a.runs)
	case workerRuns:
		err = bench.RunTrueSequential(ctx, a.dir, a.runs)
		result = struct{}{}
	case workerTogether:
		err = bench.RunTrueTogether(ctx, a.dir, a.jobs)
		result = struct{}{}
	case workerChat:
		result, err = runChatWorker(ctx, a)
	default:
		return fmt.Errorf("unknown worker %q: use %s, %s, %s, %s, %s or %s", a.kind,
			workerDispatch, workerExec, workerCommits, workerRuns, workerTogether, workerChat)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(result)
}

// runDispatch runs one dispatch measurement and adds the peak resident
// set of this process to its result.
func runDispatch(ctx context.Context, a workerArgs) (bench.DispatchResult, error) {
	opts := bench.DispatchOptions{Jobs: a.jobs, Period: a.period, Slots: a.slots, Warmup: a.warmup, Dir: a.dir}
	var result bench.DispatchResult
	var err error
	switch a.impl {
	case implRunnerNoop:
		result, err = bench.DispatchRunner(ctx, opts)
	case implRunnerTrue:
		opts.Children = true
		result, err = bench.DispatchRunner(ctx, opts)
	case implGocron:
		result, err = bench.DispatchGocron(ctx, opts)
	case implHeap:
		result, err = bench.DispatchTimerHeap(ctx, opts)
	default:
		return result, fmt.Errorf("unknown dispatch implementation %q: use %s, %s, %s or %s", a.impl, implRunnerNoop, implRunnerTrue, implGocron, implHeap)
	}
	if err != nil {
		return result, err
	}
	memory, err := bench.ReadMemory(os.Getpid())
	result.PeakRSS = memory.HWM
	return result, err
}

// runChatWorker counts a.runs chat lines with a bare go-twitch-irc client.
func runChatWorker(ctx context.Context, a workerArgs) (chatWorkerResult, error) {
	ctx, cancel := context.WithTimeout(ctx, chatTimeout)
	defer cancel()
	last, err := bench.CountChatLines(ctx, a.addr, int64(a.runs))
	return chatWorkerResult{LastUnixNano: last.UnixNano()}, err
}
