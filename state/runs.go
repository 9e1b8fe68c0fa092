package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// interruptedMessage is the Error that RecoverInterrupted sets on a run.
const interruptedMessage = "agent-runner stopped before the run finished"

// Claim durably records the start of a run before its command starts. It
// assigns run.ID from a store-wide sequence, stores the run with Result
// "running", and sets the job's Running, LastStart and NextRun=next.
//
// A run with a non-zero Slot also advances the job's LastSlot to it, and
// fails with ErrSlotClaimed, writing nothing, unless the slot is strictly
// after the stored LastSlot. Manual runs have a zero Slot and never touch
// LastSlot. A job the store has not seen, such as one run by hand before
// the daemon ever started, is created with FirstSeen at the run's start in
// the same write.
//
// The claim is durable when Claim returns: it is in the open bbolt
// transaction and synced to the claim log, which the next read-write Open
// replays should the process die before the transaction commits. Claims
// that arrive together share one sync.
func (s *Store) Claim(run Run, next time.Time) (Run, error) {
	if err := validateNewRun(run); err != nil {
		return Run{}, fmt.Errorf("claim run: %w", err)
	}
	var stored Run
	err := s.write(opClaim, func(tx *bolt.Tx) (*logEntry, error) {
		state, found, err := getJob(tx, run.Job)
		if err != nil {
			return nil, err
		}
		if !found {
			state = JobState{Name: run.Job, FirstSeen: run.Start}
		}
		if !run.Slot.IsZero() {
			if err := checkSlotAfter(run.Slot, state.LastSlot); err != nil {
				return nil, &rejection{err}
			}
			state.LastSlot = run.Slot
		}
		run.Result = ResultRunning
		if stored, err = s.insertRun(tx, run); err != nil {
			return nil, err
		}
		markClaimed(&state, stored, next)
		if err := putJob(tx, state); err != nil {
			return nil, err
		}
		return &logEntry{Op: entryClaim, Run: stored, Next: next.UTC()}, nil
	})
	if err != nil {
		return Run{}, fmt.Errorf("claim run of job %s: %w", run.Job, err)
	}
	return stored, nil
}

// markClaimed sets the fields of a job that a claim of run changes,
// apart from LastSlot.
func markClaimed(state *JobState, run Run, next time.Time) {
	state.Running = true
	state.LastStart = run.Start
	state.NextRun = next
}

// Skip advances the job's LastSlot to slot without running it, for a slot
// deliberately not run, such as one missed while stopped with
// catch_up = "skip". It stores a run record with Result "skipped", the
// given trigger and reason as its Error, and sets NextRun=next. Other health
// fields stay as they are. It fails with ErrSlotClaimed, writing nothing,
// unless slot is strictly after the stored LastSlot.
func (s *Store) Skip(name string, slot time.Time, trigger, reason string, now, next time.Time) error {
	if slot.IsZero() {
		return fmt.Errorf("skip slot of job %s: slot is zero", name)
	}
	run := Run{
		Job:     name,
		Trigger: trigger,
		Slot:    slot,
		Start:   now,
		Finish:  now,
		Result:  ResultSkipped,
		Error:   reason,
	}
	err := s.update(func(tx *bolt.Tx) error {
		state, err := existingJob(tx, name)
		if err != nil {
			return err
		}
		if err := checkSlotAfter(slot, state.LastSlot); err != nil {
			return &rejection{err}
		}
		if _, err := s.insertRun(tx, run); err != nil {
			return err
		}
		state.LastSlot = slot
		state.NextRun = next
		return putJob(tx, state)
	})
	if err != nil {
		return fmt.Errorf("skip slot %s of job %s: %w", formatTime(slot), name, err)
	}
	return nil
}

