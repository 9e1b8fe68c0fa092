package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/daemon"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/process"
	"github.com/agent-runner/agent-runner/state"
)

func cmdRunJob(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("run-job", stdout, stderr)
	wait := fs.Bool("wait", false, "wait for a running run of the job to finish, then run it")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	// A wrong argument count exits 125 like every other failure to start
	// the job, so that scripts tell the job's own statuses apart.
	if fs.NArg() > 1 {
		fmt.Fprintf(stderr, "agent-runner: unexpected argument %q: run-job takes one job name\n", fs.Arg(1))
		fs.Usage()
		return exitCannotRun
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "agent-runner: run-job takes one job name")
		fs.Usage()
		return exitCannotRun
	}
	name := fs.Arg(0)
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitCannotRun
	}
	job := cfg.Job(name)
	if job == nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", unknownJob(cfg, name))
		return exitCannotRun
	}
	if !job.Enabled {
		fmt.Fprintf(stderr, "agent-runner: job %s is disabled (enabled = false), so it runs only by hand; running it now\n", name)
	}

	ctx, setKill, stop := interruptContext(stderr, *wait)
	defer stop()
	out := &lineWriter{stdout: stdout, stderr: stderr}
	var run state.Run
	var err error
	available, err := daemonAvailable(cfg)
	switch {
	case err != nil:
	case available:
		run, err = control.RunJob(ctx, cfg.Runner.Socket, name, *wait, out.write)
	default:
		run, err = runInProcess(ctx, cfg, name, *wait, out.write, stderr, setKill)
	}
	if errors.Is(err, jobs.ErrBusy) {
		err = fmt.Errorf("%w: wait for it with run-job --wait %s", err, name)
	}
	if available && errors.Is(err, jobs.ErrUnknownJob) {
		// The file has the job, or the check above would have failed.
		err = fmt.Errorf("%w: the config file has it, but the daemon runs an earlier version of the file; apply it with agent-runner reload", err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		if ctx.Err() != nil {
			// Interrupted before the run started, as while --wait waits.
			return exitInterrupt
		}
		return exitCannotRun
	}
	fmt.Fprintf(stderr, "agent-runner: run %s of %s: %s in %s\n", run.ID, run.Job, describeResult(run), run.Duration.Round(time.Millisecond))
	if available && job.Problem == nil && isLoadProblem(cfg, run) {
		fmt.Fprintln(stderr, "agent-runner: the daemon found this problem when it loaded the config, and the files pass that check now: apply them with agent-runner reload")
	}
	return exitStatus(run)
}

// isLoadProblem reports whether run failed on a problem that the daemon
// found in its job when it loaded the config, such as a script that was
// not executable then. The daemon checks again only on a reload, so a
// user who fixed the script would otherwise see the same error again.
func isLoadProblem(cfg *config.Config, run state.Run) bool {
	if run.Result != state.ResultFailed || run.ExitCode != -1 {
		return false
	}
	for _, file := range cfg.Files {
		if strings.HasPrefix(run.Error, file+":") {
			return true
		}
	}
	return false
}

// unknownJob is the error for a name that no job has. A listener's name
// gets its own message, because it is an easy mix-up: status takes both.
func unknownJob(cfg *config.Config, name string) error {
	if cfg.Listener(name) != nil {
		return fmt.Errorf("%s is a listener, not a job: agent-runner status %s shows it, and its output is in the daemon's log", name, name)
	}
	return fmt.Errorf("unknown job %q; jobs in %s: %s", name, cfg.Path, joinNames(jobNames(cfg)))
}

func jobNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Jobs))
	for _, job := range cfg.Jobs {
		names = append(names, job.Name)
	}
	return names
}

// errStoppedByUser is the cause of a run by hand that a signal stopped,
// as the daemon records one that its client stopped.
var errStoppedByUser = errors.New("stopped by the user")

