package daemon

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
)

// watchedHandler returns a handler of the config in path that has no
// runner, scheduler or listeners, so that a reload that applies a config
// fails the test with a panic.
func watchedHandler(t *testing.T, path string) *handler {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return &handler{cfg: cfg, log: slog.New(slog.DiscardHandler), info: control.DaemonInfo{ConfigHash: cfg.Hash}}
}

// rewriteDuringLoad makes the reload's read of the config see content,
// as when a writer rewrites the file in place between the watch's check
// and the read.
func rewriteDuringLoad(t *testing.T, path, content string) {
	t.Helper()
	loadConfig = func(file string) (*config.Config, error) {
		writeConfigFile(t, path, content)
		return config.Load(file)
	}
	t.Cleanup(func() { loadConfig = config.Load })
}

func writeConfigFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

const (
	watchedOneJob  = "[runner]\nwatch = true\n\n[jobs.a]\ncommand = [\"true\"]\nevery = \"1h\"\n"
	watchedTwoJobs = watchedOneJob + "\n[jobs.b]\ncommand = [\"true\"]\nevery = \"1h\"\n"
)

// TestWatchReloadSkipsUnseenContent checks that a watch reload whose
// read finds other content than the two checks saw, here the empty file
// of an in-place rewrite, loads nothing, and that the finished file is
// loaded after the usual two checks.
func TestWatchReloadSkipsUnseenContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	writeConfigFile(t, path, watchedOneJob)
	h := watchedHandler(t, path)
	loaded := h.config()

	writeConfigFile(t, path, watchedTwoJobs)
	h.reloadIfChanged()
	rewriteDuringLoad(t, path, "")
	h.reloadIfChanged()
	if h.config() != loaded {
		t.Fatalf("the reload applied content that no check saw twice")
	}
	if h.info.ReloadError != "" {
		t.Errorf("reload error = %q, want none", h.info.ReloadError)
	}

	loadConfig = config.Load
	writeConfigFile(t, path, watchedTwoJobs)
	if _, changed := h.fileChanged(); changed {
		t.Errorf("the finished file was due for a reload at its first check")
	}
	if _, changed := h.fileChanged(); !changed {
		t.Errorf("the finished file was not due for a reload at its second check")
	}
}

// TestWatchReloadSkipsUnseenBrokenContent checks that a watch reload
// whose read finds a half-written file, which does not load, reports no
// error, and that the finished file is loaded after two checks.
func TestWatchReloadSkipsUnseenBrokenContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	writeConfigFile(t, path, watchedOneJob)
	h := watchedHandler(t, path)

	writeConfigFile(t, path, watchedTwoJobs)
	h.reloadIfChanged()
	rewriteDuringLoad(t, path, watchedOneJob+"\n[jobs.b")
	h.reloadIfChanged()
	if h.info.ReloadError != "" {
		t.Errorf("reload error = %q, want none for a file read while it was written", h.info.ReloadError)
	}

	loadConfig = config.Load
	writeConfigFile(t, path, watchedTwoJobs)
	if _, changed := h.fileChanged(); changed {
		t.Errorf("the finished file was due for a reload at its first check")
	}
	if _, changed := h.fileChanged(); !changed {
		t.Errorf("the finished file was not due for a reload at its second check")
	}
}
