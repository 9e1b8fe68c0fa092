package daemon

import (
	"path/filepath"
	"testing"
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
