package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// Unwritable reports whether err comes from a write that the file system
// cannot take: it is full, the user's disk quota is used up, or it is
// read-only, as ext4 remounts itself after an error.
func Unwritable(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS)
}

// unwritableError adds to a start's error that the state folder's file
// system is full or read-only, and what to do about it.
func unwritableError(stateDir string, err error) error {
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: the file system of state_dir %s is read-only, so the daemon cannot write its state store: check it for errors, which the kernel log names, remount it read-write, then start agent-runner again", err, stateDir)
	}
	return fmt.Errorf("%w: the file system of state_dir %s is full, so the daemon cannot write its state store: free space there, then start agent-runner again (until then the claim log keeps the runs that the store lacks)", err, stateDir)
}

// StopLeftoversReadOnly stops what a killed daemon or CLI left running,
// for a start or a run-job that cannot open the store for writing because
// its file system is full or read-only. Such a start fails, and its leftovers would otherwise
// run on until space is freed. A read-only Open writes nothing and still
// finds the runs that only the claim log contains. The store stays open
// during the kill, so its shared lock keeps another daemon from starting
// runs meanwhile. The runs are marked interrupted at the next start.
func StopLeftoversReadOnly(cfg *config.Config, log *slog.Logger) {
	store, err := state.Open(StorePath(cfg), state.Options{
		ReadOnly:     true,
		HistoryLimit: cfg.Runner.HistoryLimit,
		Logger:       log,
	})
	if err != nil {
		log.Error("open state store read-only failed, so processes left by a previous daemon or CLI are not stopped", "err", err)
		return
	}
	defer store.Close()
	leftovers, err := Leftovers(cfg, store, runningMarkerLeft(cfg.Runner.StateDir))
	if err != nil {
		log.Error("read runs left running failed, so processes left by a previous daemon or CLI are not stopped", "err", err)
		return
	}
	StopLeftovers(cfg, leftovers, log)
}