// Finish replaces the "running" record of a claimed run with its final
// record and updates the job's health from it. It clears Running and sets
// LastFinish, LastResult, LastExitCode, LastDuration and LastError.
// Result "ok" sets LastSuccess to run.Finish and resets
// ConsecutiveFailures. "failed", "timeout" and "panic" add one to
// ConsecutiveFailures, and "skipped" and "interrupted" leave it unchanged.
// Output is stored as given, so callers cap it.
//
// Finish applies the record to the open bbolt transaction and writes it
// to the claim log without a sync of its own. It becomes durable with the
// next claim's sync or the next commit, at the latest commitDelay later
// or at Close. A crash before then leaves the run "running", which
// RecoverInterrupted marks as interrupted.
//
// The error wraps ErrRunNotFound when the job has no run with run.ID, and
// ErrRunFinished when that run is no longer "running".
func (s *Store) Finish(run Run) error {
	if err := validateFinishedRun(run); err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	if _, err := ParseRunID(run.ID); err != nil {
		return fmt.Errorf("finish run of job %s: %w", run.Job, err)
	}
	run = run.inUTC()
	err := s.write(opFinish, func(tx *bolt.Tx) (*logEntry, error) {
		if err := finishIn(tx, run); err != nil {
			return nil, err
		}
		return &logEntry{Op: entryFinish, Run: run}, nil
	})
	if err != nil {
		return fmt.Errorf("finish run %s of job %s: %w", run.ID, run.Job, err)
	}
	return nil
}

// checkFinish returns the job of a run that may be finished, or a
// *rejection when the job or run is gone or the run is already finished.
func checkFinish(tx *bolt.Tx, run Run, seq uint64) (JobState, error) {
	state, err := existingJob(tx, run.Job)
	if errors.Is(err, ErrJobNotFound) {
		return JobState{}, &rejection{err}
	}
	if err != nil {
		return JobState{}, err
	}
	stored, ok, err := getRun(jobRuns(tx, run.Job), seq)
	if err != nil {
		return JobState{}, err
	}
	if !ok {
		return JobState{}, &rejection{fmt.Errorf("run %s: %w", run.ID, ErrRunNotFound)}
	}
	if stored.Result != ResultRunning {
		return JobState{}, &rejection{fmt.Errorf("run %s has result %q: %w", run.ID, stored.Result, ErrRunFinished)}
	}
	return state, nil
}

// finishIn writes a final record in place of its run's "running" one and
// updates the job's health. It prunes nothing: the record count is
// unchanged, and a run that was running when the last claim pruned is
// pruned by the job's next claim.
func finishIn(tx *bolt.Tx, run Run) error {
	seq, err := ParseRunID(run.ID)
	if err != nil {
		return &rejection{err}
	}
	state, err := checkFinish(tx, run, seq)
	if err != nil {
		return err
	}
	runs := jobRuns(tx, run.Job)
	if err := putRun(runs, seq, run); err != nil {
		return err
	}
	state.Running = false
	applyResult(&state, run)
	return putJob(tx, state)
}

// RecordSkipped stores a run that never started because another run of the
// job was still going, with Result "skipped", and returns it with its ID.
// It changes neither the job's health nor its LastSlot, which Skip
// advances for a slot. The job must exist, or the error wraps
// ErrJobNotFound.
func (s *Store) RecordSkipped(run Run) (Run, error) {
	if err := validateNewRun(run); err != nil {
		return Run{}, fmt.Errorf("record skipped run: %w", err)
	}
	run.Result = ResultSkipped
	var stored Run
	err := s.update(func(tx *bolt.Tx) error {
		if _, err := existingJob(tx, run.Job); err != nil {
			return err
		}
		var err error
		stored, err = s.insertRun(tx, run)
		return err
	})
	if err != nil {
		return Run{}, fmt.Errorf("record skipped run of job %s: %w", run.Job, err)
	}
	return stored, nil
}

