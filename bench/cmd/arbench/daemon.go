package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/agent-runner/agent-runner/bench"
)

// readyTimeout bounds the wait for READY=1; a daemon with 10,000 new jobs
// commits each to its store before it is ready.
const readyTimeout = 3 * time.Minute

// stopTimeout bounds the wait for a daemon to exit after SIGTERM.
const stopTimeout = time.Minute

// Log messages of the daemon that the figures count.
const (
	logRunStarted  = `msg="run started"`
	logRunSkipped  = `msg="run skipped"`
	logRunFinished = `msg="run finished"`
	logRunFailed   = `msg="run failed"`
)

// startReady starts the daemon on configPath with a notify socket in dir
// and waits for READY=1. It returns the daemon and how long the start
// took.
func (h *harness) startReady(dir, configPath string) (*bench.Daemon, time.Duration, error) {
	return startReadyWith(h.binary, dir, configPath)
}

// startReadyWith is startReady for another binary, such as the baseline.
func startReadyWith(binary, dir, configPath string) (*bench.Daemon, time.Duration, error) {
	notify, err := bench.ListenNotify(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return nil, 0, err
	}
	defer notify.Close()
	d, err := bench.StartDaemon(binary, configPath, filepath.Join(dir, "daemon.log"), "NOTIFY_SOCKET="+notify.Path)
	if err != nil {
		return nil, 0, err
	}
	ready, err := notify.Wait(context.Background(), "READY=1", readyTimeout)
	if err != nil {
		_ = d.Stop(stopTimeout)
		return nil, 0, fmt.Errorf("%w (log: %s)", err, d.LogPath)
	}
	return d, ready.Sub(d.Started), nil
}

// memory measures the resident set of the daemon with 1,000 and 10,000
// jobs that fire while it runs.
func (h *harness) memory() []row {
	window := pick(h, 75*time.Second, 65*time.Second)
	reps := pick(h, 2, 1)
	var rows []row
	for _, jobs := range []int{1000, 10000} {
		var peak, peakAfter, rss, anon, ready, started, skipped []float64
		var firstErr error
		for rep := range reps {
			h.progress("memory: %s jobs, repetition %d of %d, %s after READY", count(jobs), rep+1, reps, window)
			m, err := h.memoryOnce(jobs, window)
			if err != nil {
				firstErr = err
				break
			}
			peak = append(peak, kibToMB(m.end.HWM))
			peakAfter = append(peakAfter, kibToMB(m.peakAfterReady))
			rss = append(rss, kibToMB(m.end.RSS))
			anon = append(anon, kibToMB(m.end.Anon))
			ready = append(ready, m.ready.Seconds())
			started = append(started, float64(m.started))
			skipped = append(skipped, float64(m.skipped))
		}
		prefix := fmt.Sprintf("memory N=%s jobs:", count(jobs))
		limit := map[int]float64{1000: 16, 10000: 48}[jobs]
		note := fmt.Sprintf("VmHWM from exec to %s after READY; every job runs true once a minute", window)
		rows = append(rows,
			row{figure: prefix + " peak RSS (VmHWM)", unit: "MB", values: peak, target: atMost(limit, "MB"), err: firstErr, note: note},
			row{figure: prefix + " peak RSS after READY", unit: "MB", values: peakAfter, err: firstErr,
				note: fmt.Sprintf("VmRSS sampled every %s", memorySampleInterval)},
			row{figure: prefix + " RSS at the end (VmRSS)", unit: "MB", values: rss, err: firstErr},
			row{figure: prefix + " anonymous RSS at the end (RssAnon)", unit: "MB", values: anon, err: firstErr},
			row{figure: prefix + " exec to READY, new store", unit: "s", values: ready, err: firstErr},
			row{figure: prefix + " runs started in the window", unit: "runs", values: started, err: firstErr},
			row{figure: prefix + " slots skipped in the window (job still running)", unit: "runs", values: skipped, err: firstErr},
		)
	}
	return rows
}

// memorySampleInterval is how often the memory figure reads VmRSS.
const memorySampleInterval = 250 * time.Millisecond

