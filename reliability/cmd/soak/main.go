// Command soak runs an agent-runner daemon for a bounded time under
// steady load. The load is jobs due every second, a chat listener with a
// hook fed by a local fake server, an exec listener that keeps failing,
// and a client polling the CLI and the HTTP endpoints. It samples the
// daemon's RSS, threads, open descriptors and goroutines, and checks
// that they stay flat.
//
// Usage: go run ./reliability/cmd/soak [-quick] [-duration 10m] [-interval 10s]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/agent-runner/agent-runner/reliability/harness"
)

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long the daemon runs")
	interval := flag.Duration("interval", 10*time.Second, "time between samples")
	quick := flag.Bool("quick", false, "run 60 s with a sample every 5 s, unless -duration or -interval is given")
	binary := flag.String("binary", "", "prebuilt agent-runner binary; empty builds one")
	dir := flag.String("dir", "", "work folder; empty makes a temporary one")
	keep := flag.Bool("keep", false, "keep the work folder even when every check passed")
	rate := flag.Int("chat-rate", 2000, "chat messages per second from the fake server")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["duration"] {
			*duration = time.Minute
		}
		if !set["interval"] {
			*interval = 5 * time.Second
		}
	}
	os.Exit(run(*duration, *interval, *binary, *dir, *keep, *rate))
}

