package daemon

import (
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
	if got := w.compare("edited", &info); got != watchChanged {
		t.Errorf("compare of the rejected content after a revert = %v, want a reload", got)
	}
}

func TestWatchStateClearsARevertAfterUnreadableFiles(t *testing.T) {
	var w watchState
	info := control.DaemonInfo{ConfigHash: "loaded", ReloadError: "read config: no such file or directory"}
	// The file was moved away when the reload read it.
	w.rejected(unreadableFiles)
	if got := w.compare("loaded", &info); got != watchReverted || info.ReloadError != "" {
		t.Errorf("compare = %v with error %q, want the file's return to clear it", got, info.ReloadError)
	}
}
