package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

const (
	defaultHistoryLimit = 50
	// opTimeout bounds one etcd request or transaction, so that a store
	// call on a node cut off from etcd fails instead of hanging a run.
	opTimeout = 5 * time.Second
)

// interruptedMessage is the Error that RecoverInterrupted sets on a run,
// the same as the bbolt store's.
const interruptedMessage = "agent-runner stopped before the run finished"

// Etcd is the state store of a cluster, kept in etcd under a prefix. It
// has the semantics of state.Store, and every write is one etcd
// transaction that commits only while the fence set with SetFence holds,
// so a node that lost leadership writes nothing. Reads need no fence.
type Etcd struct {
	client       *clientv3.Client
	keys         keys
	historyLimit int
	fence        atomic.Pointer[Fence]
	// writeMu serializes this node's writes. Only the leader writes, so
	// without it every conflict that a transaction retries on is between
	// the leader's own concurrent writes, which share the run ID counter.
	// A burst of claims then made each other retry until they failed.
	writeMu sync.Mutex
}

// NewEtcd returns the store under prefix. historyLimit is the number of
// run records kept per job; zero or less means 50.
func NewEtcd(client *clientv3.Client, prefix string, historyLimit int) *Etcd {
	if historyLimit <= 0 {
		historyLimit = defaultHistoryLimit
	}
	return &Etcd{client: client, keys: keys{prefix}, historyLimit: historyLimit}
}

// SetFence makes every later write depend on fence, the term this node
// won.
func (s *Etcd) SetFence(fence Fence) { s.fence.Store(&fence) }

// ClearFence makes every later write fail with ErrNotLeader.
func (s *Etcd) ClearFence() { s.fence.Store(nil) }

// Close does nothing: the caller owns the etcd client.
func (s *Etcd) Close() error { return nil }

// update runs fn in an optimistic transaction and commits it under the
// fence, running fn again when a key it read changed meanwhile.
func (s *Etcd) update(fn func(t *txn) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for range maxConflicts {
		fence := s.fence.Load()
		if fence == nil {
			return fmt.Errorf("write without a term: %w", ErrNotLeader)
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		t := &txn{ctx: ctx, kv: s.client}
		err := fn(t)
		if err == nil {
			err = t.commit(*fence)
		}
		cancel()
		if !errors.Is(err, errConflict) {
			return err
		}
	}
	return fmt.Errorf("write to etcd: %w %d times in a row", errConflict, maxConflicts)
}

func (s *Etcd) read(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := s.client.Get(ctx, key, opts...)
	if err != nil {
		return nil, fmt.Errorf("read %s from etcd: %w", key, err)
	}
	return resp, nil
}

// Claim records the start of a run; see state.Store.Claim.
func (s *Etcd) Claim(run state.Run, next time.Time) (state.Run, error) {
	if err := validateNewRun(run); err != nil {
		return state.Run{}, fmt.Errorf("claim run: %w", err)
	}
	var stored state.Run
	err := s.update(func(t *txn) error {
		job, found, err := s.getJob(t, run.Job)
		if err != nil {
			return err
		}
		if !found {
			job = state.JobState{Name: run.Job, FirstSeen: run.Start}
		}
		if !run.Slot.IsZero() {
			if err := checkSlotAfter(run.Slot, job.LastSlot); err != nil {
				return err
			}
			job.LastSlot = run.Slot
		}
		run.Result = state.ResultRunning
		if stored, err = s.insertRun(t, run); err != nil {
			return err
		}
		job.Running = true
		job.LastStart = stored.Start
		job.NextRun = next
		return s.putJob(t, job)
	})
	if err != nil {
		return state.Run{}, fmt.Errorf("claim run of job %s: %w", run.Job, err)
	}
	return stored, nil
}

// Skip advances the job's last slot without running it; see
// state.Store.Skip.
func (s *Etcd) Skip(name string, slot time.Time, trigger, reason string, now, next time.Time) error {
	if slot.IsZero() {
		return fmt.Errorf("skip slot of job %s: slot is zero", name)
	}
	run := state.Run{
		Job: name, Trigger: trigger, Slot: slot, Start: now, Finish: now,
		Result: state.ResultSkipped, Error: reason,
	}
	err := s.update(func(t *txn) error {
		job, err := s.existingJob(t, name)
		if err != nil {
			return err
		}
		if err := checkSlotAfter(slot, job.LastSlot); err != nil {
			return err
		}
		if _, err := s.insertRun(t, run); err != nil {
			return err
		}
		job.LastSlot = slot
		job.NextRun = next
		return s.putJob(t, job)
	})
	if err != nil {
		return fmt.Errorf("skip slot %s of job %s: %w", formatTime(slot), name, err)
	}
	return nil
}

// Finish replaces the running record of a run with its result and
// updates the job's health; see state.Store.Finish.
func (s *Etcd) Finish(run state.Run) error {
	if err := validateFinishedRun(run); err != nil {
		return fmt.Errorf("finish run: %w", err)
	}
	seq, err := state.ParseRunID(run.ID)
	if err != nil {
		return fmt.Errorf("finish run of job %s: %w", run.Job, err)
	}
	err = s.update(func(t *txn) error {
		job, err := s.existingJob(t, run.Job)
		if err != nil {
			return err
		}
		stored, ok, err := s.getRun(t, run.Job, seq)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("run %s: %w", run.ID, state.ErrRunNotFound)
		}
		if stored.Result != state.ResultRunning {
			return fmt.Errorf("run %s has result %q: %w", run.ID, stored.Result, state.ErrRunFinished)
		}
		run.ID = strconv.FormatUint(seq, 10)
		if err := s.putRun(t, run); err != nil {
			return err
		}
		t.delete(s.keys.running(run.Job) + runKey(seq))
		job.Running = false
		applyResult(&job, run)
		if err := s.putJob(t, job); err != nil {
			return err
		}
		return s.pruneRuns(t, run.Job, 0, seq)
	})
	if err != nil {
		return fmt.Errorf("finish run %s of job %s: %w", run.ID, run.Job, err)
	}
	return nil
}

