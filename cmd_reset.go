package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/daemon"
	"github.com/agent-runner/agent-runner/jobs"
)

func cmdReset(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("reset", stdout, stderr)
	force := fs.Bool("force", false, "move the position to the clock even when it is not ahead")
	ahead := fs.Bool("ahead", false, "reset every enabled job whose position is ahead of the clock, instead of one NAME")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *ahead {
		if code := checkArgs(fs, 0, 0, "no job name with --ahead"); code >= 0 {
			return code
		}
		if *force {
			fmt.Fprintln(stderr, "agent-runner: --force applies to one named job, not to --ahead")
			fs.Usage()
			return exitUsage
		}
	} else if code := checkArgs(fs, 1, 1, "one job name, or --ahead"); code >= 0 {
		return code
	}
	results, err := resetPositions(*configPath, fs.Arg(0), *force, *ahead, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		return exitFailure
	}
	return printResets(stdout, stderr, results, *ahead, time.Now())
}

// resetPositions sends the reset to the daemon, which re-plans the jobs,
// or changes the store itself when no daemon runs.
func resetPositions(configPath, name string, force, ahead bool, stderr io.Writer) ([]jobs.ResetResult, error) {
	if err := configMissing(configPath); err != nil {
		return nil, err
	}
	cfg, ok := loadConfig(configPath, stderr)
	if !ok {
		// The daemon keeps running its last valid config and resets by it.
		socket, err := config.LocateSocket(configPath)
		if err != nil {
			return nil, err
		}
		results, err := control.Reset(socket, name, force, ahead)
		if err != nil {
			return nil, fmt.Errorf("the config has problems and the daemon did not reset: %w", err)
		}
		fmt.Fprintln(stderr, "agent-runner: reset by the running daemon's last valid config")
		return results, nil
	}
	if !ahead && cfg.Job(name) == nil {
		return nil, unknownJob(cfg, name)
	}
	results, err := control.Reset(cfg.Runner.Socket, name, force, ahead)
	if errors.Is(err, jobs.ErrUnknownJob) {
		// The file has the job, or the check above would have failed.
		err = fmt.Errorf("%w: the config file has it, but the daemon runs an earlier version of the file; apply it with agent-runner reload", err)
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return results, err
	}
	fmt.Fprintln(stderr, "agent-runner: the daemon is not running; the reset changes the store, and its next start plans from it")
	return offlineReset(cfg, name, force, ahead, stderr)
}

// offlineReset resets positions in the store of a stopped daemon.
func offlineReset(cfg *config.Config, name string, force, ahead bool, stderr io.Writer) ([]jobs.ResetResult, error) {
	if cfg.Cluster != nil {
		return nil, errors.New("reset is not supported with [cluster]: the positions live in etcd, and the job runs again once the clock passes its position")
	}
	if _, err := os.Stat(daemon.StorePath(cfg)); errors.Is(err, os.ErrNotExist) {
		if ahead {
			return nil, nil
		}
		return []jobs.ResetResult{{Job: name, Unchanged: "it has no stored position yet; it counts its slots from its first start"}}, nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := openStoreOffline(cfg, false, log)
	if err != nil {
		return nil, unwritableResetError(cfg.Runner.StateDir, err)
	}
	defer store.Close()
	now := time.Now()
	if !ahead {
		result, _, err := jobs.ResetPosition(store, cfg.Job(name), now, force)
		if err != nil {
			return nil, unwritableResetError(cfg.Runner.StateDir, err)
		}
		return []jobs.ResetResult{result}, nil
	}
	return jobs.ResetAhead(cfg.Jobs, func(job *config.Job) (jobs.ResetResult, error) {
		result, _, err := jobs.ResetPosition(store, job, now, false)
		return result, unwritableResetError(cfg.Runner.StateDir, err)
	}), nil
}

// unwritableResetError adds to err what to do when the state folder's
// file system is full or read-only, as a start and run-job do. It returns
// other errors, and nil, unchanged.
func unwritableResetError(stateDir string, err error) error {
	switch {
	case !daemon.Unwritable(err):
		return err
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: the file system of state_dir %s is read-only, so reset cannot change the store: remount it read-write, then reset again", err, stateDir)
	default:
		return fmt.Errorf("%w: the file system of state_dir %s is full, so reset cannot change the store: free space there, then reset again", err, stateDir)
	}
}

// printResets prints one line per job and returns exitFailure when the
// reset of a job failed.
func printResets(stdout, stderr io.Writer, results []jobs.ResetResult, ahead bool, now time.Time) int {
	if ahead && len(results) == 0 {
		fmt.Fprintf(stdout, "no job's position is more than %s ahead of the clock; nothing to do\n", strings.TrimSuffix(jobs.MaxPositionAhead.String(), "0m0s"))
		return exitOK
	}
	code := exitOK
	for _, r := range results {
		switch {
		case r.Error != "":
			fmt.Fprintf(stderr, "agent-runner: reset %s failed: %s\n", r.Job, r.Error)
			code = exitFailure
		case r.To.IsZero():
			fmt.Fprintf(stdout, "%s: nothing to do: %s\n", r.Job, r.Unchanged)
		default:
			fmt.Fprintf(stdout, "%s: position %s moved to the clock, %s; next slot %s; agent-runner runs %s shows it as run %s\n",
				r.Job, formatTime(r.From, now), r.To.UTC().Format("2006-01-02 15:04:05Z"), formatTime(r.Next, now), r.Job, r.RunID)
		}
	}
	return code
}
