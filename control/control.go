// Package control is the protocol between the agent-runner CLI and the
// daemon: newline-delimited JSON over a unix socket. A client sends one
// Request and reads Messages until one carries a final Run, Status or Error.
package control

import (
	"time"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

// Operations a Request may ask for.
const (
	OpRunJob = "run-job"
	OpStatus = "status"
	OpSend   = "send"
	OpReload = "reload"
	OpRuns   = "runs"
	// OpReset moves the stored position of Job, or with Ahead of every
	// job whose position is ahead of the clock, back to the clock.
	OpReset = "reset"
	// OpRecordRun hands the daemon the final record of a run that a CLI
	// ran while no daemon held the store.
	OpRecordRun = "record-run"
)

// Error codes of a Message, so the CLI can choose its exit status without
// parsing text.
const (
	CodeUnknownJob = "unknown-job"
	CodeSendFailed = "send-failed"
	CodeReload     = "reload-failed"
	CodeBusy       = "busy"
	CodeStopping   = "stopping"
	CodeDenied     = "denied"
	// CodeTooManyClients means the daemon already serves its maximum of
	// control connections and closed this one.
	CodeTooManyClients = "too-many-clients"
	CodeBadRequest     = "bad-request"
	CodeInternal       = "internal"
)

// maxRequestBytes bounds one request line.
const maxRequestBytes = 64 << 10

// Request is the one message a client sends.
type Request struct {
	Op   string `json:"op"`
	Job  string `json:"job,omitempty"`
	Wait bool   `json:"wait,omitempty"`
	// Listener, Target and Text are the fields of a send request.
	Listener string `json:"listener,omitempty"`
	Target   string `json:"target,omitempty"`
	Text     string `json:"text,omitempty"`
	// Limit and RunID are the fields of a runs request: the newest Limit
	// runs of Job, or only the run RunID.
	Limit int    `json:"limit,omitempty"`
	RunID string `json:"run_id,omitempty"`
	// Run is the final record of a record-run request.
	Run *state.Run `json:"run,omitempty"`
	// Force and Ahead are the fields of a reset request: Force resets
	// Job's position even when it is not ahead, and Ahead, with no Job,
	// resets every job whose position is ahead.
	Force bool `json:"force,omitempty"`
	Ahead bool `json:"ahead,omitempty"`
}

// WaitForRun is the WaitFor of a run that waits for a running run of its
// job to end.
const WaitForRun = "run"

// Message is one line the daemon sends back. Exactly one field is set,
// except WaitFor, which may come with Waiting.
type Message struct {
	Line *jobs.Line `json:"line,omitempty"`
	// Started says the daemon claimed the run and starts it now.
	Started *state.Run `json:"started,omitempty"`
	// Waiting reports that the run waits: for a free place under
	// max_concurrent, or with WaitFor set to WaitForRun, for a running
	// run of its job to end.
	Waiting bool       `json:"waiting,omitempty"`
	WaitFor string     `json:"wait_for,omitempty"`
	Run     *state.Run `json:"run,omitempty"`
	// OutputDropped counts the output lines of Run that the client read
	// too slowly to receive.
	OutputDropped int     `json:"output_dropped,omitempty"`
	Status        *Status `json:"status,omitempty"`
	// Sent confirms a send request.
	Sent *Sent `json:"sent,omitempty"`
	// Runs answers a runs request, newest first.
	Runs []state.Run `json:"runs,omitempty"`
	// Reloaded describes what a reload changed.
	Reloaded string `json:"reloaded,omitempty"`
	// Reset is the reply to a reset request.
	Reset *ResetReply   `json:"reset,omitempty"`
	Error *ErrorMessage `json:"error,omitempty"`
}

// Status is every job's and listener's state, as list and status show it.
type Status struct {
	// Daemon is nil when no daemon runs and the CLI read the store.
	Daemon    *DaemonInfo        `json:"daemon,omitempty"`
	Jobs      []jobs.JobStatus   `json:"jobs"`
	Listeners []listeners.Health `json:"listeners"`
	// Cluster is set when the daemon runs with [cluster].
	Cluster *ClusterStatus `json:"cluster,omitempty"`
}

// DaemonInfo describes the running daemon and the config it loaded.
type DaemonInfo struct {
	Version    string    `json:"version"`
	StartedAt  time.Time `json:"started_at"`
	Config     string    `json:"config"`
	ConfigHash string    `json:"config_hash"`
	LoadedAt   time.Time `json:"loaded_at"`
	// ReloadError is why the last reload was rejected, or "" when it
	// succeeded or none was tried.
	ReloadError    string    `json:"reload_error,omitempty"`
	ReloadFailedAt time.Time `json:"reload_failed_at,omitzero"`
	// StateError is the reason the state folder cannot keep the daemon's
	// state, such as a deleted store or a full disk, or "" when it works.
	StateError   string    `json:"state_error,omitempty"`
	StateErrorAt time.Time `json:"state_error_at,omitzero"`
}

// ResetReply lists what a reset request did to each job it names, or,
// with Ahead, to each job that was ahead.
type ResetReply struct {
	Results []jobs.ResetResult `json:"results"`
}

// Sent confirms which listener posted a send request.
type Sent struct {
	Listener string `json:"listener"`
}

// ErrorMessage is a failed request.
type ErrorMessage struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *ErrorMessage) Error() string { return e.Message }

// Is matches the jobs error that the code represents, so that a
// client handles a busy job the same whether or not a daemon ran it.
func (e *ErrorMessage) Is(target error) bool {
	switch e.Code {
	case CodeBusy:
		return target == jobs.ErrBusy
	case CodeUnknownJob:
		return target == jobs.ErrUnknownJob
	case CodeStopping:
		return target == jobs.ErrStopping
	}
	return false
}
