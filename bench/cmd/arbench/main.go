// Command arbench measures agent-runner's benchmark figures and prints
// them as one table: dispatch lateness against bare gocron and a timer
// heap, memory at scale, idle cost, startup, exec overhead, durable
// writes and a catch-up storm. bench/run builds it and the daemon and
// runs it; see BENCHMARKS.md for what each figure means.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// figureNames lists every figure in the order the table shows them.
var figureNames = []string{"dispatch", "memory", "idle", "startup", "exec", "durable", "chat", "storm"}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("arbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var w workerArgs
	w.register(fs)
	binary := fs.String("binary", "", "path of the built agent-runner binary (required)")
	floor := fs.String("floor", "", "path of the built bench/cmd/libfloor, the baseline of the startup and idle figures")
	repo := fs.String("repo", ".", "repository root, for the shipped config.toml and scripts/")
	quick := fs.Bool("quick", false, "shorter windows and fewer repetitions")
	check := fs.Bool("check", false, "exit with status 1 when a figure misses its target or fails")
	figures := fs.String("figures", strings.Join(figureNames, ","), "comma-separated figures to measure")
	command := fs.String("command", "", "the command line to print in the header")
	source := fs.String("source", "unknown", "the commit the binaries were built from, to print in the header")
	keep := fs.Bool("keep", false, "keep the temporary folders, with the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if w.kind != "" {
		if err := runWorker(w); err != nil {
			fmt.Fprintln(stderr, "arbench:", err)
			return 1
		}
		return 0
	}
	selected, err := parseFigures(*figures)
	if err != nil || *binary == "" {
		if err == nil {
			err = fmt.Errorf("missing -binary: pass the path of a built agent-runner")
		}
		fmt.Fprintln(stderr, "arbench:", err)
		return 2
	}

	h, err := newHarness(*binary, *repo, *quick, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "arbench:", err)
		return 1
	}
	h.floor = *floor
	if *keep {
		fmt.Fprintln(stderr, "arbench: keeping temporary folders in", h.work)
	} else {
		defer os.RemoveAll(h.work)
	}

	started := time.Now()
	loadBefore := readTrimmed("/proc/loadavg")
	h.clock = newClockWatch()
	var rows []row
	for _, name := range figureNames {
		if !selected[name] {
			continue
		}
		h.progress("%s: measuring", name)
		rows = append(rows, h.figure(name)...)
	}
	printHeader(stdout, *command, *source, *quick, time.Since(started))
	fmt.Fprintf(stdout, "- load average (1, 5, 15 min; /proc/loadavg) before: %s; after: %s\n\n", loadFields(loadBefore), loadFields(readTrimmed("/proc/loadavg")))
	printTable(stdout, rows)
	fmt.Fprintln(stdout)
	h.clock.stop(stdout)
	missed := misses(rows)
	fmt.Fprintf(stdout, "\nTargets: %d met, %d missed or not measured (the median over the runs is compared).\n", countStatus(rows, "met"), len(missed))
	if *check && len(missed) > 0 {
		for _, r := range missed {
			fmt.Fprintf(stdout, "check: %s: %s\n", r.status(), r.figure)
		}
		return 1
	}
	return 0
}

func parseFigures(list string) (map[string]bool, error) {
	selected := make(map[string]bool)
	for name := range strings.SplitSeq(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(figureNames, name) {
			return nil, fmt.Errorf("unknown figure %q in -figures: use %s", name, strings.Join(figureNames, ", "))
		}
		selected[name] = true
	}
	return selected, nil
}

func countStatus(rows []row, status string) int {
	n := 0
	for _, r := range rows {
		if r.status() == status {
			n++
		}
	}
	return n
}

// harness runs the figures. Workers are fresh processes of this binary,
// so that each measurement starts with a fresh heap and no process
// reaper of an earlier one.
type harness struct {
	binary string
	// floor is the baseline binary of the startup and idle figures, or
	// empty for none.
	floor string
	repo  string
	quick bool
	self  string
	work  string
	log   io.Writer
	// clock records wall-clock steps, each with the measurement that
	// progress named last.
	clock *clockWatch
}

func newHarness(binary, repo string, quick bool, log io.Writer) (*harness, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	binary, err = filepath.Abs(binary)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("agent-runner binary: %w", err)
	}
	repo, err = filepath.Abs(repo)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "arbench-")
	if err != nil {
		return nil, err
	}
	return &harness{binary: binary, repo: repo, quick: quick, self: self, work: work, log: log}, nil
}

func (h *harness) figure(name string) []row {
	switch name {
	case "dispatch":
		return h.dispatch()
	case "memory":
		return h.memory()
	case "idle":
		return h.idle()
	case "startup":
		return h.startup()
	case "exec":
		return h.execOverhead()
	case "durable":
		return h.durable()
	case "chat":
		return h.chat()
	case "storm":
		return h.storm()
	}
	return nil
}

// pick returns full, or quick under -quick.
func pick[T any](h *harness, full, quick T) T {
	if h.quick {
		return quick
	}
	return full
}

func (h *harness) progress(format string, args ...any) {
	message := fmt.Sprintf(format, args...)
	if h.clock != nil {
		h.clock.setActivity(message)
	}
	fmt.Fprintf(h.log, "%s arbench: %s\n", time.Now().Format("15:04:05"), message)
}

// tempDir creates a new folder for one measurement.
func (h *harness) tempDir(name string) (string, error) {
	return os.MkdirTemp(h.work, name+"-")
}

// runWorkerProcess runs a worker for a in a fresh folder and decodes its
// JSON result into out.
func (h *harness) runWorkerProcess(a workerArgs, out any) error {
	dir, err := h.tempDir(a.kind)
	if err != nil {
		return err
	}
	a.dir = dir
	cmd := exec.Command(h.self, a.args()...)
	cmd.Stderr = h.log
	data, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("worker %s: %w", strings.Join(a.args(), " "), err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("worker %s: invalid output: %w", a.kind, err)
	}
	return os.RemoveAll(dir)
}

// printHeader writes the machine, toolchain, source and command of the run.
func printHeader(w io.Writer, command, source string, quick bool, took time.Duration) {
	mode := "full"
	if quick {
		mode = "quick"
	}
	fmt.Fprintln(w, "# agent-runner benchmarks")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- command: `%s` (%s mode, %s)\n", command, mode, took.Round(time.Second))
	fmt.Fprintf(w, "- date: %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "- machine: %d CPUs (nproc), %s, %s of memory\n", runtime.NumCPU(), cpuModel(), memTotal())
	fmt.Fprintf(w, "- kernel: %s\n", readTrimmed("/proc/sys/kernel/osrelease"))
	fmt.Fprintf(w, "- Go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "- agent-runner: %s\n", source)
}

// loadFields returns the three load averages of a /proc/loadavg line.
func loadFields(line string) string {
	fields := strings.Fields(line)
	if len(fields) < 3 {
		return line
	}
	return strings.Join(fields[:3], " ")
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			var kib int64
			fmt.Sscan(fields[1], &kib)
			return fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
		}
	}
	return "unknown"
}

func readTrimmed(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}
