// Command crash kills an agent-runner daemon with SIGKILL at random
// moments and restarts it. After every round it checks that the store
// opens and that no job ran a slot twice. It also checks that no process
// of an earlier daemon outlives the next daemon's start.
//
// Usage: go run ./reliability/cmd/crash [-quick] [-rounds N] [-seed S]
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/reliability/harness"
)

// Jobs of the generated config. Each appends "SLOT TRIGGER DAEMON_PID" to
// out/NAME as its first action, and the pid records of what it starts to
// pids/NAME.
var jobNames = []string{"every-fast", "every-slow", "cron-fast", "cron-escape"}

// orphanDeadline is how long after the next daemon logs "scheduler
// started" a process of an earlier round may still exist. KillMarked
// returns right after its SIGKILL, so a process may take a moment to die.
const orphanDeadline = time.Second

func config() string {
	pid := harness.PidLine
	job := func(name, schedule, body string) string {
		record := fmt.Sprintf(`echo "$AGENT_RUNNER_SLOT $AGENT_RUNNER_TRIGGER $PPID" >> out/%s; %s; `, name, pid("$$", "pids/"+name))
		return fmt.Sprintf("[jobs.%s]\ncommand = [\"sh\", \"-c\", %q]\n%s\ntimeout = \"20s\"\n\n", name, record+body, schedule)
	}
	var b strings.Builder
	b.WriteString(`[runner]
state_dir = "state"
shutdown_timeout = "3s"
kill_grace = "500ms"

[defaults]
working_dir = "."

`)
	b.WriteString(job("every-fast", `every = "1s"`, "true"))
	// A run of 2.5 s with a grandchild in its process group, so a kill
	// often lands while it runs.
	b.WriteString(job("every-slow", `every = "1s"`, "sleep 30 & "+pid("$!", "pids/every-slow")+"; sleep 2.5"))
	b.WriteString(job("cron-fast", `schedule = "* * * * * *"`, "true"))
	// A grandchild that leaves the process group with setsid, which only
	// the run marker in its environment finds.
	b.WriteString(job("cron-escape", `schedule = "* * * * * *"`, "setsid sleep 30 & "+pid("$!", "pids/cron-escape")+"; sleep 1.5"))
	b.WriteString(fmt.Sprintf("[listeners.svc]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", %q]\n", pid("$$", "pids/svc")+"; exec sleep 300"))
	return b.String()
}

// Kill moments.
const (
	modeStartup = "startup"  // before "scheduler started", 0-150 ms after exec
	modeCatchUp = "catch-up" // 0-60 ms after "scheduler started", while catch-up runs start
	modeClaim   = "claim"    // as the log shows "run started", between claim and child
	modeChild   = "child"    // as a job's first output line appears
	modeRunning = "running"  // 0.1-4 s after "scheduler started"
)

var modes = []string{modeStartup, modeCatchUp, modeClaim, modeChild, modeRunning}

type checker struct {
	project *harness.Project
	// dead holds pid records verified dead, by "pid starttime".
	dead       map[string]bool
	violations []string
	// logs is the folder that keeps every round's daemon log.
	logs string
	// atRisk holds the processes, by "pid starttime", that were alive when
	// a start was killed before its scheduler ran. strict makes their
	// survival a violation; otherwise it counts in knownHits.
	atRisk    map[string]bool
	strict    bool
	knownHits int
	// reported keeps a violation that later rescans find again from being
	// listed twice.
	reported map[string]bool
	round    int

	// Counters for the summary.
	kills          map[string]int
	leftoverRounds int
	leftoverProcs  int
	maxOrphanLag   time.Duration
	catchUps       int
	startups       []time.Duration
	// lifetimes maps a daemon pid to how long it ran.
	lifetimes map[int]time.Duration
}

func (c *checker) violate(format string, args ...any) {
	text := fmt.Sprintf(format, args...)
	// A log tail after the first line differs between rounds, so only
	// the first line identifies a repeat.
	key, _, _ := strings.Cut(text, "\n")
	if c.reported[key] {
		return
	}
	c.reported[key] = true
	msg := fmt.Sprintf("round %d: %s", c.round, text)
	c.violations = append(c.violations, msg)
	fmt.Fprintln(os.Stderr, "VIOLATION", msg)
}

func main() {
	rounds := flag.Int("rounds", 200, "number of SIGKILL rounds")
	quick := flag.Bool("quick", false, "run 25 rounds unless -rounds is given")
	seed := flag.Uint64("seed", 0, "random seed; 0 picks one from the clock")
	binary := flag.String("binary", "", "prebuilt agent-runner binary; empty builds one")
	dir := flag.String("dir", "", "work folder; empty makes a temporary one")
	keep := flag.Bool("keep", false, "keep the work folder even when every check passed")
	verbose := flag.Bool("v", false, "print one line per round")
	maxDuration := flag.Duration("max-duration", 40*time.Minute, "stop starting rounds after this long")
	only := flag.String("modes", strings.Join(modes, ","), "comma-separated kill moments to pick from")
	strict := flag.Bool("strict", os.Getenv("RELIABILITY_STRICT") != "", "count the survivors of a known defect as violations (default from RELIABILITY_STRICT)")
	flag.Parse()
	if *quick && !isFlagSet("rounds") {
		*rounds = 25
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	var picked []string
	for _, mode := range strings.Split(*only, ",") {
		if !slices.Contains(modes, mode) {
			fmt.Fprintf(os.Stderr, "crash: unknown kill moment %q in -modes; use some of %s\n", mode, strings.Join(modes, ","))
			os.Exit(2)
		}
		picked = append(picked, mode)
	}
	modes = picked
	os.Exit(run(*rounds, *seed, *binary, *dir, *keep, *verbose, *strict, *maxDuration))
}

func isFlagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func run(rounds int, seed uint64, binary, dir string, keep, verbose, strict bool, maxDuration time.Duration) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Orphans of a killed daemon are re-parented to this process, so it
	// can reap them; without this they would burden pid 1.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

	if dir == "" {
		tmp, err := os.MkdirTemp("", "agent-runner-crash-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "crash:", err)
			return 2
		}
		dir = tmp
	}
	if binary == "" {
		binary = filepath.Join(dir, "agent-runner")
		if err := harness.Build(binary); err != nil {
			fmt.Fprintln(os.Stderr, "crash:", err)
			return 2
		}
	}
	project, err := harness.NewProject(binary, filepath.Join(dir, "project"), config())
	if err == nil {
		err = os.MkdirAll(project.Path("out"), 0o755)
	}
	if err == nil {
		err = os.MkdirAll(project.Path("pids"), 0o755)
	}
	if err == nil {
		err = os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash:", err)
		return 2
	}
	fmt.Printf("crash: seed %d, %d rounds, work folder %s\n", seed, rounds, dir)

	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := &checker{project: project, logs: filepath.Join(dir, "logs"), atRisk: map[string]bool{}, strict: strict, dead: map[string]bool{}, reported: map[string]bool{}, kills: map[string]int{}, lifetimes: map[int]time.Duration{}}
	deadline := time.Now().Add(maxDuration)
	done := 0
	for c.round = 1; c.round <= rounds; c.round++ {
		if ctx.Err() != nil || time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "crash: stopped after %d rounds (interrupt or -max-duration)\n", done)
			break
		}
		mode := modes[rng.IntN(len(modes))]
		c.playRound(mode, rng, verbose)
		c.reap()
		done++
		// Downtime lets slots pass, so the next start has catch-up work.
		harness.Sleep(ctx, time.Duration(rng.IntN(2500))*time.Millisecond)
	}
	c.round = done + 1
	c.finalRound()
	c.reap()

	fmt.Printf("crash: %d rounds, %d violations\n", done, len(c.violations))
	if c.knownHits > 0 {
		fmt.Printf("  known defect hit %d times: a process outlived a start that was killed during its leftover cleanup (-strict counts it as a violation)\n", c.knownHits)
	}
	c.printStats()
	for _, v := range c.violations {
		fmt.Println("  ", v)
	}
	if len(c.violations) > 0 || keep {
		fmt.Printf("crash: work folder kept at %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	if len(c.violations) > 0 {
		return 1
	}
	return 0
}

