package state

import (
	"strconv"
	"time"

	"github.com/agent-runner/agent-runner/internal/jsonwrite"
)

// The encoders below write the same bytes as json.Marshal of Run,
// JobState and logEntry. Every run encodes a run record, a job record and
// a claim log entry at its claim and again at its finish, and
// encoding/json spends most of that time on reflection and on validating
// the output of time.Time's MarshalJSON. Decoding still goes through
// encoding/json, so the stored format is plain JSON either way.

// encodeRun returns the JSON of run, as json.Marshal would.
func encodeRun(run Run) ([]byte, error) {
	return appendRun(make([]byte, 0, 192+len(run.Error)+len(run.Output)), run)
}

// encodeJob returns the JSON of job, as json.Marshal would.
func encodeJob(job JobState) ([]byte, error) {
	return appendJob(make([]byte, 0, 320+len(job.LastError)), job)
}

// encodeEntry returns the JSON of entry, as json.Marshal would.
func encodeEntry(entry logEntry) ([]byte, error) {
	buf := make([]byte, 0, 224+len(entry.Run.Error)+len(entry.Run.Output))
	buf = append(buf, `{"op":`...)
	buf = jsonwrite.String(buf, entry.Op)
	buf = append(buf, `,"run":`...)
	buf, err := appendRun(buf, entry.Run)
	if err != nil {
		return nil, err
	}
	if !entry.Next.IsZero() {
		if buf, err = appendTimeField(buf, `,"next":`, entry.Next); err != nil {
			return nil, err
		}
	}
	return append(buf, '}'), nil
}

func appendRun(buf []byte, run Run) ([]byte, error) {
	buf = append(buf, `{"id":`...)
	buf = jsonwrite.String(buf, run.ID)
	buf = append(buf, `,"job":`...)
	buf = jsonwrite.String(buf, run.Job)
	buf = append(buf, `,"trigger":`...)
	buf = jsonwrite.String(buf, run.Trigger)
	buf, err := appendTimes(buf,
		timeField{`,"slot":`, run.Slot, true},
		timeField{`,"start":`, run.Start, false},
		timeField{`,"finish":`, run.Finish, true})
	if err != nil {
		return nil, err
	}
	buf = append(buf, `,"result":`...)
	buf = jsonwrite.String(buf, run.Result)
	buf = append(buf, `,"exit_code":`...)
	buf = strconv.AppendInt(buf, int64(run.ExitCode), 10)
	buf = append(buf, `,"duration":`...)
	buf = strconv.AppendInt(buf, int64(run.Duration), 10)
	if run.Error != "" {
		buf = append(buf, `,"error":`...)
		buf = jsonwrite.String(buf, run.Error)
	}
	if run.Output != "" {
		buf = append(buf, `,"output":`...)
		buf = jsonwrite.String(buf, run.Output)
	}
	return append(buf, '}'), nil
}

func appendJob(buf []byte, job JobState) ([]byte, error) {
	buf = append(buf, `{"name":`...)
	buf = jsonwrite.String(buf, job.Name)
	buf, err := appendTimes(buf,
		timeField{`,"first_seen":`, job.FirstSeen, false},
		timeField{`,"last_slot":`, job.LastSlot, true})
	if err != nil {
		return nil, err
	}
	buf = append(buf, `,"running":`...)
	buf = strconv.AppendBool(buf, job.Running)
	if buf, err = appendTimes(buf,
		timeField{`,"last_start":`, job.LastStart, true},
		timeField{`,"last_finish":`, job.LastFinish, true}); err != nil {
		return nil, err
	}
	if job.LastResult != "" {
		buf = append(buf, `,"last_result":`...)
		buf = jsonwrite.String(buf, job.LastResult)
	}
	buf = append(buf, `,"last_exit_code":`...)
	buf = strconv.AppendInt(buf, int64(job.LastExitCode), 10)
	buf = append(buf, `,"last_duration":`...)
	buf = strconv.AppendInt(buf, int64(job.LastDuration), 10)
	if job.LastError != "" {
		buf = append(buf, `,"last_error":`...)
		buf = jsonwrite.String(buf, job.LastError)
	}
	if buf, err = appendTimes(buf, timeField{`,"last_success":`, job.LastSuccess, true}); err != nil {
		return nil, err
	}
	buf = append(buf, `,"consecutive_failures":`...)
	buf = strconv.AppendInt(buf, int64(job.ConsecutiveFailures), 10)
	if buf, err = appendTimes(buf, timeField{`,"next_run":`, job.NextRun, true}); err != nil {
		return nil, err
	}
	return append(buf, '}'), nil
}

// timeField is a time.Time field with its key, prefixed by a comma.
type timeField struct {
	key       string
	value     time.Time
	omitEmpty bool
}

func appendTimes(buf []byte, fields ...timeField) ([]byte, error) {
	var err error
	for _, f := range fields {
		if f.omitEmpty && f.value.IsZero() {
			continue
		}
		if buf, err = appendTimeField(buf, f.key, f.value); err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// appendTimeField appends key and t as time.Time's MarshalJSON writes it.
func appendTimeField(buf []byte, key string, t time.Time) ([]byte, error) {
	return jsonwrite.Time(append(buf, key...), t)
}
