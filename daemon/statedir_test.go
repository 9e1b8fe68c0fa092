package daemon

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agent-runner/agent-runner/alerts"
	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
)

// watchedState is a state folder with a store file and a stateWatch on
// it that records what it reports.
type watchedState struct {
	watch   *stateWatch
	dir     string
	shown   []string
	alerts  []alerts.Alert
	listens int
	log     strings.Builder
}

func newWatchedState(t *testing.T) *watchedState {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state.db"), []byte("store"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Runner: config.Runner{StateDir: dir, Socket: filepath.Join(dir, "control.sock")}}
	s := &watchedState{dir: dir}
	// The daemon's own socket, listening before the watch starts.
	srv, err := control.Listen(cfg.Runner.Socket, "", nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	w, err := newStateWatch(cfg, slog.New(slog.NewTextHandler(&s.log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.watch = w
	w.show = func(problem string) { s.shown = append(s.shown, problem) }
	w.notify = func(a alerts.Alert) { s.alerts = append(s.alerts, a) }
	w.listen = func() (*control.Server, error) {
		s.listens++
		return control.Listen(w.socket, "", nil, w.log)
	}
	t.Cleanup(w.close)
	return s
}

func (s *watchedState) checkAndReport() string {
	problem := s.watch.check()
	s.watch.report(problem)
	return problem
}

func TestStateWatchHealthyFolder(t *testing.T) {
	s := newWatchedState(t)
	if problem := s.checkAndReport(); problem != "" {
		t.Errorf("check of a healthy folder = %q, want no problem", problem)
	}
	if len(s.alerts) != 0 || len(s.shown) != 0 {
		t.Errorf("a healthy folder was reported: shown %q, alerts %+v", s.shown, s.alerts)
	}
	if _, err := os.Stat(filepath.Join(s.dir, stateProbeFile)); !os.IsNotExist(err) {
		t.Errorf("the probe file was left behind: %v", err)
	}
}

func TestStateWatchDeletedFolder(t *testing.T) {
	s := newWatchedState(t)
	if err := os.RemoveAll(s.dir); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		problem := s.checkAndReport()
		if !strings.Contains(problem, "deleted or replaced") || !strings.Contains(problem, "restart the daemon") {
			t.Errorf("check after the deletion = %q, want the lost store and what to do", problem)
		}
	}
	if len(s.alerts) != 1 {
		t.Fatalf("got %d alerts over three checks, want 1: %+v", len(s.alerts), s.alerts)
	}
	if a := s.alerts[0]; a.Kind != alerts.KindDaemon || a.Name != "state_dir" || a.Event != alerts.EventFailed {
		t.Errorf("alert = %+v, want a failed daemon state_dir alert", a)
	}
	if len(s.shown) != 1 || s.shown[0] == "" {
		t.Errorf("status got %q, want the problem once", s.shown)
	}
	if info, err := os.Stat(s.dir); err != nil || !info.IsDir() {
		t.Errorf("the state folder was not recreated: %v", err)
	}
	if _, err := os.Stat(s.watch.socket); err != nil {
		t.Errorf("the control socket was not recreated: %v", err)
	}
	if s.listens != 1 {
		t.Errorf("the control socket was created %d times, want 1", s.listens)
	}
}

// A new store file at the path is not the one the daemon has open.
func TestStateWatchReplacedStore(t *testing.T) {
	s := newWatchedState(t)
	store := filepath.Join(s.dir, "state.db")
	if err := os.Rename(store, store+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store, []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if problem := s.checkAndReport(); !strings.Contains(problem, "deleted or replaced") {
		t.Errorf("check after the replacement = %q, want the lost store", problem)
	}
	if s.listens != 0 {
		t.Errorf("the control socket was recreated %d times though it was not removed", s.listens)
	}
}

// A folder that rejects writes is reported, and its recovery too.
func TestStateWatchUnwritableFolder(t *testing.T) {
	s := newWatchedState(t)
	// A folder in place of the probe file makes its creation fail, as a
	// read-only folder would for a user that is not root.
	probe := filepath.Join(s.dir, stateProbeFile)
	if err := os.Mkdir(probe, 0o700); err != nil {
		t.Fatal(err)
	}
	if problem := s.checkAndReport(); !strings.Contains(problem, "does not accept writes") {
		t.Errorf("check with a failing probe = %q, want the write problem", problem)
	}
	if err := os.Remove(probe); err != nil {
		t.Fatal(err)
	}
	if problem := s.checkAndReport(); problem != "" {
		t.Errorf("check after the folder works again = %q, want none", problem)
	}
	if len(s.alerts) != 2 || s.alerts[0].Event != alerts.EventFailed || s.alerts[1].Event != alerts.EventRecovered {
		t.Errorf("alerts = %+v, want failed then recovered", s.alerts)
	}
	if len(s.shown) != 2 || s.shown[1] != "" {
		t.Errorf("status got %q, want the problem, then none", s.shown)
	}
}

// A deleted socket is recreated once, and the folder stays healthy.
func TestStateWatchDeletedSocket(t *testing.T) {
	s := newWatchedState(t)
	if err := os.Remove(s.watch.socket); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if problem := s.checkAndReport(); problem != "" {
			t.Errorf("check after the socket was deleted = %q, want no problem", problem)
		}
	}
	if s.listens != 1 {
		t.Errorf("the control socket was created %d times, want 1", s.listens)
	}
	checkConnects(t, s.watch.socket)
	if n := strings.Count(s.log.String(), "recreated it"); n != 1 {
		t.Errorf("logged the recreation %d times, want 1:\n%s", n, s.log.String())
	}
}

// A socket file left in place of the daemon's, with nothing listening on
// it, is replaced by a new listener.
func TestStateWatchReplacedSocket(t *testing.T) {
	s := newWatchedState(t)
	if err := os.Remove(s.watch.socket); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.watch.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	s.checkAndReport()
	if s.listens != 1 {
		t.Errorf("the control socket was created %d times, want 1", s.listens)
	}
	checkConnects(t, s.watch.socket)
}

// A socket that another process serves at the path is left to it, and
// the conflict is logged once.
func TestStateWatchSocketServedByOther(t *testing.T) {
	s := newWatchedState(t)
	if err := os.Remove(s.watch.socket); err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.watch.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			conn, err := other.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	s.checkAndReport()
	s.checkAndReport()
	if s.listens != 0 {
		t.Errorf("the control socket was taken over %d times, want 0", s.listens)
	}
	if n := strings.Count(s.log.String(), "another process listens"); n != 1 {
		t.Errorf("logged the conflict %d times, want 1:\n%s", n, s.log.String())
	}
}

func checkConnects(t *testing.T, socket string) {
	t.Helper()
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Errorf("connect to the recreated socket: %v", err)
		return
	}
	conn.Close()
}

// A folder that worked at the last probe is probed again only after
// stateProbeInterval.
func TestStateWatchProbesEveryInterval(t *testing.T) {
	s := newWatchedState(t)
	if problem := s.checkAndReport(); problem != "" {
		t.Fatalf("first check = %q, want none", problem)
	}
	probe := filepath.Join(s.dir, stateProbeFile)
	if err := os.Mkdir(probe, 0o700); err != nil {
		t.Fatal(err)
	}
	if problem := s.checkAndReport(); problem != "" {
		t.Errorf("check right after a good probe = %q, want none, since it does not probe", problem)
	}
	s.watch.probed = s.watch.probed.Add(-stateProbeInterval)
	if problem := s.checkAndReport(); !strings.Contains(problem, "does not accept writes") {
		t.Errorf("check once the interval passed = %q, want the write problem", problem)
	}
}

func TestPrepareStateDirAllowsOwnGroupWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, os.Geteuid(), os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	if err := PrepareStateDir(dir); err != nil {
		t.Errorf("PrepareStateDir of a folder its own group may write: got %v, want nil", err)
	}
	if err := os.Chmod(dir, 0o772); err != nil {
		t.Fatal(err)
	}
	if err := PrepareStateDir(dir); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("PrepareStateDir of a folder others may write: got %v, want an error", err)
	}
}

// TestStateWatchReportsStoreWriteError checks that a store whose writes
// fail is reported although the probe file can still be written, and
// that the report clears once its writes succeed.
func TestStateWatchReportsStoreWriteError(t *testing.T) {
	s := newWatchedState(t)
	var storeErr error
	s.watch.storeError = func() error { return storeErr }
	storeErr = errors.New("commit state store: no space left on device")

	problem := s.checkAndReport()
	if !strings.Contains(problem, "no space left on device") {
		t.Errorf("check with failing store writes = %q, want the store's error", problem)
	}
	if len(s.alerts) != 1 || s.alerts[0].Event != alerts.EventFailed {
		t.Errorf("alerts %+v, want one failed alert", s.alerts)
	}

	storeErr = nil
	if problem := s.checkAndReport(); problem != "" {
		t.Errorf("check once store writes succeed = %q, want no problem", problem)
	}
	if len(s.alerts) != 2 || s.alerts[1].Event != alerts.EventRecovered {
		t.Errorf("alerts %+v, want failed then recovered", s.alerts)
	}
}