// playRound starts a daemon, checks it, and kills it at a moment of mode.
func (c *checker) playRound(mode string, rng *rand.Rand, verbose bool) {
	d, err := c.project.StartDaemon()
	if err != nil {
		c.violate("start daemon: %v", err)
		return
	}
	defer func() {
		c.lifetimes[d.Pid()] = time.Since(d.Started)
		c.saveLog(d, mode)
	}()
	if mode == modeStartup {
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		d.Kill()
		c.kills[mode]++
		if !strings.Contains(d.Log(), "scheduler started") {
			// This start may have marked runs interrupted without
			// stopping their processes (see TestKillDuringLeftoverCleanup
			// in package reliability).
			for _, a := range c.aliveRecords(-1) {
				c.atRisk[a.key()] = true
			}
		}
		c.checkOutputs()
		if verbose {
			fmt.Printf("round %d: %s kill after %s\n", c.round, mode, time.Since(d.Started).Round(time.Millisecond))
		}
		return
	}
	if !c.checkStart(d) {
		d.Kill()
		return
	}
	switch mode {
	case modeCatchUp:
		time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
	case modeClaim:
		before := strings.Count(d.Log(), "run started")
		harness.WaitFor(5*time.Second, func() bool { return strings.Count(d.Log(), "run started") > before })
	case modeChild:
		before := c.outputSize()
		waitFast(5*time.Second, func() bool { return c.outputSize() > before })
	case modeRunning:
		time.Sleep(100*time.Millisecond + time.Duration(rng.IntN(3900))*time.Millisecond)
	}
	d.Kill()
	c.kills[mode]++
	c.checkOutputs()
	if verbose {
		fmt.Printf("round %d: %s kill after %s\n", c.round, mode, time.Since(d.Started).Round(time.Millisecond))
	}
}

