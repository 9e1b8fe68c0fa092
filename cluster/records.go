package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/state"
)

// insertRun gives the run the next ID of the cluster-wide sequence,
// stores it and prunes the job's history.
func (s *Etcd) insertRun(t *txn, run state.Run) (state.Run, error) {
	value, _, err := t.get(s.keys.sequence())
	if err != nil {
		return state.Run{}, err
	}
	var seq uint64
	if value != nil {
		if seq, err = strconv.ParseUint(string(value), 10, 64); err != nil {
			return state.Run{}, fmt.Errorf("decode run sequence %q: %w", value, err)
		}
	}
	seq++
	t.put(s.keys.sequence(), []byte(strconv.FormatUint(seq, 10)))
	run.ID = strconv.FormatUint(seq, 10)
	run = runInUTC(run)
	if err := s.putRun(t, run); err != nil {
		return state.Run{}, err
	}
	if run.Result == state.ResultRunning {
		t.put(s.keys.running(run.Job)+runKey(seq), nil)
	}
	return run, s.pruneRuns(t, run.Job, 1, 0)
}

// pruneRuns deletes the oldest runs beyond the history limit, keeping
// running ones at any age as the bbolt store does. added counts runs this
// transaction stores that a listing does not show yet, and finished is a
// run this transaction finishes, which counts as no longer running.
func (s *Etcd) pruneRuns(t *txn, job string, added int, finished uint64) error {
	keys, err := t.list(s.keys.runs(job))
	if err != nil {
		return err
	}
	excess := len(keys) + added - s.historyLimit
	if excess <= 0 {
		return nil
	}
	running, err := s.runningSeqs(t, job)
	if err != nil {
		return err
	}
	skip := make(map[string]bool, len(running))
	for _, seq := range running {
		skip[runKey(seq)] = seq != finished
	}
	for _, key := range keys {
		if excess == 0 {
			break
		}
		if skip[key[strings.LastIndexByte(key, '/')+1:]] {
			continue
		}
		t.delete(key)
		excess--
	}
	return nil
}

// runningSeqs returns the IDs of the job's runs in the running index.
func (s *Etcd) runningSeqs(t *txn, job string) ([]uint64, error) {
	keys, err := t.list(s.keys.running(job))
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, 0, len(keys))
	for _, key := range keys {
		seq, err := strconv.ParseUint(key[strings.LastIndexByte(key, '/')+1:], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("decode running index key %s: %w", key, err)
		}
		seqs = append(seqs, seq)
	}
	return seqs, nil
}

func (s *Etcd) getRun(t *txn, job string, seq uint64) (state.Run, bool, error) {
	value, ok, err := t.get(s.keys.runs(job) + runKey(seq))
	if err != nil || !ok {
		return state.Run{}, false, err
	}
	run, err := decodeRun(value)
	return run, err == nil, err
}

func (s *Etcd) putRun(t *txn, run state.Run) error {
	seq, err := state.ParseRunID(run.ID)
	if err != nil {
		return err
	}
	value, err := json.Marshal(runInUTC(run))
	if err != nil {
		return fmt.Errorf("encode run %s: %w", run.ID, err)
	}
	t.put(s.keys.runs(run.Job)+runKey(seq), value)
	return nil
}

func (s *Etcd) getJob(t *txn, name string) (state.JobState, bool, error) {
	value, ok, err := t.get(s.keys.job(name))
	if err != nil || !ok {
		return state.JobState{}, false, err
	}
	job, err := decodeJob(name, value)
	return job, err == nil, err
}

// existingJob returns the job's state, or an error wrapping
// state.ErrJobNotFound.
func (s *Etcd) existingJob(t *txn, name string) (state.JobState, error) {
	job, ok, err := s.getJob(t, name)
	if err == nil && !ok {
		err = fmt.Errorf("job %s: %w", name, state.ErrJobNotFound)
	}
	return job, err
}

func (s *Etcd) putJob(t *txn, job state.JobState) error {
	value, err := json.Marshal(jobInUTC(job))
	if err != nil {
		return fmt.Errorf("encode job %s: %w", job.Name, err)
	}
	t.put(s.keys.job(job.Name), value)
	return nil
}

func decodeJob(name string, value []byte) (state.JobState, error) {
	var job state.JobState
	if err := json.Unmarshal(value, &job); err != nil {
		return state.JobState{}, fmt.Errorf("decode job %s: %w", name, err)
	}
	return job, nil
}

func decodeRun(value []byte) (state.Run, error) {
	var run state.Run
	if err := json.Unmarshal(value, &run); err != nil {
		return state.Run{}, fmt.Errorf("decode run: %w", err)
	}
	return run, nil
}

// applyResult updates a job's health from a finished run, as the bbolt
// store does.
func applyResult(job *state.JobState, run state.Run) {
	job.LastFinish = run.Finish
	job.LastResult = run.Result
	job.LastExitCode = run.ExitCode
	job.LastDuration = run.Duration
	job.LastError = run.Error
	switch run.Result {
	case state.ResultOK:
		job.LastSuccess = run.Finish
		job.ConsecutiveFailures = 0
	case state.ResultFailed, state.ResultTimeout, state.ResultPanic:
		job.ConsecutiveFailures++
	}
}

func checkSlotAfter(slot, last time.Time) error {
	if slot.After(last) {
		return nil
	}
	return fmt.Errorf("slot %s is not after the last claimed slot %s: %w", formatTime(slot), formatTime(last), state.ErrSlotClaimed)
}

func validateNewRun(run state.Run) error {
	if run.Job == "" {
		return errors.New("job name is empty")
	}
	if run.Start.IsZero() {
		return fmt.Errorf("run of job %s has a zero start time", run.Job)
	}
	return nil
}

func validateFinishedRun(run state.Run) error {
	if err := validateNewRun(run); err != nil {
		return err
	}
	switch run.Result {
	case state.ResultOK, state.ResultFailed, state.ResultTimeout, state.ResultPanic, state.ResultSkipped, state.ResultInterrupted:
	default:
		return fmt.Errorf("run %s of job %s has result %q, which is not a final result", run.ID, run.Job, run.Result)
	}
	if run.Finish.IsZero() {
		return fmt.Errorf("run %s of job %s has a zero finish time", run.ID, run.Job)
	}
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "(none)"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func runInUTC(r state.Run) state.Run {
	r.Slot, r.Start, r.Finish = r.Slot.UTC(), r.Start.UTC(), r.Finish.UTC()
	return r
}

func jobInUTC(j state.JobState) state.JobState {
	j.FirstSeen, j.LastSlot, j.LastStart = j.FirstSeen.UTC(), j.LastSlot.UTC(), j.LastStart.UTC()
	j.LastFinish, j.LastSuccess, j.NextRun = j.LastFinish.UTC(), j.LastSuccess.UTC(), j.NextRun.UTC()
	return j
}
