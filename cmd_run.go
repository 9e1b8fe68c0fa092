package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/daemon"
)

// forcedExitDelay is how long a daemon that got a second signal may take
// to record its killed runs before it exits regardless.
const forcedExitDelay = 10 * time.Second

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("run", stdout, stderr)
	logFormat := fs.String("log-format", "auto", "log format: auto (the journal under systemd, else text), text, json or journal")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 0, "no arguments"); code >= 0 {
		return code
	}
	log, err := newLogger(stderr, *logFormat, slog.LevelInfo)
	if err != nil {
		fmt.Fprintf(stderr, "agent-runner: %v\n", err)
		if errors.Is(err, errInvalidLogFormat) {
			return exitUsage
		}
		return exitFailure
	}
	// Libraries that log through the log package or the default slog
	// logger then write in the daemon's format and to its destination.
	slog.SetDefault(log)
	cfg, ok := loadConfig(*configPath, stderr)
	if !ok {
		return exitFailure
	}
	if status, err := control.GetStatus(cfg.Runner.Socket); err == nil {
		fmt.Fprintf(stderr, "agent-runner: %s: stop it first (systemctl stop agent-runner), or give this one another state_dir\n", runningDaemon(cfg, status))
		return exitFailure
	}

	ctx, force := handleSignals(log)
	err = daemon.Run(ctx, daemon.Options{Config: cfg, Log: log, Version: version, Force: force, Reload: reloadSignals()})
	if err != nil {
		log.Error("agent-runner failed", "err", err)
		return exitFailure
	}
	return exitOK
}

// runningDaemon describes the daemon that already responds on cfg's socket.
// A copy of a config in the same folder shares its state_dir, so that
// daemon may run another file, which the message then names.
func runningDaemon(cfg *config.Config, status control.Status) string {
	if status.Daemon != nil && status.Daemon.Config != "" && status.Daemon.Config != cfg.Path {
		return fmt.Sprintf("a daemon of %s already uses the same state_dir and responds on %s", status.Daemon.Config, cfg.Runner.Socket)
	}
	return fmt.Sprintf("a daemon already runs this config and responds on %s", cfg.Runner.Socket)
}

// reloadSignals turns each SIGHUP into a reload request.
func reloadSignals() <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	return reload
}

// handleSignals turns the first SIGTERM or SIGINT into a cancelled context
// and the second into a closed force channel. A third, or the forced stop
// taking too long, exits at once.
func handleSignals(log *slog.Logger) (context.Context, <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	force := make(chan struct{})
	signals := make(chan os.Signal, 3)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		log.Info("stopping on signal; a second one kills the running jobs at once", "signal", sig.String())
		cancel()
		first := time.Now()
		for {
			sig = <-signals
			// Tools such as timeout(1) signal the process and its group
			// at once; a copy that arrives with the first is no second
			// signal.
			if time.Since(first) > time.Second {
				break
			}
		}
		log.Warn("second signal: forcing stop", "signal", sig.String())
		close(force)
		select {
		case <-signals:
		case <-time.After(forcedExitDelay):
		}
		log.Error("exiting without waiting for running jobs")
		os.Exit(exitFailure)
	}()
	return ctx, force
}
