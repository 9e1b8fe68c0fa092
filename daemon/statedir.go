package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/alerts"
	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
)

// stateCheckInterval is how often the daemon checks that its state folder
// still contains the store it has open and accepts writes.
const stateCheckInterval = 5 * time.Second

// stateProbeFile is written and removed in the state folder by a check.
const stateProbeFile = ".write-check"

// stateProbeInterval is how often a check also writes the probe file.
// Each write changes the folder, which the file system's journal then
// commits to disk, so an idle daemon probes less often than it checks.
// After a failed probe, every check probes until one succeeds.
const stateProbeInterval = 30 * time.Second

// fileID is a file's identity: its device and inode.
type fileID struct{ dev, ino uint64 }

// statID returns the identity of the file at path, following links.
func statID(path string) (fileID, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	return infoID(path, info)
}

// lstatID is statID of a link itself, for the control socket, which the
// daemon creates and which is never a link.
func lstatID(path string) (fileID, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return fileID{}, err
	}
	return infoID(path, info)
}

// infoID returns the identity in info, which os.Stat or os.Lstat of path
// returned.
func infoID(path string, info os.FileInfo) (fileID, error) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no inode", path)
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// stateWatch notices a state folder that was deleted, a store file that
// was replaced, and a folder that stopped accepting writes (read-only or
// full), and reports each in status, /healthz, the log and one alert. It
// also recreates the control socket when its file is deleted or replaced,
// alone or with the folder, since the CLI finds the daemon only there.
//
// A lost store file cannot come back under a running daemon: bbolt keeps
// writing to the deleted file, whose runs and slot positions vanish at
// exit. The watcher recreates the folder and the control socket, so the
// CLI reaches this daemon instead of running jobs beside it on a second
// store, and keeps the daemon and its running jobs going. The problem
// stays reported until a restart opens a new store. A folder that only
// stopped accepting writes recovers by itself once it accepts them again.
type stateWatch struct {
	dir, store, socket string
	// group is socket_group, "" when none is set.
	group   string
	storeID fileID
	// socketID is the control socket this daemon listens on; the zero
	// fileID when its file could not be read at start.
	socketID fileID
	log      *slog.Logger
	// listen creates the control socket anew.
	listen func() (*control.Server, error)
	// show puts a problem in status, "" when there is none.
	show func(problem string)
	// notify sends an alert.
	notify func(alerts.Alert)
	// storeError returns the error of the store's last failed write, or
	// nil once a write succeeds. It is nil itself without a store.
	storeError func() error

	// lost is set once the store file is gone from its path.
	lost bool
	// probed is when the probe file was last written, and writeFailed
	// whether that write failed.
	probed      time.Time
	writeFailed bool
	// problem is the reported problem, "" when none is.
	problem string
	// socketServer serves the recreated control socket; nil until then.
	socketServer *control.Server
	serveDone    chan struct{}
	// socketFailed is set while recreating the control socket fails, so
	// that the failure is logged once.
	socketFailed bool
}

func newStateWatch(cfg *config.Config, log *slog.Logger) (*stateWatch, error) {
	store := StorePath(cfg)
	id, err := statID(store)
	if err != nil {
		return nil, fmt.Errorf("watch state store: %w", err)
	}
	// An unreadable socket leaves the zero ID, so the first check
	// recreates it.
	socketID, _ := lstatID(cfg.Runner.Socket)
	return &stateWatch{dir: cfg.Runner.StateDir, store: store, socket: cfg.Runner.Socket,
		group: cfg.Runner.SocketGroup, storeID: id, socketID: socketID, log: log}, nil
}

// connect makes w report through h: its status, its alert dispatcher and
// its control socket.
func (w *stateWatch) connect(h *handler) {
	w.listen = func() (*control.Server, error) {
		return control.Listen(w.socket, h.config().Runner.SocketGroup, h, w.log)
	}
	w.show = func(problem string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.info.StateError, h.info.StateErrorAt = problem, time.Time{}
		if problem != "" {
			h.info.StateErrorAt = time.Now().UTC()
		}
	}
	w.notify = func(a alerts.Alert) {
		if h.alerts != nil {
			h.alerts.Notify(a)
		}
	}
	if h.store != nil {
		w.storeError = h.store.WriteError
	}
}

// addStateWatch adds the actor that checks the state folder every
// stateCheckInterval. For the daemon's whole run it also holds the
// abstract socket name that shows a CLI that a daemon serves the control
// socket even while the socket file is missing.
func addStateWatch(group *run.Group, cfg *config.Config, h *handler, log *slog.Logger) {
	mark, err := control.MarkAlive(cfg.Runner.Socket)
	if err != nil {
		log.Warn("a CLI cannot tell that this daemon runs while its control socket is missing", "err", err)
	}
	w, err := newStateWatch(cfg, log)
	if err != nil {
		log.Error("state folder is not watched", "err", err)
	} else {
		w.connect(h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		defer mark.Close()
		ticker := time.NewTicker(stateCheckInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				if w != nil {
					w.close()
				}
				return nil
			case <-ticker.C:
				if w != nil {
					w.report(w.check())
				}
			}
		}
	}, func(error) { cancel() })
}