// saveLog writes the daemon's log to logs/ROUND.log in the work folder,
// for a violation to be traced afterwards.
func (c *checker) saveLog(d *harness.Daemon, mode string) {
	header := fmt.Sprintf("# round %d, kill at %s, daemon pid %d\n", c.round, mode, d.Pid())
	_ = os.WriteFile(filepath.Join(c.logs, fmt.Sprintf("%03d.log", c.round)), []byte(header+d.Log()), 0o644)
}

// finalRound starts the daemon once more, lets it run, stops it with
// SIGTERM, and checks that nothing of any round is left.
func (c *checker) finalRound() {
	d, err := c.project.StartDaemon()
	if err != nil {
		c.violate("start final daemon: %v", err)
		return
	}
	if !c.checkStart(d) {
		d.Kill()
		return
	}
	time.Sleep(3 * time.Second)
	if err := d.Stop(15 * time.Second); err != nil {
		c.violate("final SIGTERM stop: %v", err)
	}
	c.lifetimes[d.Pid()] = time.Since(d.Started)
	c.saveLog(d, "final SIGTERM")
	c.checkOutputs()
	// After a clean stop nothing any round started may run.
	if alive := c.aliveRecords(-1); len(alive) > 0 {
		time.Sleep(orphanDeadline)
		if alive = c.aliveRecords(-1); len(alive) > 0 {
			c.violate("processes still running after the final daemon stopped: %s", describe(alive))
		}
	}
	if _, res, err := c.project.Status(30 * time.Second); err != nil {
		c.violate("list --json without a daemon: %v (%s)", err, res.Stderr)
	}
}

// checkStart waits for the scheduler, then checks that no process of an
// earlier daemon survived and that list --json works through the daemon.
func (c *checker) checkStart(d *harness.Daemon) bool {
	if err := d.WaitLog("scheduler started", 30*time.Second); err != nil {
		c.violate("daemon did not start: %v", err)
		return false
	}
	c.startups = append(c.startups, time.Since(d.Started))
	if strings.Contains(d.Log(), "state store was corrupt") {
		c.violate("the store was found corrupt after a SIGKILL:\n%s", harness.Tail(d.Log(), 10))
	}

	// Processes of earlier daemons must be gone once the scheduler runs.
	start := time.Now()
	alive := c.aliveRecords(d.Pid())
	for len(alive) > 0 && time.Since(start) < orphanDeadline {
		time.Sleep(10 * time.Millisecond)
		alive = c.aliveRecords(d.Pid())
	}
	var unknown []aliveProcess
	for _, a := range alive {
		if !c.atRisk[a.key()] || c.strict {
			unknown = append(unknown, a)
			continue
		}
		// A known defect: the run was marked interrupted by a start that
		// died before it stopped the run's processes. Stop it here so it
		// does not count again.
		c.knownHits++
		fmt.Fprintf(os.Stderr, "crash: round %d: known defect: %s outlived a start killed during its leftover cleanup\n", c.round, a)
		_ = syscall.Kill(a.record.Pid, syscall.SIGKILL)
	}
	if len(unknown) > 0 {
		c.violate("processes of an earlier daemon still run %s after \"scheduler started\": %s\n%s",
			orphanDeadline, describe(unknown), harness.Tail(d.Log(), 10))
	} else if lag := time.Since(start); lag > c.maxOrphanLag {
		c.maxOrphanLag = lag
	}

	if m := leftoverCount.FindStringSubmatch(d.Log()); m != nil {
		n, _ := strconv.Atoi(m[1])
		c.leftoverRounds++
		c.leftoverProcs += n
	}

	status, res, err := c.project.Status(15 * time.Second)
	if err != nil {
		c.violate("list --json with the daemon running: %v", err)
		return true
	}
	if status.Daemon == nil {
		c.violate("list --json did not come from the daemon: %s", harness.Clip(res.Stdout, 200))
	}
	if len(status.Jobs) != len(jobNames) {
		c.violate("list --json shows %d jobs, want %d", len(status.Jobs), len(jobNames))
	}
	return true
}

var leftoverCount = regexp.MustCompile(`stopped processes left by a previous daemon or CLI.*count=(\d+)`)

// aliveProcess is a recorded process that still runs.
type aliveProcess struct {
	job    string
	record harness.PidRecord
}

