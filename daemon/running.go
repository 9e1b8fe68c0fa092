package daemon

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/agent-runner/agent-runner/process"
)

// runningMarkerName is a file in the state folder that exists while a
// daemon runs there, and stays when one ends with children still alive or
// is killed. A start searches the machine for a previous daemon's
// listeners and hooks, which reads the environment of every process, only
// when the file is there. It is never synced, because a machine that lost
// power has no leftover processes either.
const runningMarkerName = "daemon.running"

// markRunning creates the marker and reports whether a previous daemon
// left it. When the marker cannot be created, the search runs anyway.
func markRunning(stateDir string, log *slog.Logger) (left bool) {
	path := filepath.Join(stateDir, runningMarkerName)
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return true
	}
	if err != nil {
		log.Warn("create daemon marker failed, so every start searches for a previous daemon's processes", "err", err)
		return true
	}
	if err := file.Close(); err != nil {
		log.Warn("create daemon marker failed, so every start searches for a previous daemon's processes", "err", err)
	}
	return false
}

// runningMarkerLeft reports whether a previous daemon left the marker,
// without creating it. When that cannot be checked, it reports true, so
// the search runs anyway.
func runningMarkerLeft(stateDir string) bool {
	_, err := os.Lstat(filepath.Join(stateDir, runningMarkerName))
	return !errors.Is(err, fs.ErrNotExist)
}

// unmarkRunning removes the marker, unless a child of this process is
// still alive and may outlive it.
func unmarkRunning(stateDir string, log *slog.Logger) {
	if process.HasChildren() {
		log.Warn("processes of this daemon still run, so the next start stops them")
		return
	}
	err := os.Remove(filepath.Join(stateDir, runningMarkerName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("remove daemon marker failed, so the next start searches for leftover processes", "err", err)
	}
}
