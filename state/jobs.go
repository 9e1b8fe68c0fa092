package state

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EnsureJob creates the job's state with FirstSeen=now if the store has
// none, and returns the stored state.
func (s *Store) EnsureJob(name string, now time.Time) (JobState, error) {
	if name == "" {
		return JobState{}, errors.New("ensure job: job name is empty")
	}
	state, ok, err := s.Job(name)
	if err != nil || ok {
		return state, err
	}

	err = s.update(func(tx *bolt.Tx) error {
		stored, ok, err := getJob(tx, name)
		if err != nil || ok {
			state = stored
			return err
		}
		state = JobState{Name: name, FirstSeen: now.UTC()}
		if _, err := tx.Bucket(bucketRuns).CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create run bucket: %w", err)
		}
		return putJob(tx, state)
	})
	if err != nil {
		return JobState{}, fmt.Errorf("ensure job %s: %w", name, err)
	}
	return state, nil
}

// Job returns the stored state of a job, and false when there is none.
func (s *Store) Job(name string) (JobState, bool, error) {
	var (
		state JobState
		ok    bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		state, ok, err = getJob(tx, name)
		return err
	})
	if err != nil {
		return JobState{}, false, fmt.Errorf("read job %s: %w", name, err)
	}
	return state, ok, nil
}

// Jobs returns the state of every job in the store, sorted by name.
func (s *Store) Jobs() ([]JobState, error) {
	var states []JobState
	err := s.view(func(tx *bolt.Tx) error {
		// bbolt iterates keys in byte order, which is name order.
		return tx.Bucket(bucketJobs).ForEach(func(key, value []byte) error {
			var state JobState
			if err := unmarshalJob(value, &state); err != nil {
				// A read-only store is not repaired, and the daemon's next
				// start replaces the record (see replaceDamagedJobs).
				s.writer.log.Warn("skipped damaged job record", "job", string(key), "err", err)
				return nil
			}
			states = append(states, state)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	return states, nil
}

// ForgetJob deletes a job's state and run history. Forgetting a job the
// store does not have is not an error.
func (s *Store) ForgetJob(name string) error {
	err := s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketJobs).Delete([]byte(name)); err != nil {
			return fmt.Errorf("delete job state: %w", err)
		}
		err := tx.Bucket(bucketRuns).DeleteBucket([]byte(name))
		if err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return fmt.Errorf("delete run history: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget job %s: %w", name, err)
	}
	return nil
}

func getJob(tx *bolt.Tx, name string) (JobState, bool, error) {
	value := tx.Bucket(bucketJobs).Get([]byte(name))
	if value == nil {
		return JobState{}, false, nil
	}
	var state JobState
	if err := unmarshalJob(value, &state); err != nil {
		return JobState{}, false, fmt.Errorf("decode job %s: %w", name, err)
	}
	return state, true, nil
}

// existingJob returns the job's state, or an error wrapping ErrJobNotFound.
func existingJob(tx *bolt.Tx, name string) (JobState, error) {
	state, ok, err := getJob(tx, name)
	if err == nil && !ok {
		err = fmt.Errorf("job %s: %w", name, ErrJobNotFound)
	}
	return state, err
}

func putJob(tx *bolt.Tx, state JobState) error {
	value, err := encodeJob(state.inUTC())
	if err != nil {
		return fmt.Errorf("encode job %s: %w", state.Name, err)
	}
	if err := tx.Bucket(bucketJobs).Put([]byte(state.Name), value); err != nil {
		return fmt.Errorf("store job %s: %w", state.Name, err)
	}
	return nil
}

func (j JobState) inUTC() JobState {
	j.FirstSeen = j.FirstSeen.UTC()
	j.LastSlot = j.LastSlot.UTC()
	j.LastStart = j.LastStart.UTC()
	j.LastFinish = j.LastFinish.UTC()
	j.LastSuccess = j.LastSuccess.UTC()
	j.NextRun = j.NextRun.UTC()
	return j
}