func config(httpAddr, ircAddr string) string {
	return fmt.Sprintf(`[runner]
state_dir = "state"
shutdown_timeout = "5s"
kill_grace = "1s"
history = 50
http = %q

[defaults]
working_dir = "."

[jobs.tick]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> out/tick"]
every = "1s"

[jobs.cron]
command = ["sh", "-c", "echo $AGENT_RUNNER_SLOT >> out/cron; seq 1 200"]
schedule = "* * * * * *"

[jobs.slow]
command = ["sh", "-c", "sleep 30 & sleep 1.5"]
every = "2s"

[jobs.fails]
command = ["sh", "-c", "echo failing >&2; exit 1"]
every = "1s"

[jobs.manual]
command = ["sh", "-c", "echo manual run"]
schedule = "0 0 1 1 *"

[listeners.chat]
kind = "twitch"
server = %q
tls = false
channels = ["soak"]
on_event = ["sh", "-c", "cat > /dev/null; sleep 0.1"]
hook_concurrency = 2
log_to = "out/chat.jsonl"
log_max_bytes = 1048576

[listeners.flaky]
kind = "exec"
command = ["sh", "-c", "sleep 20; exit 1"]
`, httpAddr, ircAddr)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(duration, interval time.Duration, binary, dir string, keep bool, rate int) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "agent-runner-soak-")
		if err != nil {
			return fail(err)
		}
		dir = tmp
	}
	if binary == "" {
		binary = filepath.Join(dir, "agent-runner")
		if err := harness.Build(binary); err != nil {
			return fail(err)
		}
	}
	irc, err := harness.StartIRCServer()
	if err != nil {
		return fail(err)
	}
	defer irc.Close()
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", port)
	project, err := harness.NewProject(binary, filepath.Join(dir, "project"), config(httpAddr, irc.Addr()))
	if err == nil {
		err = os.MkdirAll(project.Path("out"), 0o755)
	}
	if err != nil {
		return fail(err)
	}
	d, err := project.StartDaemon()
	if err != nil {
		return fail(err)
	}
	defer func() {
		if !d.Exited() {
			d.Kill()
		}
	}()
	if err := d.WaitLog("scheduler started", 30*time.Second); err != nil {
		return fail(err)
	}
	fmt.Printf("soak: %s, a sample every %s, chat at %d/s, work folder %s\n", duration, interval, rate, dir)

	runCtx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	go irc.Flood(runCtx, "soak", rate, 0)
	clientErrors := make(chan string, 100)
	go poll(runCtx, project, "http://"+httpAddr, clientErrors)

	var samples []harness.ProcSample
	var problems []string
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for done := false; !done; {
		select {
		case <-runCtx.Done():
			done = true
		case <-ticker.C:
		}
		if d.Exited() {
			problems = append(problems, fmt.Sprintf("the daemon exited with status %d:\n%s", d.ExitCode(), harness.Tail(d.Log(), 10)))
			break
		}
		s, err := harness.SampleProc(d.Pid())
		if err != nil {
			problems = append(problems, "sample /proc: "+err.Error())
			continue
		}
		s.Goroutines, _ = harness.Goroutines("http://" + httpAddr + "/metrics")
		samples = append(samples, s)
		fmt.Printf("  %6.0fs  rss %6.1f MiB  hwm %6.1f MiB  threads %3d  fds %3d  goroutines %4d\n",
			s.At.Sub(d.Started).Seconds(), float64(s.RSSKiB)/1024, float64(s.HWMKiB)/1024, s.Threads, s.FDs, s.Goroutines)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "soak: interrupted")
	}
	close(clientErrors)
	for e := range clientErrors {
		problems = append(problems, e)
	}
	if !d.Exited() {
		if err := d.Stop(20 * time.Second); err != nil {
			problems = append(problems, "SIGTERM stop: "+err.Error())
		}
	}
	problems = append(problems, checkSlots(project)...)
	problems = append(problems, checkFlat(samples)...)

	ticks := len(harness.Lines(project.Path("out/tick")))
	dbSize := int64(0)
	if info, err := os.Stat(project.Path("state/state.db")); err == nil {
		dbSize = info.Size()
	}
	fmt.Printf("  tick runs: %d in %s; chat lines sent: %d; state.db: %d KiB; ERROR log lines: %d\n",
		ticks, duration, irc.Sent.Load(), dbSize/1024, countErrors(d.Log()))
	fmt.Printf("soak: %s, %d samples, %d problems\n", duration, len(samples), len(problems))
	for _, p := range problems {
		fmt.Println("  ", p)
	}
	if len(problems) > 0 || keep {
		fmt.Printf("soak: work folder kept at %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}

// poll acts as a user and a monitor: list --json every 2 s, a manual run
// every 10 s, and the HTTP endpoints every 5 s. Failures go to errs.
func poll(ctx context.Context, p *harness.Project, base string, errs chan<- string) {
	report := func(format string, args ...any) {
		select {
		case errs <- fmt.Sprintf(format, args...):
		default:
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		if _, res, err := p.Status(30 * time.Second); err != nil {
			report("list --json: %v", err)
		} else if res.Duration > 5*time.Second {
			report("list --json took %s", res.Duration)
		}
		if i%5 == 0 {
			if res := p.Run(60*time.Second, "run-job", "--wait", "manual"); res.Code != 0 && ctx.Err() == nil {
				report("run-job manual: exit %d: %s", res.Code, res.Stderr)
			}
		}
		if i%3 == 0 {
			for _, path := range []string{"/metrics", "/healthz", "/"} {
				resp, err := client.Get(base + path)
				if err != nil {
					if ctx.Err() == nil {
						report("GET %s: %v", path, err)
					}
					continue
				}
				resp.Body.Close()
			}
		}
		harness.Sleep(ctx, 2*time.Second)
	}
}

// checkSlots reports a slot that ran twice.
func checkSlots(p *harness.Project) []string {
	var problems []string
	for _, name := range []string{"tick", "cron"} {
		seen := map[string]bool{}
		for _, slot := range harness.Lines(p.Path("out/" + name)) {
			if seen[slot] {
				problems = append(problems, fmt.Sprintf("%s ran slot %s twice", name, slot))
			}
			seen[slot] = true
		}
	}
	return problems
}

// childFDs is how many of the daemon's descriptors a child in flight
// holds: both ends of its two output pipes and two pidfds.
const childFDs = 6

// checkFlat compares the first and last thirds of the samples after the
// first, and prints each series' slope per minute. Memory and goroutines
// are compared by their medians. Descriptors and threads are compared by
// their lowest values, because a leak raises the floor while runs in
// flight at a sample hold childFDs and a thread each. The soak's hooks,
// listener and slow job keep a varying few in flight at every sample, so
// the descriptors may grow by two children's worth.
func checkFlat(samples []harness.ProcSample) []string {
	if len(samples) < 4 {
		return []string{fmt.Sprintf("only %d samples; run longer to judge the trend", len(samples))}
	}
	samples = samples[1:] // the first sample is taken during warm-up
	type series struct {
		name  string
		value func(harness.ProcSample) float64
		// summary is "median" or "lowest", the statistic of a third.
		summary string
		// allowed is the growth of the last third's summary over the
		// first third's that still counts as flat.
		allowed func(first float64) float64
	}
	all := []series{
		{"rss KiB", func(s harness.ProcSample) float64 { return float64(s.RSSKiB) }, "median", func(f float64) float64 { return f*0.25 + 4096 }},
		{"threads", func(s harness.ProcSample) float64 { return float64(s.Threads) }, "lowest", func(float64) float64 { return 4 }},
		{"fds", func(s harness.ProcSample) float64 { return float64(s.FDs) }, "lowest", func(float64) float64 { return 2 * childFDs }},
		{"goroutines", func(s harness.ProcSample) float64 { return float64(s.Goroutines) }, "median", func(float64) float64 { return 15 }},
	}
	var problems, slopes []string
	third := max(len(samples)/3, 1)
	for _, s := range all {
		values := make([]float64, len(samples))
		for i, sample := range samples {
			values[i] = s.value(sample)
		}
		summarize := median
		if s.summary == "lowest" {
			summarize = slices.Min[[]float64]
		}
		first, last := summarize(values[:third]), summarize(values[len(values)-third:])
		slopes = append(slopes, fmt.Sprintf("%s %+.2f/min (%s %.0f -> %.0f)", s.name, slope(samples, values), s.summary, first, last))
		if last-first > s.allowed(first) {
			problems = append(problems, fmt.Sprintf("%s grew from a %s of %.0f to %.0f, more than %.0f", s.name, s.summary, first, last, s.allowed(first)))
		}
	}
	fmt.Printf("  slopes: %s\n", strings.Join(slopes, "; "))
	return problems
}

func median(values []float64) float64 {
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	return sorted[len(sorted)/2]
}

// slope returns the least-squares slope of values over the sample times,
// per minute.
func slope(samples []harness.ProcSample, values []float64) float64 {
	n := float64(len(values))
	var sx, sy, sxx, sxy float64
	for i, v := range values {
		x := samples[i].At.Sub(samples[0].At).Minutes()
		sx += x
		sy += v
		sxx += x * x
		sxy += x * v
	}
	denominator := n*sxx - sx*sx
	if denominator == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / denominator
}

// countErrors counts the daemon's ERROR lines that are not the failing
// job's own runs.
func countErrors(log string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=ERROR") && !strings.Contains(line, "job=fails") {
			n++
		}
	}
	return n
}