// interruptContext ends the context on the first SIGINT, SIGTERM or
// SIGHUP, which stops the run's process group within kill_grace. A second
// signal calls the kill function that setKill registered, which a run in
// this process registers to kill its process group at once, and a third
// exits. Without one, as when the daemon runs the job, the second exits,
// and the daemon goes on stopping the run. With wait set, the first
// signal may come while the run waits for another one to end, and then
// ends only the wait.
func interruptContext(stderr io.Writer, wait bool) (ctx context.Context, setKill func(kill func()), stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 3)
	// A closed terminal sends SIGHUP, which stops the run like Ctrl-C.
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var mu sync.Mutex
	var kill func()
	killer := func() func() {
		mu.Lock()
		defer mu.Unlock()
		return kill
	}
	go func() {
		if _, ok := <-signals; !ok {
			return
		}
		if wait {
			fmt.Fprintln(stderr, "agent-runner: stopping the run, or the wait for the running one, which goes on (interrupt again to stop this run at once)")
		} else {
			fmt.Fprintln(stderr, "agent-runner: stopping the run (interrupt again to stop it at once)")
		}
		cancel(errStoppedByUser)
		if _, ok := <-signals; !ok {
			return
		}
		k := killer()
		if k == nil {
			// A run through the daemon, or none started yet.
			fmt.Fprintln(stderr, "agent-runner: exiting now; a run that the daemon started goes on stopping there")
			os.Exit(exitInterrupt)
		}
		fmt.Fprintln(stderr, "agent-runner: killing the run (interrupt again to exit without its record)")
		k()
		if _, ok := <-signals; ok {
			os.Exit(exitInterrupt)
		}
	}()
	setKill = func(f func()) {
		mu.Lock()
		defer mu.Unlock()
		kill = f
	}
	return ctx, setKill, func() {
		signal.Stop(signals)
		close(signals)
		cancel(nil)
	}
}

// runInProcess runs the job in this process when no daemon runs, and
// records it in the store like the daemon would. The store is opened per
// write, so list works during the run.
func runInProcess(ctx context.Context, cfg *config.Config, name string, wait bool, output func(jobs.Line), stderr io.Writer, setKill func(func())) (state.Run, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := recoverRuns(cfg, log); err != nil {
		return state.Run{}, err
	}
	next, err := offlineNext(cfg, name, log)
	if err != nil {
		return state.Run{}, err
	}
	reaper, err := process.NewReaper(log)
	if err != nil {
		return state.Run{}, err
	}
	defer reaper.Close()

	store := handoffRecorder{
		Transient: state.Transient{Path: daemon.StorePath(cfg), Options: storeOptions(cfg, false, log)},
		socket:    cfg.Runner.Socket,
	}
	runner := jobs.NewRunner(cfg, store, reaper, log, time.Now)
	runner.SetStandalone()
	setKill(runner.Kill)
	// The summary line that cmdRunJob prints reports the result.
	runner.SetResultLogger(slog.New(slog.DiscardHandler))
	return runner.Run(ctx, jobs.Request{
		Job: name, Trigger: state.TriggerManual, Next: next, Wait: wait, Output: output,
		WaitingForRun: func() {
			output(jobs.Line{Stream: "stderr", Text: control.WaitingForRunNotice(name)})
		},
	})
}

// recoverRuns does what a daemon start does to runs that a killed daemon
// or CLI left recorded as running: it stops their processes and marks
// them interrupted. Without it, a run by hand right after a kill -9 of the
// daemon would start beside that daemon's run of the same job.
func recoverRuns(cfg *config.Config, log *slog.Logger) error {
	store, err := openStoreOffline(cfg, false, log)
	if daemon.Unwritable(err) {
		// The run could not be recorded, but what a killed daemon left
		// running is stopped all the same.
		daemon.StopLeftoversReadOnly(cfg, log)
		if errors.Is(err, syscall.EROFS) {
			return fmt.Errorf("%w: the file system of state_dir %s is read-only, so run-job cannot record the run: remount it read-write, then run it again", err, cfg.Runner.StateDir)
		}
		return fmt.Errorf("%w: the file system of state_dir %s is full, so run-job cannot record the run: free space there, then run it again", err, cfg.Runner.StateDir)
	}
	if err != nil {
		return err
	}
	leftovers, err := daemon.Leftovers(cfg, store, false)
	if err != nil || len(leftovers) > 0 {
		// The kill waits up to kill_grace, and a run by hand of another
		// job may need the store meanwhile.
		store.Close()
	}
	if err != nil {
		return err
	}
	if len(leftovers) > 0 {
		daemon.StopLeftovers(cfg, leftovers, log)
		if store, err = reopenAfterKill(cfg, log); err != nil {
			return err
		}
	}
	defer store.Close()
	// A daemon that started and died during the kill may have left runs
	// of its own, and only runs whose processes were stopped may be
	// marked interrupted.
	later, err := daemon.Leftovers(cfg, store, false)
	if err != nil {
		return err
	}
	daemon.StopLeftovers(cfg, newMarkers(later, leftovers), log)
	return daemon.MarkInterrupted(cfg, store, time.Now(), log)
}

