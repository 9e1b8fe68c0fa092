package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// memoryVersion is the format version of the memory file.
const memoryVersion = 1

// memorySaveDelay is how long a change waits before the memory file is
// written, so that a storm of alerts costs one write a second, not one
// per alert. A crash loses at most the changes of that second, unless the
// write failed. The next change or Flush then tries it again.
const memorySaveDelay = time.Second

// tmpSuffix follows the name of the memory file in the name of the
// temporary file that a write renames over it.
const tmpSuffix = ".tmp-"

// maxMemoryBytes caps the memory file that is read at start.
const maxMemoryBytes = 16 << 20

// Memory is a file that keeps each sink's deduplication state across
// restarts. A daemon restarted by systemd, an upgrade or a crash then
// sends no alert again within its cooldown, and still sends the recovery
// of a failure that it alerted before the restart.
type Memory struct {
	path string
	log  *slog.Logger

	mu sync.Mutex
	// sinks maps a sink name to its keys' saved state.
	sinks map[string]map[string]savedKey
	// timer writes the file memorySaveDelay after the first unsaved change.
	timer *time.Timer
	// unsaved is set while a write of the file failed, so that the next
	// Flush, such as the one at the end of Run, tries again.
	unsaved bool
}

// memoryFile is the JSON form of the memory file.
type memoryFile struct {
	Version int                            `json:"version"`
	Sinks   map[string]map[string]savedKey `json:"sinks"`
}

// savedKey is the saved form of a keyState.
type savedKey struct {
	Alerted bool                  `json:"alerted,omitempty"`
	Events  map[string]savedEvent `json:"events,omitempty"`
}

// savedEvent is the saved form of an eventState.
type savedEvent struct {
	LastSent   time.Time `json:"last_sent,omitzero"`
	Suppressed int       `json:"suppressed,omitempty"`
}

// OpenMemory reads the memory file at path. A missing file is an empty
// memory. A file that cannot be read or decoded is logged, and the
// memory starts empty and replaces the file at its first change, so a
// damaged file costs repeated alerts, never a failed start.
func OpenMemory(path string, log *slog.Logger) *Memory {
	m := &Memory{path: path, log: log, sinks: map[string]map[string]savedKey{}}
	// A crash during a write leaves its temporary file behind.
	leftovers, _ := filepath.Glob(path + tmpSuffix + "*")
	for _, leftover := range leftovers {
		_ = os.Remove(leftover)
	}
	file, err := readMemoryFile(path)
	if err != nil {
		log.Error("read alert memory failed; starting without it, so recent alerts may repeat once",
			"path", path, "err", err)
		return m
	}
	if file.Sinks != nil {
		m.sinks = file.Sinks
	}
	return m
}

// readMemoryFile reads and decodes the memory file, which may be missing.
func readMemoryFile(path string) (memoryFile, error) {
	var file memoryFile
	data, err := config.ReadRegularFile(path, maxMemoryBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return file, nil
	}
	if err != nil {
		return file, err
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return memoryFile{}, fmt.Errorf("decode %s: %w", path, err)
	}
	if file.Version != memoryVersion {
		return memoryFile{}, fmt.Errorf("unsupported version %d in %s: this release reads version %d", file.Version, path, memoryVersion)
	}
	return file, nil
}

// keys returns the saved state of sink's keys.
func (m *Memory) keys(sink string) map[string]*keyState {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make(map[string]*keyState, len(m.sinks[sink]))
	for key, saved := range m.sinks[sink] {
		state := &keyState{alerted: saved.Alerted, events: make(map[string]*eventState, len(saved.Events))}
		for event, e := range saved.Events {
			state.events[event] = &eventState{lastSent: e.LastSent, suppressed: e.Suppressed}
		}
		keys[key] = state
	}
	return keys
}

// Alerted returns the keys for which some sink delivered a failure alert
// that no recovery has ended yet.
func (m *Memory) Alerted() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	alerted := map[string]bool{}
	for _, keys := range m.sinks {
		for key, saved := range keys {
			if saved.Alerted {
				alerted[key] = true
			}
		}
	}
	return alerted
}

// retain drops the state of every sink not named in sinks, and schedules
// a write of the file when that changed it.
func (m *Memory) retain(sinks []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.sinks {
		if !slices.Contains(sinks, name) {
			delete(m.sinks, name)
			m.scheduleLocked()
		}
	}
}

// Forget drops the state of every key, in every sink, that keep rejects,
// such as the keys of jobs and listeners no longer configured, and
// schedules a write of the file when that changed it. Call it before
// Dispatcher.Remember, which hands the state to the sinks.
func (m *Memory) Forget(keep func(key string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, keys := range m.sinks {
		for key := range keys {
			if !keep(key) {
				delete(keys, key)
				m.scheduleLocked()
			}
		}
	}
}

// scheduleLocked starts the timer that writes the file, unless it is
// already running. The caller holds m.mu.
func (m *Memory) scheduleLocked() {
	if m.timer == nil {
		m.timer = time.AfterFunc(memorySaveDelay, m.Flush)
	}
}

// update records sink's state of key, nil once the key is cleared, and
// schedules a write of the file.
func (m *Memory) update(sink, key string, state *keyState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := m.sinks[sink]
	if keys == nil {
		keys = map[string]savedKey{}
		m.sinks[sink] = keys
	}
	if state == nil {
		delete(keys, key)
	} else {
		saved := savedKey{Alerted: state.alerted, Events: make(map[string]savedEvent, len(state.events))}
		for event, e := range state.events {
			saved.Events[event] = savedEvent{LastSent: e.lastSent, Suppressed: e.suppressed}
		}
		keys[key] = saved
	}
	m.scheduleLocked()
}

// Flush writes the file now if a change is waiting for its write, or a
// write of it failed.
func (m *Memory) Flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer == nil && !m.unsaved {
		return
	}
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	sinks := maps.Clone(m.sinks)
	for name, keys := range sinks {
		if len(keys) == 0 {
			delete(sinks, name)
		}
	}
	data, err := json.Marshal(memoryFile{Version: memoryVersion, Sinks: sinks})
	if err == nil {
		err = writeFileAtomic(m.path, data)
	}
	m.unsaved = err != nil
	if err != nil {
		m.log.Error("write alert memory failed; a restart may repeat recent alerts", "path", m.path, "err", err)
	}
}

// writeFileAtomic replaces the file at path with data, through a
// temporary file that is synced and renamed, so a crash leaves either
// the old file or the new one.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+tmpSuffix+"*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