type memoryResult struct {
	end            bench.Memory
	peakAfterReady int64
	ready          time.Duration
	started        int
	skipped        int
}

func (h *harness) memoryOnce(jobs int, window time.Duration) (memoryResult, error) {
	dir, err := h.tempDir(fmt.Sprintf("memory-%d", jobs))
	if err != nil {
		return memoryResult{}, err
	}
	configPath, err := bench.WriteScaleConfig(dir, jobs)
	if err != nil {
		return memoryResult{}, err
	}
	d, ready, err := h.startReady(dir, configPath)
	if err != nil {
		return memoryResult{}, err
	}

	var result memoryResult
	result.ready = ready
	end := time.Now().Add(window)
	ticker := time.NewTicker(memorySampleInterval)
	for time.Now().Before(end) {
		if m, err := bench.ReadMemory(d.Pid()); err == nil {
			result.peakAfterReady = max(result.peakAfterReady, m.RSS)
		}
		select {
		case <-ticker.C:
		case <-d.Exited():
			end = time.Now()
		}
	}
	ticker.Stop()

	memory, memErr := bench.ReadMemory(d.Pid())
	stopErr := d.Stop(stopTimeout)
	if memErr != nil {
		return memoryResult{}, fmt.Errorf("%w; %v", memErr, stopErr)
	}
	result.end = memory
	result.peakAfterReady = max(result.peakAfterReady, memory.RSS)
	counts, err := bench.CountLines(d.LogPath, logRunStarted, logRunSkipped)
	if err != nil {
		return memoryResult{}, err
	}
	result.started, result.skipped = counts[logRunStarted], counts[logRunSkipped]
	return result, stopErr
}

// idle measures the daemon's resident set and CPU time while none of its
// 25 jobs is due and its Twitch, Discord and Bluesky listeners stay
// connected to fake peers that send nothing.
func (h *harness) idle() []row {
	window := pick(h, time.Minute, 15*time.Second)
	reps := pick(h, 2, 2)
	const settle = 5 * time.Second
	results, firstErr := h.idleRepeat(h.binary, "", window, settle, reps)
	rss, peak := idleValues(results, func(r idleResult) float64 { return kibToMB(r.memory.RSS) }),
		idleValues(results, func(r idleResult) float64 { return kibToMB(r.memory.HWM) })
	anon, file := idleValues(results, func(r idleResult) float64 { return kibToMB(r.memory.Anon) }),
		idleValues(results, func(r idleResult) float64 { return kibToMB(r.memory.File) })
	ticks := idleValues(results, func(r idleResult) float64 { return r.tickSecondsPerMinute })
	runtimeNs := idleValues(results, func(r idleResult) float64 { return r.runtimeSecondsPerMinute })
	resolution := time.Minute.Seconds() / window.Seconds() / bench.ClockTicks
	rows := []row{
		{figure: "idle: RSS (VmRSS), 25 jobs + 3 listeners connected", unit: "MB", values: rss, target: atMost(16, "MB"), err: firstErr,
			note: fmt.Sprintf("read %s after READY+%s", window, settle)},
		{figure: "idle: peak RSS (VmHWM)", unit: "MB", values: peak, err: firstErr},
		{figure: "idle: anonymous RSS (RssAnon)", unit: "MB", values: anon, err: firstErr, note: "heap, stacks and runtime"},
		{figure: "idle: file-backed RSS (RssFile)", unit: "MB", values: file, err: firstErr, note: "pages of the binary and of state.db"},
		{figure: "idle: CPU per minute from schedstat", unit: "s/min", values: runtimeNs, target: atMost(0.01, "s/min"), err: firstErr,
			note: fmt.Sprintf("sum of /proc/PID/task/*/schedstat over %s, scaled to a minute; ns resolution, and no thread exited", window)},
		{figure: "idle: CPU utime+stime per minute", unit: "s/min", values: ticks, err: firstErr,
			note: fmt.Sprintf("/proc/PID/stat, for comparison; resolution %s s/min, the goal itself", formatValue(resolution))},
	}
	return append(rows, h.idleBaseline(window, settle, reps)...)
}

