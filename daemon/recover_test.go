package daemon

import (
	"log/slog"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/state"
)

// startMarked starts a sleep that carries marker, as a run's child does.
func startMarked(t *testing.T, marker string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	cmd.Env = []string{marker}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func TestRecoverRunsSparesOtherStoresRuns(t *testing.T) {
	dir := t.TempDir()
	store, err := state.Open(filepath.Join(dir, "state.db"), state.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now()
	if _, err := store.EnsureJob("job", now); err != nil {
		t.Fatal(err)
	}
	run, err := store.Claim(state.Run{Job: "job", Trigger: state.TriggerManual, Start: now, Result: state.ResultRunning}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ours := startMarked(t, jobs.RunMarker(dir, run.ID))
	others := startMarked(t, jobs.RunMarker(t.TempDir(), run.ID))

	cfg := &config.Config{Runner: config.Runner{StateDir: dir, KillGrace: time.Second}}
	if err := RecoverRuns(cfg, store, false, now, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if err := ours.Wait(); err == nil {
		t.Error("the leftover of this store's run exited 0, want it killed")
	}
	if err := others.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the run of another store with the same ID is gone: %v", err)
	}
}
