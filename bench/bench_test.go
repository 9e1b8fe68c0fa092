package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

// The benchmarks below exist for profiling one figure at a time, as in
//
//	go test -run '^$' -bench 'Dispatch/agent-runner-noop/N=1000' -benchtime 3x -cpuprofile cpu.out ./bench/
//
// A dispatch iteration waits for real slots, so its ns/op is mostly
// waiting; read the p50-ms and p99-ms metrics instead. bench/run prints
// the figures that BENCHMARKS.md quotes.

// dispatchPlans are the dispatch benchmarks' job counts with a slot plan
// that fits them, as bench/run measures them.
var dispatchPlans = []DispatchOptions{
	{Jobs: 10, Period: time.Second, Slots: 5, Warmup: true},
	{Jobs: 1000, Period: 4 * time.Second, Slots: 2, Warmup: true},
	{Jobs: 10000, Period: time.Minute, Slots: 1},
}

func BenchmarkDispatch(b *testing.B) {
	impls := []struct {
		name string
		run  func(context.Context, DispatchOptions) (DispatchResult, error)
		// children selects the agent-runner run with a /bin/true child.
		children bool
	}{
		{"agent-runner-noop", DispatchRunner, false},
		{"agent-runner-true", DispatchRunner, true},
		{"gocron", DispatchGocron, false},
		{"timer-heap", DispatchTimerHeap, false},
	}
	for _, impl := range impls {
		for _, plan := range dispatchPlans {
			b.Run(fmt.Sprintf("%s/N=%d", impl.name, plan.Jobs), func(b *testing.B) {
				var lateness []time.Duration
				for b.Loop() {
					opts := plan
					opts.Children = impl.children
					opts.Dir = b.TempDir()
					result, err := impl.run(context.Background(), opts)
					if err != nil {
						b.Fatal(err)
					}
					if missing := result.Missing(); missing > 0 {
						b.Logf("%d of %d runs did not start in time, %d skipped", missing, result.Expected, result.Skipped)
					}
					lateness = append(lateness, result.Lateness...)
				}
				b.ReportMetric(Milliseconds(Percentile(lateness, 50)), "p50-ms")
				b.ReportMetric(Milliseconds(Percentile(lateness, 99)), "p99-ms")
			})
		}
	}
}

// BenchmarkExec runs /bin/true once per iteration: raw, through
// process.Reaper.Run, and through jobs.Runner.Run.
func BenchmarkExec(b *testing.B) {
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command(TruePath).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reaper", func(b *testing.B) {
		reaper := newBenchReaper(b)
		dir := b.TempDir()
		i := 0
		for b.Loop() {
			i++
			if err := reaperRunTrue(context.Background(), reaper, dir, fmt.Sprint(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("runner", func(b *testing.B) {
		reaper := newBenchReaper(b)
		dir := b.TempDir()
		store := openBenchStore(b, dir)
		cfg := RunnerConfig(dir)
		job := TrueJob("true", dir)
		job.Command = []string{TruePath}
		cfg.Jobs = []*config.Job{job}
		runner := jobs.NewRunner(cfg, store, reaper, slog.New(slog.DiscardHandler), time.Now)
		for b.Loop() {
			if err := runnerRunTrue(context.Background(), runner, job.Name); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// newBenchReaper starts a process reaper that stops with the benchmark,
// so that a later raw exec.Cmd keeps its own child.
func newBenchReaper(b *testing.B) *process.Reaper {
	b.Helper()
	reaper, err := process.NewReaper(slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(reaper.Close)
	return reaper
}

func openBenchStore(b *testing.B, dir string) *state.Store {
	b.Helper()
	store, err := state.Open(filepath.Join(dir, "state.db"), state.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	return store
}

// BenchmarkCommit measures the two store commits of one run, and a bare
// 4 KiB write and fdatasync in the same folder.
func BenchmarkCommit(b *testing.B) {
	b.Run("claim+finish", func(b *testing.B) {
		store := openBenchStore(b, b.TempDir())
		start := time.Now()
		if _, err := store.EnsureJob("bench", start); err != nil {
			b.Fatal(err)
		}
		slot := start.Truncate(time.Minute)
		for b.Loop() {
			slot = slot.Add(time.Minute)
			run, err := store.Claim(state.Run{Job: "bench", Trigger: state.TriggerSchedule, Slot: slot, Start: time.Now()}, slot.Add(time.Minute))
			if err != nil {
				b.Fatal(err)
			}
			run.Result = state.ResultOK
			run.Finish = time.Now()
			if err := store.Finish(run); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fdatasync-4KiB", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "page"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		page := make([]byte, 4096)
		for b.Loop() {
			if _, err := f.WriteAt(page, 0); err != nil {
				b.Fatal(err)
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkConfigLoad loads the memory figure's config, whose load sets
// the daemon's peak heap at 10,000 jobs.
func BenchmarkConfigLoad(b *testing.B) {
	benchmarkScaleConfig(b, func(path string) error {
		_, err := config.Load(path)
		return err
	})
}

// BenchmarkFingerprint hashes the memory figure's config as watch = true
// does at each check.
func BenchmarkFingerprint(b *testing.B) {
	benchmarkScaleConfig(b, func(path string) error {
		_, err := config.Fingerprint(path)
		return err
	})
}

// benchmarkScaleConfig calls read with the path of the memory figure's
// config of 1,000 and of 10,000 jobs.
func benchmarkScaleConfig(b *testing.B, read func(path string) error) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			path, err := WriteScaleConfig(b.TempDir(), n)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := read(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