func (a aliveProcess) key() string { return fmt.Sprintf("%d %s", a.record.Pid, a.record.StartTime) }

func (a aliveProcess) String() string {
	return fmt.Sprintf("%s pid %d (daemon %d)", a.job, a.record.Pid, a.record.Parent)
}

// aliveRecords returns the recorded processes that still run and were
// not started by the daemon with pid current (-1: none is current).
func (c *checker) aliveRecords(current int) []aliveProcess {
	var alive []aliveProcess
	for _, name := range append(append([]string(nil), jobNames...), "svc") {
		for _, r := range harness.ReadPidRecords(c.project.Path("pids/" + name)) {
			a := aliveProcess{job: name, record: r}
			if c.dead[a.key()] || r.Parent == current {
				continue
			}
			if harness.Alive(r.Pid, r.StartTime) {
				alive = append(alive, a)
			} else {
				c.dead[a.key()] = true
			}
		}
	}
	return alive
}

func describe(alive []aliveProcess) string {
	var parts []string
	for _, a := range alive {
		parts = append(parts, a.String())
	}
	return strings.Join(parts, ", ")
}

// reap collects the zombies of recorded processes that were re-parented
// to this process.
func (c *checker) reap() {
	for _, name := range append(append([]string(nil), jobNames...), "svc") {
		for _, r := range harness.ReadPidRecords(c.project.Path("pids/" + name)) {
			if harness.ProcState(r.Pid) == "Z" {
				var status unix.WaitStatus
				_, _ = unix.Wait4(r.Pid, &status, unix.WNOHANG, nil)
			}
		}
	}
}

func (c *checker) outputSize() int64 {
	var total int64
	for _, name := range jobNames {
		if info, err := os.Stat(c.project.Path("out/" + name)); err == nil {
			total += info.Size()
		}
	}
	return total
}

// checkOutputs checks every job's output file: each slot once, slots in
// increasing order, and at most one catch-up run per daemon start.
func (c *checker) checkOutputs() {
	c.catchUps = 0
	for _, name := range jobNames {
		lines := harness.Lines(c.project.Path("out/" + name))
		seen := map[string]int{}
		var last time.Time
		catchUps := map[int]int{}
		for i, line := range lines {
			fields := strings.Fields(line)
			if len(fields) != 3 {
				c.violate("%s line %d is malformed: %q", name, i+1, line)
				continue
			}
			slot, err := time.Parse(time.RFC3339, fields[0])
			if err != nil {
				c.violate("%s line %d has no slot: %q", name, i+1, line)
				continue
			}
			if first, dup := seen[fields[0]]; dup {
				c.violate("%s ran slot %s twice (lines %d and %d: %q)", name, fields[0], first, i+1, line)
			}
			seen[fields[0]] = i + 1
			if !slot.After(last) {
				c.violate("%s line %d runs slot %s, not after the slot %s before it", name, i+1, fields[0], last.Format(time.RFC3339))
			}
			if slot.After(last) {
				last = slot
			}
			if fields[1] == "catch-up" {
				daemon, _ := strconv.Atoi(fields[2])
				catchUps[daemon]++
				c.catchUps++
			}
		}
		for daemon, n := range catchUps {
			// The wall-clock check may add a catch-up run every 30 s, so
			// only short-lived daemons are held to one.
			if life, ok := c.lifetimes[daemon]; n > 1 && ok && life < 25*time.Second {
				c.violate("%s had %d catch-up runs under daemon %d, which ran %s", name, n, daemon, life.Round(time.Millisecond))
			}
		}
	}
}

func (c *checker) printStats() {
	var kinds []string
	for mode, n := range c.kills {
		kinds = append(kinds, fmt.Sprintf("%s %d", mode, n))
	}
	sort.Strings(kinds)
	runs := 0
	for _, name := range jobNames {
		runs += len(harness.Lines(c.project.Path("out/" + name)))
	}
	sort.Slice(c.startups, func(i, j int) bool { return c.startups[i] < c.startups[j] })
	median, worst := time.Duration(0), time.Duration(0)
	if n := len(c.startups); n > 0 {
		median, worst = c.startups[n/2], c.startups[n-1]
	}
	fmt.Printf("  kills by moment: %s\n", strings.Join(kinds, ", "))
	fmt.Printf("  job runs recorded: %d (catch-up: %d); starts that stopped leftovers: %d (%d processes)\n",
		runs, c.catchUps, c.leftoverRounds, c.leftoverProcs)
	fmt.Printf("  start to \"scheduler started\": median %s, max %s; slowest leftover exit after it: %s\n",
		median.Round(time.Millisecond), worst.Round(time.Millisecond), c.maxOrphanLag.Round(time.Millisecond))
}

// waitFast polls cond every millisecond, for kills that must land close
// to an event.
func waitFast(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