// idleBaseline measures the resident set of the baseline binary, which
// links the same libraries and runs nothing.
func (h *harness) idleBaseline(window, settle time.Duration, reps int) []row {
	if h.floor == "" {
		return nil
	}
	results, firstErr := h.idleRepeat(h.floor, "baseline, ", window, settle, reps)
	rss := idleValues(results, func(r idleResult) float64 { return kibToMB(r.memory.RSS) })
	anon := idleValues(results, func(r idleResult) float64 { return kibToMB(r.memory.Anon) })
	file := idleValues(results, func(r idleResult) float64 { return kibToMB(r.memory.File) })
	return []row{
		{figure: "idle: baseline, the libraries alone: RSS (VmRSS)", unit: "MB", values: rss, err: firstErr,
			note: "bench/cmd/libfloor: links the libraries and the functions of them that agent-runner calls, sends READY=1 and waits"},
		{figure: "idle: baseline, the libraries alone: anonymous RSS", unit: "MB", values: anon, err: firstErr},
		{figure: "idle: baseline, the libraries alone: file-backed RSS", unit: "MB", values: file, err: firstErr},
	}
}

// idleRepeat measures binary idle reps times, and stops at the first
// error.
func (h *harness) idleRepeat(binary, label string, window, settle time.Duration, reps int) ([]idleResult, error) {
	var results []idleResult
	for rep := range reps {
		h.progress("idle: %srepetition %d of %d, %s", label, rep+1, reps, window+settle)
		r, err := h.idleOnce(binary, window, settle)
		if err != nil {
			return results, err
		}
		results = append(results, r)
	}
	return results, nil
}

func idleValues(results []idleResult, value func(idleResult) float64) []float64 {
	values := make([]float64, len(results))
	for i, r := range results {
		values[i] = value(r)
	}
	return values
}

type idleResult struct {
	memory                  bench.Memory
	tickSecondsPerMinute    float64
	runtimeSecondsPerMinute float64
}

func (h *harness) idleOnce(binary string, window, settle time.Duration) (idleResult, error) {
	dir, err := h.tempDir("idle")
	if err != nil {
		return idleResult{}, err
	}
	peers, err := startIdlePeers()
	if err != nil {
		return idleResult{}, err
	}
	defer peers.close()
	configPath, err := bench.WriteIdleConfig(dir, 25, peers.config())
	if err != nil {
		return idleResult{}, err
	}
	d, _, err := startReadyWith(binary, dir, configPath)
	if err != nil {
		return idleResult{}, err
	}
	defer d.Stop(stopTimeout)
	if binary != h.floor {
		if err := peers.waitConnected(); err != nil {
			return idleResult{}, fmt.Errorf("%w (log: %s)", err, d.LogPath)
		}
	}

	time.Sleep(settle)
	connections := peers.connections()
	ticks0, err1 := bench.ReadCPUTicks(d.Pid())
	runtime0, err2 := bench.ReadRuntime(d.Pid())
	start := time.Now()
	time.Sleep(window)
	ticks1, err3 := bench.ReadCPUTicks(d.Pid())
	runtime1, err4 := bench.ReadRuntime(d.Pid())
	elapsed := time.Since(start)
	memory, err5 := bench.ReadMemory(d.Pid())

	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return idleResult{}, err
		}
	}
	used, err := runtime1.Since(runtime0)
	if err != nil {
		return idleResult{}, err
	}
	if peers.connections() != connections {
		return idleResult{}, fmt.Errorf("%w (log: %s)", errPeerLost, d.LogPath)
	}
	perMinute := time.Minute.Seconds() / elapsed.Seconds()
	return idleResult{
		memory:                  memory,
		tickSecondsPerMinute:    float64(ticks1-ticks0) / bench.ClockTicks * perMinute,
		runtimeSecondsPerMinute: used.Seconds() * perMinute,
	}, d.Stop(stopTimeout)
}

