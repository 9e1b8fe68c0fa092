package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/daemon"
	"github.com/agent-runner/agent-runner/logging"
	"github.com/agent-runner/agent-runner/state"
)

// loadConfig loads the config and prints every problem on failure.
func loadConfig(path string, stderr io.Writer) (*config.Config, bool) {
	if err := configMissing(path); err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return nil, false
	}
	cfg, err := config.Load(path)
	if err != nil {
		var cfgErr *config.Error
		if errors.As(err, &cfgErr) {
			fmt.Fprintf(stderr, "agent-runner: %s in the config:\n", daemon.Count(len(cfgErr.Problems), "problem"))
			for _, p := range cfgErr.Problems {
				fmt.Fprintf(stderr, "  %s\n", p)
			}
		} else {
			fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		}
		return nil, false
	}
	return cfg, true
}

// newLogger returns the daemon's logger. "auto" writes to the journal
// with structured fields when systemd connected stderr to it, and text
// otherwise. Repeated identical errors are rate-limited in every format.
// errInvalidLogFormat is a usage error, unlike a journal that cannot be
// reached.
var errInvalidLogFormat = errors.New("invalid --log-format")

func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "auto":
		h = slog.NewTextHandler(w, opts)
		if logging.UnderJournal() {
			if jh, err := logging.NewJournalHandler(logging.JournalSocket, level); err == nil {
				h = jh
			}
		}
	case "journal":
		jh, err := logging.NewJournalHandler(logging.JournalSocket, level)
		if err != nil {
			return nil, fmt.Errorf("%w: --log-format journal needs the systemd journal, so use --log-format text or auto outside it", err)
		}
		h = jh
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("%w %q: use auto, text, json or journal", errInvalidLogFormat, format)
	}
	return slog.New(logging.NewRateLimit(h)), nil
}

// daemonAvailable reports whether a daemon answers on the socket. It
// returns an error when one listens but cannot be used, such as one that
// rejects this user or does not respond, since working without it then
// would make a second runner.
func daemonAvailable(cfg *config.Config) (bool, error) {
	_, err := control.GetStatus(cfg.Runner.Socket)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, control.ErrNoDaemon):
		return false, nil
	default:
		return false, err
	}
}

// cliLockTimeout is how long a CLI waits for the store lock, which another
// CLI holds for one transaction at a time.
const cliLockTimeout = 3 * time.Second

// openStoreOffline opens the store for a CLI when no daemon responds. A
// held lock then means a daemon runs but its socket does not respond.
func openStoreOffline(cfg *config.Config, readOnly bool, log *slog.Logger) (*state.Store, error) {
	path := daemon.StorePath(cfg)
	if cfg.Cluster != nil {
		return nil, fmt.Errorf("no daemon responds on %s, and with [cluster] the state is in etcd, not in %s: start the daemon on this node, or run the command on another node", cfg.Runner.Socket, path)
	}
	if readOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	} else if err := daemon.PrepareStateDir(cfg.Runner.StateDir); err != nil {
		return nil, err
	}
	store, err := state.Open(path, storeOptions(cfg, readOnly, log))
	if readOnly && errors.Is(err, os.ErrNotExist) {
		// An empty file holds no state yet; the daemon sets it up.
		return nil, nil
	}
	if errors.Is(err, state.ErrLocked) {
		return nil, fmt.Errorf("the daemon holds the state store but does not respond on %s: check that it is healthy (systemctl status agent-runner)", cfg.Runner.Socket)
	}
	return store, err
}

func storeOptions(cfg *config.Config, readOnly bool, log *slog.Logger) state.Options {
	return state.Options{
		ReadOnly:     readOnly,
		LockTimeout:  cliLockTimeout,
		HistoryLimit: cfg.Runner.HistoryLimit,
		Logger:       log,
	}
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("check", stdout, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 0, "no arguments"); code >= 0 {
		return code
	}
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitFailure
	}
	if lines := problemLines(cfg.Problems()); len(lines) > 0 {
		fmt.Fprintf(stderr, "agent-runner: jobs or listeners cannot run on this machine (%s):\n", daemon.Count(len(lines), "problem"))
		for _, line := range lines {
			fmt.Fprintf(stderr, "  %s\n", line)
		}
		return exitFailure
	}
	disabledJobs, disabledListeners := 0, 0
	for _, job := range cfg.Jobs {
		if !job.Enabled {
			disabledJobs++
		}
	}
	for _, lc := range cfg.Listeners {
		if !lc.Enabled {
			disabledListeners++
		}
	}
	for _, line := range append(configWarnings(cfg), pastAtWarnings(cfg, time.Now())...) {
		fmt.Fprintf(stderr, "agent-runner: warning: %s\n", line)
	}
	fmt.Fprintf(stdout, "%s: OK, %s, %d disabled, %s, %d disabled, state in %s\n",
		cfg.Path, daemon.Count(len(cfg.Jobs), "job"), disabledJobs, daemon.Count(len(cfg.Listeners), "listener"), disabledListeners, cfg.Runner.StateDir)
	for _, file := range cfg.Files[1:] {
		fmt.Fprintf(stdout, "  included %s\n", file)
	}
	return exitOK
}

// problemLines flattens the problems of jobs and listeners into unique
// lines, so a bad [defaults] value that every job inherits shows once.
func problemLines(errs []error) []string {
	var problems []config.Problem
	var other []string
	for _, err := range errs {
		var cfgErr *config.Error
		if errors.As(err, &cfgErr) {
			problems = append(problems, cfgErr.Problems...)
		} else {
			other = append(other, err.Error())
		}
	}
	var lines []string
	for _, p := range config.UniqueProblems(problems) {
		lines = append(lines, p.String())
	}
	return append(lines, other...)
}

func joinNames(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// configMissing reports a config path that names no file, with how to
// name the right one: a command run outside the config's folder would
// otherwise report a missing socket or "problems" in a file that is not
// there.
func configMissing(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	if fromEnv := os.Getenv("AGENT_RUNNER_CONFIG"); fromEnv != "" && fromEnv == path {
		// The variable already names this file, so advice to set it
		// would not help.
		return fmt.Errorf("no config file at %s, which AGENT_RUNNER_CONFIG names: fix or unset AGENT_RUNNER_CONFIG, or pass --config PATH", abs)
	}
	return fmt.Errorf("no config file at %s: pass --config PATH or set AGENT_RUNNER_CONFIG", abs)
}
