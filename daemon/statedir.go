package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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

// stateProbeFile is written and removed in the state folder by each check.
const stateProbeFile = ".write-check"

// fileID is a file's identity: its device and inode.
type fileID struct{ dev, ino uint64 }

func statID(path string) (fileID, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("stat %s: no inode", path)
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// stateWatch notices a state folder that was deleted, a store file that
// was replaced, and a folder that stopped accepting writes (read-only or
// full), and reports each in status, /healthz, the log and one alert.
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
	storeID            fileID
	log                *slog.Logger
	// listen creates the control socket anew.
	listen func() (*control.Server, error)
	// show puts a problem in status, "" when there is none.
	show func(problem string)
	// notify sends an alert.
	notify func(alerts.Alert)

	// lost is set once the store file is gone from its path.
	lost bool
	// problem is the reported problem, "" when none is.
	problem string
	// socketServer serves the recreated control socket; nil until then.
	socketServer *control.Server
	serveDone    chan struct{}
}

func newStateWatch(cfg *config.Config, log *slog.Logger) (*stateWatch, error) {
	store := StorePath(cfg)
	id, err := statID(store)
	if err != nil {
		return nil, fmt.Errorf("watch state store: %w", err)
	}
	return &stateWatch{dir: cfg.Runner.StateDir, store: store, socket: cfg.Runner.Socket,
		storeID: id, log: log}, nil
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
}

// addStateWatch adds the actor that checks the state folder every
// stateCheckInterval.
func addStateWatch(group *run.Group, cfg *config.Config, h *handler, log *slog.Logger) {
	w, err := newStateWatch(cfg, log)
	if err != nil {
		log.Error("state folder is not watched", "err", err)
		return
	}
	w.connect(h)
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		ticker := time.NewTicker(stateCheckInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				w.close()
				return nil
			case <-ticker.C:
				w.report(w.check())
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
		w.restore()
		return fmt.Sprintf("state store %s was deleted or replaced: runs go to the deleted file and are lost at exit; restart the daemon to start a new store", w.store)
	}
	if err := probeWrite(w.dir); err != nil {
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

// restore recreates the state folder and, when its file is gone, the
// control socket.
func (w *stateWatch) restore() {
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		w.log.Debug("recreate state folder failed", "state_dir", w.dir, "err", err)
		return
	}
	if _, err := os.Lstat(w.socket); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	w.close()
	srv, err := w.listen()
	if err != nil {
		w.log.Error("recreate control socket failed", "socket", w.socket, "err", err)
		return
	}
	w.log.Warn("recreated the control socket", "socket", w.socket)
	w.socketServer, w.serveDone = srv, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		_ = srv.Serve()
	}(w.serveDone)
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