// Runs returns up to limit runs of a job, newest first. A limit of zero or
// less returns all runs the store keeps, and a job without history none.
func (s *Store) Runs(name string, limit int) ([]Run, error) {
	var runs []Run
	err := s.view(func(tx *bolt.Tx) error {
		bucket := jobRuns(tx, name)
		if bucket == nil {
			return nil
		}
		cursor := bucket.Cursor()
		for key, value := cursor.Last(); key != nil; key, value = cursor.Prev() {
			if limit > 0 && len(runs) == limit {
				break
			}
			run, err := decodeRun(key, value)
			if err != nil {
				// One damaged record must not hide the rest of the
				// history; pruning removes it in time.
				s.writer.log.Warn("skipped damaged run record", "job", name, "err", err)
				continue
			}
			runs = append(runs, run)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read runs of job %s: %w", name, err)
	}
	return runs, nil
}

// Run returns one run of a job by ID, and false when the store has none.
func (s *Store) Run(name, id string) (Run, bool, error) {
	seq, err := ParseRunID(id)
	if err != nil {
		return Run{}, false, fmt.Errorf("read run of job %s: %w", name, err)
	}
	var (
		run Run
		ok  bool
	)
	err = s.view(func(tx *bolt.Tx) error {
		var err error
		run, ok, err = getRun(jobRuns(tx, name), seq)
		return err
	})
	if err != nil {
		return Run{}, false, fmt.Errorf("read run %s of job %s: %w", id, name, err)
	}
	return run, ok, nil
}

// RecoverInterrupted marks every run still "running", as a crash or kill -9
// leaves it, as "interrupted" with Finish=now and the Error "agent-runner
// stopped before the run finished". It clears each job's Running, updates
// its health as Finish does, and returns those runs in ID order. The daemon
// calls it once at start, before it claims any run.
//
// busy, when not nil, names jobs to leave alone because a run of theirs
// is still going in another process, such as a CLI running the job.
func (s *Store) RecoverInterrupted(now time.Time, busy func(job string) bool) ([]Run, error) {
	names, err := s.interruptedJobs(busy)
	if err != nil {
		return nil, fmt.Errorf("recover interrupted runs: %w", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	var recovered []Run
	err = s.update(func(tx *bolt.Tx) error {
		// A batch that fails runs each of its writes again.
		recovered = recovered[:0]
		for _, name := range names {
			if busy != nil && busy(name) {
				continue
			}
			runs, err := recoverJob(tx, name, now)
			if err != nil {
				return fmt.Errorf("job %s: %w", name, err)
			}
			recovered = append(recovered, runs...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recover interrupted runs: %w", err)
	}
	slices.SortFunc(recovered, func(a, b Run) int {
		return CompareRunIDs(a.ID, b.ID)
	})
	return recovered, nil
}

// interruptedJobs lists the jobs, busy ones left out, that have a
// "running" record or are marked Running. It only reads, so that a start
// after a clean stop, with nothing to recover, costs no commit.
func (s *Store) interruptedJobs(busy func(job string) bool) ([]string, error) {
	var names []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(key, _ []byte) error {
			name := string(key)
			if busy != nil && busy(name) {
				return nil
			}
			running, err := runningRuns(jobRuns(tx, name), name)
			if err != nil {
				return err
			}
			state, _, err := getJob(tx, name)
			if err != nil {
				return err
			}
			if len(running) > 0 || state.Running {
				names = append(names, name)
			}
			return nil
		})
	})
	return names, err
}

// recoverJob marks the job's "running" records as interrupted and clears
// Running.
func recoverJob(tx *bolt.Tx, name string, now time.Time) ([]Run, error) {
	state, err := existingJob(tx, name)
	if err != nil {
		return nil, err
	}
	running, err := runningRuns(jobRuns(tx, name), name)
	if err != nil {
		return nil, err
	}
	if len(running) == 0 && !state.Running {
		return nil, nil
	}

	for i := range running {
		run := &running[i]
		run.Result = ResultInterrupted
		run.Finish = now.UTC()
		// When the run ended, and how, is unknown: Finish is when this
		// start noticed it, and Duration and ExitCode stay unknown.
		run.Duration, run.ExitCode = 0, -1
		if run.Error == damagedRunMessage {
			run.Error = interruptedMessage + ", and " + damagedRunMessage
		} else {
			run.Error = interruptedMessage
		}
		seq, err := ParseRunID(run.ID)
		if err != nil {
			return nil, err
		}
		if err := putRun(jobRuns(tx, name), seq, *run); err != nil {
			return nil, err
		}
		applyResult(&state, *run)
	}
	state.Running = false
	return running, putJob(tx, state)
}

// runningRuns returns the runs of job in bucket with Result "running" in
// ID order. A record that does not decode and shows no other result
// counts as running, with only its ID and job known. A run that a crash
// left running must be found even when its record was damaged, so that
// its processes are stopped and it is marked interrupted.
func runningRuns(bucket *bolt.Bucket, job string) ([]Run, error) {
	var running []Run
	if bucket == nil {
		return nil, nil
	}
	err := bucket.ForEach(func(key, value []byte) error {
		if isRunning(value) {
			run, err := decodeRun(key, value)
			if err != nil {
				return err
			}
			running = append(running, run)
		} else if maybeRunning(value) {
			running = append(running, Run{
				ID: strconv.FormatUint(binary.BigEndian.Uint64(key), 10), Job: job,
				Result: ResultRunning, Error: damagedRunMessage,
			})
		}
		return nil
	})
	return running, err
}

// damagedRunMessage is the error of a run whose record did not decode.
const damagedRunMessage = "its record in the state store was damaged, so how it ended is unknown"

// maybeRunning reports whether a record that isRunning rejects may still
// be a running run: one that does not decode and whose result bytes,
// if any, say "running". Like isRunning, it decodes no record whose
// result bytes show another result, which keeps a start's scan cheap.
func maybeRunning(value []byte) bool {
	if i := bytes.Index(value, resultField); i >= 0 && !bytes.HasPrefix(value[i+len(resultField):], []byte(ResultRunning+`"`)) {
		return false
	}
	var run Run
	return unmarshalRun(value, &run) != nil
}

// applyResult updates a job's health from a finished run.
func applyResult(state *JobState, run Run) {
	state.LastFinish = run.Finish
	state.LastResult = run.Result
	state.LastExitCode = run.ExitCode
	state.LastDuration = run.Duration
	state.LastError = run.Error
	switch run.Result {
	case ResultOK:
		state.LastSuccess = run.Finish
		state.ConsecutiveFailures = 0
	case ResultFailed, ResultTimeout, ResultPanic:
		state.ConsecutiveFailures++
	}
}

func checkSlotAfter(slot, last time.Time) error {
	if slot.After(last) {
		return nil
	}
	return fmt.Errorf("slot %s is not after the last claimed slot %s: %w", formatTime(slot), formatTime(last), ErrSlotClaimed)
}

func validateNewRun(run Run) error {
	if run.Job == "" {
		return errors.New("job name is empty")
	}
	if run.Start.IsZero() {
		return fmt.Errorf("run of job %s has a zero start time", run.Job)
	}
	return nil
}

func validateFinishedRun(run Run) error {
	if err := validateNewRun(run); err != nil {
		return err
	}
	switch run.Result {
	case ResultOK, ResultFailed, ResultTimeout, ResultPanic, ResultSkipped, ResultInterrupted:
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

// RunningRuns returns every run still recorded as running, without
// changing anything, so that a starting daemon can stop what such runs
// left behind before it marks them interrupted.
func (s *Store) RunningRuns() ([]Run, error) {
	var all []Run
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(key, _ []byte) error {
			running, err := runningRuns(jobRuns(tx, string(key)), string(key))
			all = append(all, running...)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list running runs: %w", err)
	}
	return all, nil
}
