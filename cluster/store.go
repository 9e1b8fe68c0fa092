package cluster

import (
	"time"

	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

// Store is the state the daemon reads and writes: job positions and
// health, run history and the listeners' key-value spaces. Local is the
// bbolt store of a node that runs alone, and *Etcd the store of a cluster.
// Both follow the contract that state.Store documents.
type Store interface {
	state.Recorder
	Runs(name string, limit int) ([]state.Run, error)
	Run(name, id string) (state.Run, bool, error)
	RecoverInterrupted(now time.Time, busy func(job string) bool) ([]state.Run, error)
	RunningRuns() ([]state.Run, error)
	EnsureJob(name string, now time.Time) (state.JobState, error)
	Job(name string) (state.JobState, bool, error)
	Jobs() ([]state.JobState, error)
	ForgetJob(name string) error
	Listener(name string) listeners.KV
	Close() error
}

var (
	_ Store = Local{}
	_ Store = (*Etcd)(nil)
)

// Local is the bbolt store behind the Store interface.
type Local struct{ *state.Store }

// Listener returns the key-value space of the named listener.
func (l Local) Listener(name string) listeners.KV { return l.Store.Listener(name) }
