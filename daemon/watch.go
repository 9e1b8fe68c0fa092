package daemon

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/oklog/run"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
)

// loadSignal is the notice to the reloader that a reload loaded a
// config, which may have switched watch on or off. A reload through the
// control socket bypasses the reloader, which learns of it here. The
// zero value is ready to use.
type loadSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (s *loadSignal) channel() chan struct{} {
	s.once.Do(func() { s.ch = make(chan struct{}, 1) })
	return s.ch
}

// loaded records a load. Loads not yet received merge into one.
func (s *loadSignal) loaded() {
	select {
	case s.channel() <- struct{}{}:
	default:
	}
}

// loads receives after each load.
func (s *loadSignal) loads() <-chan struct{} { return s.channel() }

// watchState is what watch = true remembers between checks. Its owner's
// mutex guards it.
type watchState struct {
	// rejectedHash is the content of the files that watch last reloaded
	// without loading them since, so that a file that stays invalid is
	// not reloaded every interval.
	rejectedHash string
	// pendingHash is new content seen at the last check. It is loaded
	// only when the next check finds it again, because a file that is
	// being written in place, such as by `render > config.toml`, is
	// empty or cut short until the writer finishes. An empty main file
	// loads as a valid config with no jobs and watch off, so loading
	// it would stop every job and every later reload by watch.
	pendingHash string
}

// watchVerdict is the outcome of one watch check.
type watchVerdict int

const (
	watchSame watchVerdict = iota
	// watchChanged calls for a reload: the files changed and stayed the
	// same since the last check.
	watchChanged
	// watchReverted means the files match the loaded config again after
	// a reload of other content was rejected, so the reload error no
	// longer describes them. A rejection of the loaded content itself,
	// such as for a missing socket_group, stays.
	watchReverted
)

// compare judges hash, the fingerprint of the config files, against the
// loaded config in info and the last rejected content, and updates both.
func (w *watchState) compare(hash string, info *control.DaemonInfo) watchVerdict {
	switch {
	case hash == info.ConfigHash && info.ReloadError != "" && w.rejectedHash != "" && w.rejectedHash != hash:
		info.ReloadError = ""
		w.rejectedHash, w.pendingHash = "", ""
		return watchReverted
	case hash == info.ConfigHash || hash == w.rejectedHash:
		w.pendingHash = ""
		return watchSame
	case hash != w.pendingHash:
		w.pendingHash = hash
		return watchSame
	}
	w.pendingHash = ""
	// The reload that follows clears this when it loads the files.
	w.rejectedHash = hash
	return watchChanged
}

// unsettled records that a watch reload read other content than the
// fingerprint that two checks saw, because a writer changed the files in
// between. What it read waits for the next check like any new content,
// and the fingerprint seen is no longer taken as rejected.
func (w *watchState) unsettled(read string) { w.rejectedHash, w.pendingHash = "", read }

// changedDuringRead returns the fingerprint of what a watch reload read
// and whether it differs from seen, the fingerprint that two checks saw.
// A loaded config has the hash of what it read. For a failed load the
// fingerprint of the files as they are now is used. A reload by hand
// passes "" as seen and loads whatever it reads.
//
// NOTE: a writer that rewrites the same content in place during the read
// and finishes before the fingerprint here makes a failed load look like
// a rejection of seen, which is then loaded only after the next change.
func changedDuringRead(seen string, next *config.Config, loadErr error, path string) (string, bool) {
	if seen == "" {
		return "", false
	}
	if loadErr == nil {
		return next.Hash, next.Hash != seen
	}
	read := filesFingerprint(path)
	return read, read != seen
}

// reloaded clears the rejected content once a reload loaded a config.
func (w *watchState) reloaded() { w.rejectedHash = "" }

// rejected records hash as the content of a rejected reload.
func (w *watchState) rejected(hash string) { w.rejectedHash = hash }

// filesFingerprint returns the fingerprint of the config files at path,
// or, when the main file cannot be read, a text with the read error that
// matches no hash. A deleted, unreadable or replaced main file then counts
// as a change, so watch reloads it once and the reload logs the error and
// shows it in status. The same error again is no change, and a file that
// matches the running config again clears the error.
func filesFingerprint(path string) string {
	hash, err := config.Fingerprint(path)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	return hash
}

// errStopping rejects a reload that arrives after the daemon began to
// stop. The control socket and the reloader still run while the daemon
// waits for its jobs, and a reload then would report jobs and listeners
// as added that never start.
var errStopping = errors.New("the daemon is stopping, so the config is not reloaded")

// stopMark records that the daemon began to stop. The zero value is
// ready to use.
type stopMark struct{ set atomic.Bool }

func (m *stopMark) stopping() bool { return m.set.Load() }

// addStopMark adds an actor whose interrupt sets mark. Add it first, so
// that the mark is set before any other actor begins to stop.
func addStopMark(group *run.Group, mark *stopMark) {
	ctx, cancel := context.WithCancel(context.Background())
	group.Add(func() error {
		<-ctx.Done()
		return nil
	}, func(error) {
		mark.set.Store(true)
		cancel()
	})
}

// loadConfig is config.Load, which tests replace to change the files
// during a reload's read.
var loadConfig = config.Load
