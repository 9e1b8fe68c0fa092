package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/agent-runner/agent-runner/bench"
	chatserver "github.com/agent-runner/agent-runner/reliability/harness"
)

// Bounds of the chat figure's waits.
const (
	chatJoinTimeout = 30 * time.Second
	chatTimeout     = 5 * time.Minute
	// chatPollInterval is how often the figure reads the daemon's event
	// count, which bounds the error of the measured time.
	chatPollInterval = 25 * time.Millisecond
	// chatSampleInterval is how often the figure reads VmRSS.
	chatSampleInterval = 50 * time.Millisecond
)

// chat measures how many Twitch chat lines a second the daemon's listener
// takes from a local server through parsing, routing and the JSONL log,
// beside a bare go-twitch-irc client that only parses them.
func (h *harness) chat() []row {
	lines := pick(h, 1_000_000, 300_000)
	reps := pick(h, 3, 1)
	var rate, before, peak, growth, logged, dropped, baseline, ratio, cpu, baselineCPU []float64
	var firstErr error
	for rep := range reps {
		h.progress("chat: repetition %d of %d, %s lines through the daemon", rep+1, reps, count(lines))
		r, err := h.chatOnce(lines)
		if err != nil {
			firstErr = err
			break
		}
		h.progress("chat: repetition %d of %d, %s lines to a bare go-twitch-irc client", rep+1, reps, count(lines))
		bare, err := h.chatBaselineOnce(lines)
		if err != nil {
			firstErr = err
			break
		}
		rate = append(rate, r.rate)
		cpu = append(cpu, r.cpuPerLine)
		baselineCPU = append(baselineCPU, bare.cpuPerLine)
		before = append(before, kibToMB(r.rssBefore))
		peak = append(peak, kibToMB(r.rssPeak))
		growth = append(growth, kibToMB(r.rssGrowth))
		logged = append(logged, float64(r.logged))
		dropped = append(dropped, float64(r.dropped))
		baseline = append(baseline, bare.rate)
		ratio = append(ratio, r.rate/bare.rate)
	}
	note := fmt.Sprintf("%s PRIVMSG lines with Twitch's tags, sent as fast as the socket takes them", count(lines))
	return []row{
		{figure: "chat: Twitch lines through parsing, routing and the JSONL log", unit: "lines/s", values: rate,
			target: atLeast(100000, "lines/s"), err: firstErr, note: note},
		{figure: "chat: baseline, bare go-twitch-irc client, parsing only", unit: "lines/s", values: baseline, err: firstErr,
			note: "the same lines to a client of the pinned library that counts them"},
		{figure: "chat: agent-runner / bare client", unit: "×", values: ratio, err: firstErr},
		{figure: "chat: CPU per line, agent-runner", unit: "µs", values: cpu, err: firstErr,
			note: "utime+stime of the daemon from the first line to the last, over the lines; the sender runs in the harness"},
		{figure: "chat: CPU per line, bare client", unit: "µs", values: baselineCPU, err: firstErr},
		{figure: "chat: RSS before the first line", unit: "MB", values: before, err: firstErr},
		{figure: "chat: peak RSS while the lines arrive", unit: "MB", values: peak, err: firstErr,
			note: fmt.Sprintf("VmRSS sampled every %s", chatSampleInterval)},
		{figure: "chat: RSS growth, last third over first third", unit: "MB", values: growth, target: atMost(2, "MB"), err: firstErr,
			note: "median RSS of the samples in each third of the arrival time; a leak raises it"},
		{figure: "chat: events in the JSONL log", unit: "events", values: logged, target: atLeast(float64(lines), "events"), err: firstErr},
		{figure: "chat: events dropped", unit: "events", values: dropped, err: firstErr},
	}
}

type chatResult struct {
	rate       float64
	cpuPerLine float64
	rssBefore  int64
	rssPeak    int64
	rssGrowth  int64
	logged     int64
	dropped    int64
}

// chatOnce starts the daemon with a Twitch listener on a local server,
// sends it that many lines and times them until the daemon's metrics
// count them all.
func (h *harness) chatOnce(lines int) (chatResult, error) {
	dir, err := h.tempDir("chat")
	if err != nil {
		return chatResult{}, err
	}
	server, err := chatserver.StartIRCServer()
	if err != nil {
		return chatResult{}, err
	}
	defer server.Close()
	httpAddr, err := freeAddr()
	if err != nil {
		return chatResult{}, err
	}
	configPath, err := bench.WriteChatConfig(dir, server.Addr(), httpAddr)
	if err != nil {
		return chatResult{}, err
	}
	d, _, err := h.startReady(dir, configPath)
	if err != nil {
		return chatResult{}, err
	}
	defer d.Stop(stopTimeout)
	if err := waitJoined(server); err != nil {
		return chatResult{}, fmt.Errorf("%w (log: %s)", err, d.LogPath)
	}

	before, err := bench.ReadMemory(d.Pid())
	if err != nil {
		return chatResult{}, err
	}
	ticksBefore, err := bench.ReadCPUTicks(d.Pid())
	if err != nil {
		return chatResult{}, err
	}
	sampler := startRSSSampler(d.Pid())
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := server.Blast(bench.ChatChannel, lines)
		sent <- err
	}()
	end, dropped, err := waitHandled(httpAddr, int64(lines), sent)
	samples := sampler.stop()
	if err != nil {
		return chatResult{}, fmt.Errorf("%w (log: %s)", err, d.LogPath)
	}
	ticksAfter, err := bench.ReadCPUTicks(d.Pid())
	if err != nil {
		return chatResult{}, err
	}
	if err := d.Stop(stopTimeout); err != nil {
		return chatResult{}, err
	}
	logged, err := countFileLines(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		return chatResult{}, err
	}
	peak, growth, ok := rssShape(samples, start, end)
	if !ok {
		return chatResult{}, fmt.Errorf("chat: too few RSS samples while the lines arrived (%d in %s)", len(samples), end.Sub(start))
	}
	_ = os.Remove(filepath.Join(dir, "events.jsonl"))
	return chatResult{
		rate:       float64(lines) / end.Sub(start).Seconds(),
		cpuPerLine: ticksToMicros(ticksAfter-ticksBefore) / float64(lines),
		rssBefore:  before.RSS,
		rssPeak:    max(peak, before.RSS),
		rssGrowth:  growth,
		logged:     logged,
		dropped:    dropped,
	}, nil
}