// reopenAfterKill opens the store again after recoverRuns closed it for
// the kill, during which a daemon may have started and taken it.
func reopenAfterKill(cfg *config.Config, log *slog.Logger) (*state.Store, error) {
	store, err := openStoreOffline(cfg, false, log)
	if err != nil {
		if _, statusErr := control.GetStatus(cfg.Runner.Socket); statusErr == nil {
			return nil, errors.New("a daemon started while run-job stopped the processes a killed daemon left: run the command again, and it runs the job through the daemon")
		}
	}
	return store, err
}

// newMarkers returns the markers of later that earlier lacks.
func newMarkers(later, earlier []string) []string {
	var fresh []string
	for _, marker := range later {
		if !slices.Contains(earlier, marker) {
			fresh = append(fresh, marker)
		}
	}
	return fresh
}

// handoffRecorder records an in-process run in the store, and hands the
// final record to the daemon when one started during the run and now
// holds the store.
type handoffRecorder struct {
	state.Transient
	socket string
}

func (h handoffRecorder) Finish(run state.Run) error {
	err := h.Transient.Finish(run)
	if !errors.Is(err, state.ErrLocked) {
		return err
	}
	if handErr := control.RecordRun(h.socket, run); handErr != nil {
		return fmt.Errorf("%w; handing the record to the daemon failed too: %w", err, handErr)
	}
	return nil
}

// offlineNext returns the job's next slot as the daemon would compute it,
// so a manual run records the same next run.
func offlineNext(cfg *config.Config, name string, log *slog.Logger) (time.Time, error) {
	store, err := openStoreOffline(cfg, true, log)
	if err != nil {
		return time.Time{}, err
	}
	if store != nil {
		defer store.Close()
	}
	statuses, err := jobs.OfflineStatus(cfg, store, time.Now())
	if err != nil {
		return time.Time{}, err
	}
	for _, s := range statuses {
		if s.Name == name {
			return s.NextRun, nil
		}
	}
	return time.Time{}, nil
}

// lineWriter prints each output line to the stream it came from.
type lineWriter struct {
	mu     sync.Mutex
	stdout io.Writer
	stderr io.Writer
}

func (w *lineWriter) write(line jobs.Line) {
	w.mu.Lock()
	defer w.mu.Unlock()
	dst := w.stdout
	if line.Stream == "stderr" {
		dst = w.stderr
	}
	fmt.Fprintln(dst, line.Text)
}

func describeResult(run state.Run) string {
	if run.Error == "" {
		return run.Result
	}
	return fmt.Sprintf("%s (%s)", run.Result, firstLine(run.Error))
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// exitStatus maps a run to the CLI's exit status: the job's own status,
// 124 on timeout, 128+N when signal N killed it, 130 when interrupted and
// 125 when the job could not start or agent-runner failed.
func exitStatus(run state.Run) int {
	switch run.Result {
	case state.ResultOK:
		return exitOK
	case state.ResultTimeout:
		return exitTimeout
	case state.ResultInterrupted:
		return exitInterrupt
	case state.ResultFailed:
		if run.ExitCode > 0 {
			return run.ExitCode
		}
	}
	return exitCannotRun
}