// startup measures exec to READY=1 with the shipped config.toml and a
// store that an earlier start created.
func (h *harness) startup() []row {
	const starts = 20
	reps := pick(h, 3, 2)
	runs, firstErr := h.startupRepeat(h.binary, "", starts, reps)
	p50, p90, maximum := percentiles(runs, 50), percentiles(runs, 90), percentiles(runs, 100)
	note := fmt.Sprintf("%d starts per run of the shipped config.toml, after one untimed start created the store", starts)
	rows := []row{
		{figure: "startup: exec to READY=1 p50", unit: "ms", values: p50, target: atMost(10, "ms"), err: firstErr, note: note},
		{figure: "startup: exec to READY=1 p90", unit: "ms", values: p90, err: firstErr},
		{figure: "startup: exec to READY=1 max", unit: "ms", values: maximum, err: firstErr},
	}
	rows = append(rows, h.startupBaseline(starts, reps)...)
	return append(rows, h.packageInit(starts)...)
}

// startupBaseline measures exec to READY=1 of the baseline binary, which
// links the same libraries and sends READY=1 as soon as main runs.
func (h *harness) startupBaseline(starts, reps int) []row {
	if h.floor == "" {
		return nil
	}
	runs, firstErr := h.startupRepeat(h.floor, "baseline, ", starts, reps)
	p50 := percentiles(runs, 50)
	return []row{{figure: "startup: baseline, the libraries alone: exec to READY=1 p50", unit: "ms", values: p50, err: firstErr,
		note: "bench/cmd/libfloor, started the same way"}}
}

// startupRepeat times starts starts of binary reps times, and stops at
// the first error.
func (h *harness) startupRepeat(binary, label string, starts, reps int) ([][]time.Duration, error) {
	var runs [][]time.Duration
	for rep := range reps {
		h.progress("startup: %srepetition %d of %d, %d starts", label, rep+1, reps, starts)
		durations, err := h.startupOnce(binary, starts)
		if err != nil {
			return runs, err
		}
		runs = append(runs, durations)
	}
	return runs, nil
}

// percentiles returns the p-th percentile of each run, in milliseconds.
func percentiles(runs [][]time.Duration, p float64) []float64 {
	values := make([]float64, len(runs))
	for i, durations := range runs {
		values[i] = bench.Milliseconds(bench.Percentile(durations, p))
	}
	return values
}

// packageInit measures the Go package initialization of the binary, which
// runs before main, from GODEBUG=inittrace=1 of `agent-runner version`.
func (h *harness) packageInit(starts int) []row {
	var sum, end []float64
	var slowest bench.InitTrace
	var firstErr error
	for range starts {
		trace, err := bench.TraceInit(h.binary)
		if err != nil {
			firstErr = err
			break
		}
		sum = append(sum, trace.Total.Seconds()*1000)
		end = append(end, trace.End.Seconds()*1000)
		slowest = trace
	}
	note := fmt.Sprintf("GODEBUG=inittrace=1 of `agent-runner version`, one value per start; slowest packages of the last start: %s", slowest.Slowest(3))
	return []row{
		{figure: "startup: package init, sum of clock times", unit: "ms", values: sum, err: firstErr, note: note},
		{figure: "startup: package init ends, after process start", unit: "ms", values: end, err: firstErr},
	}
}

func (h *harness) startupOnce(binary string, starts int) ([]time.Duration, error) {
	dir, err := h.tempDir("startup")
	if err != nil {
		return nil, err
	}
	configPath, err := bench.CopyShippedConfig(h.repo, dir)
	if err != nil {
		return nil, err
	}
	d, _, err := startReadyWith(binary, dir, configPath)
	if err != nil {
		return nil, err
	}
	if err := d.Stop(stopTimeout); err != nil {
		return nil, err
	}
	var durations []time.Duration
	for range starts {
		d, took, err := startReadyWith(binary, dir, configPath)
		if err != nil {
			return nil, err
		}
		if err := d.Stop(stopTimeout); err != nil {
			return nil, err
		}
		durations = append(durations, took)
	}
	return durations, nil
}