// RecordSkipped stores a run that never started; see
// state.Store.RecordSkipped.
func (s *Etcd) RecordSkipped(run state.Run) (state.Run, error) {
	if err := validateNewRun(run); err != nil {
		return state.Run{}, fmt.Errorf("record skipped run: %w", err)
	}
	run.Result = state.ResultSkipped
	var stored state.Run
	err := s.update(func(t *txn) error {
		if _, err := s.existingJob(t, run.Job); err != nil {
			return err
		}
		var err error
		stored, err = s.insertRun(t, run)
		return err
	})
	if err != nil {
		return state.Run{}, fmt.Errorf("record skipped run of job %s: %w", run.Job, err)
	}
	return stored, nil
}

// Runs returns up to limit runs of a job, newest first; a limit of zero
// or less returns all that are kept.
func (s *Etcd) Runs(name string, limit int) ([]state.Run, error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.read(s.keys.runs(name), opts...)
	if err != nil {
		return nil, fmt.Errorf("read runs of job %s: %w", name, err)
	}
	runs := make([]state.Run, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		run, err := decodeRun(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("read runs of job %s: %w", name, err)
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// Run returns one run of a job by ID, and false when there is none.
func (s *Etcd) Run(name, id string) (state.Run, bool, error) {
	seq, err := state.ParseRunID(id)
	if err != nil {
		return state.Run{}, false, fmt.Errorf("read run of job %s: %w", name, err)
	}
	resp, err := s.read(s.keys.runs(name) + runKey(seq))
	if err != nil || len(resp.Kvs) == 0 {
		return state.Run{}, false, err
	}
	run, err := decodeRun(resp.Kvs[0].Value)
	if err != nil {
		return state.Run{}, false, fmt.Errorf("read run %s of job %s: %w", id, name, err)
	}
	return run, true, nil
}

// RecoverInterrupted marks every run still running as interrupted; see
// state.Store.RecoverInterrupted. A new leader calls it for the runs the
// previous leader left. Each job is one transaction, so a failure part
// way leaves the remaining jobs for the next call.
func (s *Etcd) RecoverInterrupted(now time.Time, busy func(job string) bool) ([]state.Run, error) {
	names, err := s.jobNames()
	if err != nil {
		return nil, fmt.Errorf("recover interrupted runs: %w", err)
	}
	var recovered []state.Run
	for _, name := range names {
		if busy != nil && busy(name) {
			continue
		}
		var runs []state.Run
		err := s.update(func(t *txn) (err error) {
			runs, err = s.recoverJob(t, name, now)
			return err
		})
		if err != nil {
			return recovered, fmt.Errorf("recover interrupted runs: job %s: %w", name, err)
		}
		recovered = append(recovered, runs...)
	}
	slices.SortFunc(recovered, func(a, b state.Run) int { return state.CompareRunIDs(a.ID, b.ID) })
	return recovered, nil
}

func (s *Etcd) recoverJob(t *txn, name string, now time.Time) ([]state.Run, error) {
	job, err := s.existingJob(t, name)
	if err != nil {
		return nil, err
	}
	seqs, err := s.runningSeqs(t, name)
	if err != nil {
		return nil, err
	}
	if len(seqs) == 0 && !job.Running {
		return nil, nil
	}
	var recovered []state.Run
	for _, seq := range seqs {
		run, ok, err := s.getRun(t, name, seq)
		if err != nil {
			return nil, err
		}
		t.delete(s.keys.running(name) + runKey(seq))
		if !ok || run.Result != state.ResultRunning {
			continue
		}
		run.Result = state.ResultInterrupted
		run.Finish = now.UTC()
		// When the run ended, and how, is unknown: Finish is when this
		// start noticed it, and Duration and ExitCode stay unknown.
		run.Duration, run.ExitCode = 0, -1
		run.Error = interruptedMessage
		if err := s.putRun(t, run); err != nil {
			return nil, err
		}
		applyResult(&job, run)
		recovered = append(recovered, run)
	}
	job.Running = false
	return recovered, s.putJob(t, job)
}

// RunningRuns returns every run still recorded as running.
func (s *Etcd) RunningRuns() ([]state.Run, error) {
	resp, err := s.read(s.keys.allRunning(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("list running runs: %w", err)
	}
	var all []state.Run
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), s.keys.allRunning())
		cut := strings.LastIndexByte(rest, '/')
		if cut < 0 {
			continue
		}
		run, ok, err := s.Run(rest[:cut], strings.TrimLeft(rest[cut+1:], "0"))
		if err != nil {
			return nil, fmt.Errorf("list running runs: %w", err)
		}
		if ok && run.Result == state.ResultRunning {
			all = append(all, run)
		}
	}
	return all, nil
}

// EnsureJob creates the job's state with FirstSeen=now if there is none,
// and returns the stored state.
func (s *Etcd) EnsureJob(name string, now time.Time) (state.JobState, error) {
	if name == "" {
		return state.JobState{}, errors.New("ensure job: job name is empty")
	}
	job, ok, err := s.Job(name)
	if err != nil || ok {
		return job, err
	}
	err = s.update(func(t *txn) error {
		stored, ok, err := s.getJob(t, name)
		if err != nil || ok {
			job = stored
			return err
		}
		job = state.JobState{Name: name, FirstSeen: now.UTC()}
		return s.putJob(t, job)
	})
	if err != nil {
		return state.JobState{}, fmt.Errorf("ensure job %s: %w", name, err)
	}
	return job, nil
}

// Job returns the stored state of a job, and false when there is none.
func (s *Etcd) Job(name string) (state.JobState, bool, error) {
	resp, err := s.read(s.keys.job(name))
	if err != nil || len(resp.Kvs) == 0 {
		return state.JobState{}, false, err
	}
	job, err := decodeJob(name, resp.Kvs[0].Value)
	if err != nil {
		return state.JobState{}, false, fmt.Errorf("read job %s: %w", name, err)
	}
	return job, true, nil
}

// Jobs returns the state of every job, sorted by name.
func (s *Etcd) Jobs() ([]state.JobState, error) {
	resp, err := s.read(s.keys.jobs(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	jobs := make([]state.JobState, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		job, err := decodeJob(strings.TrimPrefix(string(kv.Key), s.keys.jobs()), kv.Value)
		if err != nil {
			return nil, fmt.Errorf("read jobs: %w", err)
		}
		jobs = append(jobs, job)
	}
	return jobs, nil
}

// ForgetJob deletes a job's state and run history. Forgetting a job that
// has none is not an error.
func (s *Etcd) ForgetJob(name string) error {
	err := s.update(func(t *txn) error {
		t.delete(s.keys.job(name))
		t.delete(s.keys.runs(name), clientv3.WithPrefix())
		t.delete(s.keys.running(name), clientv3.WithPrefix())
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget job %s: %w", name, err)
	}
	return nil
}

// Listener returns the key-value space of the named listener. Its Put is
// fenced like every other write.
func (s *Etcd) Listener(name string) listeners.KV {
	return listenerKV{store: s, name: name}
}

type listenerKV struct {
	store *Etcd
	name  string
}

func (kv listenerKV) Get(key string) ([]byte, bool, error) {
	resp, err := kv.store.read(kv.store.keys.listener(kv.name) + key)
	if err != nil {
		return nil, false, fmt.Errorf("read %s of listener %s: %w", key, kv.name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

func (kv listenerKV) Put(key string, value []byte) error {
	err := kv.store.update(func(t *txn) error {
		t.put(kv.store.keys.listener(kv.name)+key, value)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %s of listener %s: %w", key, kv.name, err)
	}
	return nil
}

func (s *Etcd) jobNames() ([]string, error) {
	resp, err := s.read(s.keys.jobs(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	names := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		names[i] = strings.TrimPrefix(string(kv.Key), s.keys.jobs())
	}
	return names, nil
}