// chatBaselineOnce sends that many lines to a bare go-twitch-irc client
// in a worker process and returns the lines per second it parsed and the
// CPU time it spent per line, start-up included.
func (h *harness) chatBaselineOnce(lines int) (chatResult, error) {
	server, err := chatserver.StartIRCServer()
	if err != nil {
		return chatResult{}, err
	}
	defer server.Close()

	a := workerArgs{kind: workerChat, runs: lines, addr: server.Addr()}
	cmd := exec.Command(h.self, a.args()...)
	cmd.Stderr = h.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return chatResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return chatResult{}, err
	}
	defer cmd.Process.Kill()
	if err := waitJoined(server); err != nil {
		return chatResult{}, err
	}

	start := time.Now()
	if _, err := server.Blast(bench.ChatChannel, lines); err != nil {
		return chatResult{}, err
	}

	var result chatWorkerResult
	decodeErr := json.NewDecoder(stdout).Decode(&result)
	// Until Wait reaps it, the exited worker's stat file still has its
	// CPU time.
	ticks, ticksErr := bench.ReadCPUTicks(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		return chatResult{}, fmt.Errorf("worker %s: %w", workerChat, err)
	}
	if decodeErr != nil {
		return chatResult{}, fmt.Errorf("worker %s: invalid output: %w", workerChat, decodeErr)
	}
	if ticksErr != nil {
		return chatResult{}, ticksErr
	}
	return chatResult{
		rate:       float64(lines) / time.Unix(0, result.LastUnixNano).Sub(start).Seconds(),
		cpuPerLine: ticksToMicros(ticks) / float64(lines),
	}, nil
}

// ticksToMicros converts clock ticks of CPU time to microseconds.
func ticksToMicros(ticks int64) float64 {
	return float64(ticks) / bench.ClockTicks * 1e6
}

// chatWorkerResult is the output of the chat worker.
type chatWorkerResult struct {
	// LastUnixNano is when the last line arrived.
	LastUnixNano int64 `json:"last_unix_nano"`
}

func waitJoined(server *chatserver.IRCServer) error {
	deadline := time.Now().Add(chatJoinTimeout)
	for !server.Joined() {
		if time.Now().After(deadline) {
			return fmt.Errorf("chat: the client did not join within %s", chatJoinTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// waitHandled polls the daemon's metrics until the listener has handled
// want events, and returns when it saw that and the dropped count. It
// stops early when the sender fails.
func waitHandled(httpAddr string, want int64, sent <-chan error) (time.Time, int64, error) {
	// An uncompressed reply costs the daemon less than gzip.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	deadline := time.Now().Add(chatTimeout)
	var handled int64
	for time.Now().Before(deadline) {
		n, dropped, err := bench.ListenerEvents(client, "http://"+httpAddr, "chat")
		if err != nil {
			return time.Time{}, 0, err
		}
		if handled = n; handled >= want {
			return time.Now(), dropped, nil
		}
		select {
		case err := <-sent:
			if err != nil {
				return time.Time{}, 0, err
			}
		default:
		}
		time.Sleep(chatPollInterval)
	}
	return time.Time{}, 0, fmt.Errorf("chat: the listener handled %d of %d lines in %s", handled, want, chatTimeout)
}

// rssSample is one reading of VmRSS in KiB.
type rssSample struct {
	at  time.Time
	rss int64
}

type rssSampler struct {
	done    chan struct{}
	samples chan []rssSample
}

// startRSSSampler reads pid's VmRSS every chatSampleInterval until stop.
func startRSSSampler(pid int) *rssSampler {
	s := &rssSampler{done: make(chan struct{}), samples: make(chan []rssSample, 1)}
	go func() {
		var samples []rssSample
		ticker := time.NewTicker(chatSampleInterval)
		defer ticker.Stop()
		for {
			if m, err := bench.ReadMemory(pid); err == nil {
				samples = append(samples, rssSample{time.Now(), m.RSS})
			}
			select {
			case <-s.done:
				s.samples <- samples
				return
			case <-ticker.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() []rssSample {
	close(s.done)
	return <-s.samples
}

// rssShape returns the highest sample between start and end, and the
// median of the samples in the last third of that time less the median of
// those in the first third. ok is false when a third has no sample.
func rssShape(samples []rssSample, start, end time.Time) (peak, growth int64, ok bool) {
	third := end.Sub(start) / 3
	var first, last []int64
	for _, s := range samples {
		if s.at.Before(start) || s.at.After(end) {
			continue
		}
		peak = max(peak, s.rss)
		switch {
		case s.at.Before(start.Add(third)):
			first = append(first, s.rss)
		case s.at.After(end.Add(-third)):
			last = append(last, s.rss)
		}
	}
	if len(first) == 0 || len(last) == 0 {
		return peak, 0, false
	}
	return peak, medianOf(last) - medianOf(first), true
}

func medianOf(values []int64) int64 {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

func countFileLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return bench.CountJSONLines(f)
}

// freeAddr returns 127.0.0.1 and a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
