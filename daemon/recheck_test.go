package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

const brokenJob = "[jobs.a]\ncommand = [\"./missing.sh\"]\nevery = \"1h\"\n"

// TestRecheckLeavesEditsAndSameProblems checks that a recheck reloads
// nothing while the problems stay the same, nor after the files were
// edited, which watch or the user applies. The handler has no runner,
// so a reload that applied a config would panic.
func TestRecheckLeavesEditsAndSameProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	writeConfigFile(t, path, brokenJob)
	h := watchedHandler(t, path)
	if !h.hasProblems() {
		t.Fatal("the job with a missing script has no problem")
	}
	loaded := h.config()

	h.recheckProblems()
	if h.config() != loaded {
		t.Errorf("a recheck with the same problem reloaded")
	}

	writeConfigFile(t, path, brokenJob+"\n[jobs.b]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	writeConfigFile(t, filepath.Join(filepath.Dir(path), "missing.sh"), "#!/bin/sh\n")
	h.last = h.last.AddDate(0, 0, -1)
	h.recheckProblems()
	if h.config() != loaded {
		t.Errorf("a recheck reloaded edited files")
	}
}

// TestRecheckLeavesAlertSinkProblems checks that an alert sink's problem
// causes no recheck and no reload, because a reload keeps the sinks.
func TestRecheckLeavesAlertSinkProblems(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	writeConfigFile(t, path, "[alerts.ops]\nkind = \"exec\"\ncommand = [\"./notify.sh\"]\n")
	if h := watchedHandler(t, path); h.hasProblems() {
		t.Error("a problem of an alert sink alone, which only a restart applies, asks for rechecks")
	}

	writeConfigFile(t, path, brokenJob+"\n[alerts.ops]\nkind = \"exec\"\ncommand = [\"./notify.sh\"]\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notify.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var p problemRecheck
	reloads := 0
	p.recheck(cfg, slog.New(slog.DiscardHandler), func(string) (string, error) { reloads++; return "", nil })
	if reloads != 0 {
		t.Errorf("a recheck after an alert sink's fix reloaded %d times, want none, since a reload keeps the sink", reloads)
	}
}

// TestRecheckLeavesDisabledListeners checks that a disabled listener's
// problem causes no recheck, because the listener does not start.
func TestRecheckLeavesDisabledListeners(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	writeConfigFile(t, path, "[listeners.web]\nkind = \"exec\"\ncommand = [\"./serve.sh\"]\nenabled = false\n")
	if h := watchedHandler(t, path); h.hasProblems() {
		t.Error("a disabled listener's problem asks for rechecks")
	}
}

// TestRecheckBacksOffWhileProblemsStay checks that the timed recheck's
// wait doubles up to its cap while the problems stay, and that a changed
// problem reloads the unchanged config and starts the waits over.
func TestRecheckBacksOffWhileProblemsStay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	writeConfigFile(t, path, brokenJob)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var reloads []string
	reload := func(seen string) (string, error) {
		reloads = append(reloads, seen)
		return "", nil
	}
	var p problemRecheck
	for _, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 8 * time.Minute} {
		p.last = time.Time{}
		p.recheck(cfg, slog.New(slog.DiscardHandler), reload)
		if got := p.recheckDelay(); got != want {
			t.Fatalf("wait after an unchanged recheck = %s, want %s", got, want)
		}
	}
	if len(reloads) != 0 {
		t.Fatalf("unchanged problems reloaded %d times", len(reloads))
	}

	if err := os.WriteFile(filepath.Join(dir, "missing.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p.last = time.Time{}
	p.recheck(cfg, slog.New(slog.DiscardHandler), reload)
	if len(reloads) != 1 || reloads[0] != cfg.Hash {
		t.Errorf("reloads after the fix = %q, want one of the loaded content", reloads)
	}
	if got := p.recheckDelay(); got != recheckInterval {
		t.Errorf("wait after a reload = %s, want %s", got, recheckInterval)
	}
}
