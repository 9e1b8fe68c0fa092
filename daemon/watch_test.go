package daemon

import (
	"path/filepath"
	"testing"

	"github.com/agent-runner/agent-runner/control"
)

func TestWatchStateKeepsAMachineRejection(t *testing.T) {
	var w watchState
	info := control.DaemonInfo{ConfigHash: "loaded", ReloadError: "socket_group: unknown group"}
	// A reload of the loaded content failed for a reason of the machine.
	w.rejected("loaded")
	if got := w.compare("loaded", &info); got != watchSame || info.ReloadError == "" {
		t.Errorf("compare = %v with error %q, want the rejection kept", got, info.ReloadError)
	}
}

func TestWatchStateClearsARevertedEdit(t *testing.T) {
	var w watchState
	info := control.DaemonInfo{ConfigHash: "loaded", ReloadError: "jobs.a.bogus: unknown key"}
	w.rejected("edited")
	if got := w.compare("loaded", &info); got != watchReverted || info.ReloadError != "" {
		t.Errorf("compare = %v with error %q, want the reverted edit to clear it", got, info.ReloadError)
	}
	if got := w.compare("edited", &info); got != watchSame {
		t.Errorf("first compare of the rejected content after a revert = %v, want a wait for the next check", got)
	}
	if got := w.compare("edited", &info); got != watchChanged {
		t.Errorf("second compare of the rejected content after a revert = %v, want a reload", got)
	}
}

// TestWatchStateWaitsForStableFiles checks that content seen only once,
// such as a file caught empty while it is rewritten in place, is not
// loaded, and that content seen at two checks in a row is.
func TestWatchStateWaitsForStableFiles(t *testing.T) {
	var w watchState
	info := control.DaemonInfo{ConfigHash: "loaded"}
	if got := w.compare("empty", &info); got != watchSame {
		t.Errorf("compare of a file seen once = %v, want a wait", got)
	}
	if got := w.compare("rewritten", &info); got != watchSame {
		t.Errorf("compare of the rewritten file seen once = %v, want a wait", got)
	}
	if got := w.compare("rewritten", &info); got != watchChanged {
		t.Errorf("compare of the rewritten file seen twice = %v, want a reload", got)
	}
	if got := w.compare("loaded", &info); got != watchSame {
		t.Errorf("compare of the loaded content = %v, want no reload", got)
	}
	if got := w.compare("rewritten", &info); got != watchSame {
		t.Errorf("compare after a change back to the loaded content = %v, want a new wait", got)
	}
}

func TestWatchStateClearsARevertAfterUnreadableFiles(t *testing.T) {
	var w watchState
	info := control.DaemonInfo{ConfigHash: "loaded", ReloadError: "read config: no such file or directory"}
	// The file was moved away when the reload read it.
	w.rejected(filesFingerprint(filepath.Join(t.TempDir(), "missing.toml")))
	if got := w.compare("loaded", &info); got != watchReverted || info.ReloadError != "" {
		t.Errorf("compare = %v with error %q, want the file's return to clear it", got, info.ReloadError)
	}
}