// check returns the state folder's problem, or "" when there is none.
func (w *stateWatch) check() string {
	if !w.lost {
		id, err := statID(w.store)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			w.lost = true
		case err != nil:
			return fmt.Sprintf("cannot check the state store %s: %v", w.store, err)
		case id != w.storeID:
			w.lost = true
		}
	}
	if w.lost {
		w.restoreDir()
	}
	w.checkSocket()
	if w.lost {
		return fmt.Sprintf("state store %s was deleted or replaced: runs go to the deleted file and are lost at exit; restart the daemon to start a new store", w.store)
	}
	// The store's own writes show a full or read-only file system at the
	// first claim or commit, before the next probe, and also when a probe
	// of a few bytes still fits but the store cannot grow.
	if w.storeError != nil {
		if err := w.storeError(); err != nil {
			return fmt.Sprintf("state store %s does not accept writes, so runs may not start or be recorded: %v", w.store, err)
		}
	}
	if !w.writeFailed && time.Since(w.probed) < stateProbeInterval {
		return ""
	}
	w.probed = time.Now()
	err := probeWrite(w.dir)
	w.writeFailed = err != nil
	if err != nil {
		return fmt.Sprintf("state folder %s does not accept writes, so runs cannot be recorded: %v", w.dir, err)
	}
	return ""
}

// probeWrite creates, writes and removes a small file in dir, which fails
// when dir is read-only or its file system is full.
func probeWrite(dir string) error {
	path := filepath.Join(dir, stateProbeFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 512))
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if removeErr := os.Remove(path); err == nil {
		err = removeErr
	}
	return err
}

// restoreDir recreates the state folder when it is missing.
func (w *stateWatch) restoreDir() {
	if _, err := os.Stat(w.dir); err == nil {
		return
	}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		w.log.Debug("recreate state folder failed", "state_dir", w.dir, "err", err)
		return
	}
	if err := shareStateDir(w.dir, w.socket, w.group); err != nil {
		w.log.Error("share recreated state folder with socket_group failed", "state_dir", w.dir, "err", err)
	}
}

// shareStateDir gives the state folder to socket_group with mode 0750
// when the control socket is in it, because the group's members cannot
// reach the socket through a 0700 folder. Everything inside the folder
// stays private to the daemon's user: the store and lock files are 0600
// and the job folders 0700.
func shareStateDir(dir, socket, group string) error {
	if group == "" || filepath.Dir(socket) != filepath.Clean(dir) {
		return nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return fmt.Errorf("look up socket_group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("look up socket_group: invalid gid %q", g.Gid)
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return fmt.Errorf("set state folder group for socket_group: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return fmt.Errorf("set state folder mode for socket_group: %w", err)
	}
	return nil
}

// checkSocket recreates the control socket when its file is gone or is
// not the socket this daemon listens on. A socket that another process
// serves is left alone, so that two daemons given one socket path do not
// take it from each other every check.
func (w *stateWatch) checkSocket() {
	id, err := lstatID(w.socket)
	switch {
	case err == nil && id == w.socketID:
		w.socketFailed = false
		return
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		w.socketError(fmt.Errorf("inspect control socket: %w", err))
		return
	case err == nil && socketServed(w.socket):
		w.socketError(errors.New("another process listens on the control socket path: give each daemon its own socket"))
		return
	}
	w.close()
	srv, err := w.listen()
	if err != nil {
		w.socketError(err)
		return
	}
	w.socketID, _ = lstatID(w.socket)
	w.socketFailed = false
	w.log.Warn("control socket was deleted or replaced; recreated it", "socket", w.socket)
	w.socketServer, w.serveDone = srv, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = srv.Serve()
	}(w.serveDone)
}

// socketError logs the first of a run of failures to restore the socket.
func (w *stateWatch) socketError(err error) {
	if !w.socketFailed {
		w.log.Error("recreate control socket failed", "socket", w.socket, "err", err)
	}
	w.socketFailed = true
}

// socketServed reports whether a process accepts connections on the unix
// socket at path.
func socketServed(path string) bool {
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// close stops serving the recreated control socket.
func (w *stateWatch) close() {
	if w.socketServer == nil {
		return
	}
	_ = w.socketServer.Close()
	<-w.serveDone
	w.socketServer = nil
}

// report logs, shows in status and alerts a change of problem.
func (w *stateWatch) report(problem string) {
	if problem == w.problem {
		return
	}
	w.problem = problem
	w.show(problem)

	a := alerts.Alert{Kind: alerts.KindDaemon, Name: "state_dir", Event: alerts.EventFailed, Summary: problem}
	if problem == "" {
		w.log.Info("state folder works again", "state_dir", w.dir)
		a.Event, a.Summary = alerts.EventRecovered, "state folder "+w.dir+" accepts writes again"
	} else {
		w.log.Error("state folder problem", "state_dir", w.dir, "err", problem)
	}
	w.notify(a)
}
