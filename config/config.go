// Package config loads and validates config.toml, which declares
// scheduled jobs and persistent listeners. Decoding is strict:
// unknown keys, bad durations, bad cron expressions and unknown time zones
// are reported with the file, line, key and the fix, all at once.
package config

import (
	"time"
)

// Config is a loaded and validated configuration file.
type Config struct {
	// Path is the absolute path of the main config file.
	Path string
	// Dir is the folder of Path. Relative paths in the main file and in
	// the files it includes resolve here.
	Dir string
	// Files lists the absolute path of every file loaded: Path first, then
	// the included files in load order.
	Files []string
	// Hash identifies the content of Files in hex, so status can show
	// which version is loaded. Without includes it is the SHA-256 of the
	// main file's bytes.
	Hash   string
	Runner Runner
	// Jobs is sorted by name.
	Jobs []*Job
	// Listeners is sorted by name.
	Listeners []*Listener
	// Alerts are the sinks failures are reported to, sorted by name.
	Alerts []*Alert
	// Cluster is the [cluster] table, or nil when this node runs alone.
	Cluster *Cluster
	// Warnings lists the findings in a valid file that check and doctor
	// report without failing, such as a secret too short to redact, in
	// file order.
	Warnings []Problem
}

// Runner holds the [runner] table with defaults applied.
type Runner struct {
	// StateDir is absolute; it defaults to "state" beside the config file.
	StateDir string
	// Socket is the absolute path of the control socket; it defaults to
	// control.sock in StateDir.
	Socket string
	// SocketGroup is a group name that may use the control socket, or "".
	SocketGroup string
	// Location is the default time zone of schedules; it defaults to UTC.
	Location *time.Location
	// Path is the PATH every child gets, as a list of folders.
	Path []string
	// ShutdownTimeout bounds how long a stop waits for running jobs.
	ShutdownTimeout time.Duration
	// KillGrace is how long a job's process group has between SIGTERM and
	// SIGKILL.
	KillGrace time.Duration
	// HistoryLimit is how many run records the store keeps per job.
	HistoryLimit int
	// Watch reloads the config when its file changes.
	Watch bool
	// HTTP is the address of the health server (/healthz, /metrics and
	// the status page), or "" when it is off.
	HTTP string
	// MaxConcurrent caps runs at once across all jobs; 0 means no cap.
	// Runs over the cap wait in slot order.
	MaxConcurrent int
	// CatchUpSpread spreads the catch-up runs at start over this long, so
	// a boot does not start every job at once.
	CatchUpSpread time.Duration
}

// Catch-up policies.
const (
	CatchUpOnce = "once"
	CatchUpSkip = "skip"
)

// Job is one [jobs.NAME] table with [defaults] applied.
type Job struct {
	Name        string
	Description string
	// Command is the argv of the child; no shell is involved. It is nil
	// for a post job.
	Command []string
	// Post is set for a job that posts through a listener instead of
	// running Command.
	Post *Post
	// Cron is the cron expression as written, or "".
	Cron string
	// Calendar holds systemd calendar expressions (on_calendar); the job
	// fires at the union of their instants.
	Calendar []string
	// Every is the fixed interval between slots, or 0 when Cron is set.
	Every time.Duration
	// Location is the time zone Cron is evaluated in.
	Location *time.Location
	// WorkingDir is absolute.
	WorkingDir string
	// Env holds the job's own variables; secret references are resolved.
	Env map[string]Secret
	// EnvFile is an absolute path of KEY=VALUE lines, or "".
	EnvFile string
	// InheritEnv names variables of the daemon passed through unchanged.
	InheritEnv []string
	// At is the instant of a one-off job, zero otherwise.
	At time.Time
	// Timeout is 0 when the job may run for ever.
	Timeout time.Duration
	// CatchUp is once, skip or all.
	CatchUp string
	// MaxCatchUp caps the runs of catch_up = "all" after one outage.
	MaxCatchUp int
	// CatchUpDeadline drops missed slots older than this; 0 keeps all.
	CatchUpDeadline time.Duration
	// Overlap is skip, queue or replace: what a slot does when it finds
	// the job still running.
	Overlap string
	// Retries is how often a failed run is tried again, each after
	// RetryBackoff doubling, within the job's timeout.
	Retries      int
	RetryBackoff time.Duration
	// RandomizedDelay bounds a fixed per-job delay added to every slot,
	// derived from the job's name so restarts do not change it.
	RandomizedDelay time.Duration
	// OnSuccess and OnFailure name jobs to start when a run of this one
	// ends.
	OnSuccess []string
	OnFailure []string
	Enabled   bool
	// MaxAge marks the job stale when its last successful run, or its
	// first sighting when it never succeeded, is older than this; 0 turns
	// the check off.
	MaxAge time.Duration
	// Heartbeat is a file the job keeps fresh, or nil.
	Heartbeat *Heartbeat
	// ExpectFileUpdated is an absolute path that a run exiting 0 must
	// modify, or "". A run that leaves it alone is recorded as failed.
	ExpectFileUpdated string
	// Identity is the user and groups the child runs as; it is resolved
	// with the other checks against this machine.
	Identity Identity
	// Limits are the umask, nice value and resource limits of the child.
	Limits Limits
	// Line is the line of the job's table header in the file that
	// defines it, Config.Path or an included file.
	Line int
	// Problem is set when the job is valid TOML but cannot run on this
	// machine, for example when its command is not on PATH. The check
	// command fails on it; the daemon marks only this job failed.
	Problem error
}

// Job returns the job called name, or nil when there is none.
func (c *Config) Job(name string) *Job {
	for _, job := range c.Jobs {
		if job.Name == name {
			return job
		}
	}
	return nil
}

// Listener returns the listener called name, or nil when there is none.
func (c *Config) Listener(name string) *Listener {
	for _, listener := range c.Listeners {
		if listener.Name == name {
			return listener
		}
	}
	return nil
}

// Problems returns the Problem of every job and then of every listener
// that cannot run on this machine, each group in name order.
func (c *Config) Problems() []error {
	var problems []error
	for _, job := range c.Jobs {
		if job.Problem != nil {
			problems = append(problems, job.Problem)
		}
	}
	for _, listener := range c.Listeners {
		if listener.Problem != nil {
			problems = append(problems, listener.Problem)
		}
	}
	for _, alert := range c.Alerts {
		if alert.Problem != nil {
			problems = append(problems, alert.Problem)
		}
	}
	return problems
}

// Heartbeat is a job's heartbeat table: a file whose age shows whether
// the job's work still happens.
type Heartbeat struct {
	// File is absolute.
	File string
	// MaxAge is the age at which the heartbeat counts as stale.
	MaxAge time.Duration
	// JSONField names a top-level field of the file holding the time of
	// the last beat, as Unix seconds or an RFC 3339 string. When it is
	// "", the file's modification time is the time of the last beat.
	JSONField string
}
