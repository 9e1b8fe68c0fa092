package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// maxHeartbeatBytes caps the size of a heartbeat file with a JSON field,
// so a runaway file cannot stall a status request.
const maxHeartbeatBytes = 1 << 20

// staleReason returns why an enabled job counts as stale at now, or ""
// when it does not: its last success is older than max_age, or its
// heartbeat file is missing or older than the heartbeat's max_age.
func staleReason(job *config.Job, st state.JobState, now time.Time) string {
	if !job.Enabled {
		return ""
	}
	if reason := maxAgeReason(job, st, now); reason != "" {
		return reason
	}
	if job.Heartbeat != nil {
		return heartbeatReason(job.Heartbeat, now)
	}
	return ""
}

// maxAgeReason compares the last success, or the first sighting of a job
// that never succeeded, with max_age. A job never seen is not judged.
func maxAgeReason(job *config.Job, st state.JobState, now time.Time) string {
	if job.MaxAge <= 0 {
		return ""
	}
	last := st.LastSuccess
	if last.IsZero() {
		last = st.FirstSeen
	}
	if last.IsZero() {
		return ""
	}
	age := now.Sub(last)
	if age <= job.MaxAge {
		return ""
	}
	return fmt.Sprintf("no successful run for %s (max_age %s)", roundAge(age), shortDuration(job.MaxAge))
}

func heartbeatReason(heartbeat *config.Heartbeat, now time.Time) string {
	beat, err := lastBeat(heartbeat)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("heartbeat file %s is missing", heartbeat.File)
	}
	if err != nil {
		return fmt.Sprintf("read heartbeat: %v", err)
	}
	age := now.Sub(beat)
	if age <= heartbeat.MaxAge {
		return ""
	}
	return fmt.Sprintf("heartbeat file %s is %s old (max_age %s)", heartbeat.File, roundAge(age), shortDuration(heartbeat.MaxAge))
}

// lastBeat returns the time of the heartbeat's last beat: the file's
// modification time, or the time in its JSON field when one is named.
func lastBeat(heartbeat *config.Heartbeat) (time.Time, error) {
	if heartbeat.JSONField == "" {
		info, err := os.Stat(heartbeat.File)
		if err != nil {
			return time.Time{}, err
		}
		return info.ModTime(), nil
	}
	// Each error names the file.
	data, err := config.ReadRegularFile(heartbeat.File, maxHeartbeatBytes)
	if err != nil {
		return time.Time{}, err
	}
	beat, err := jsonTime(data, heartbeat.JSONField)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse %s: %w", heartbeat.File, err)
	}
	return beat, nil
}

// jsonTime returns the top-level field of a JSON object as a time. The
// field holds Unix seconds, possibly fractional, or an RFC 3339 string.
func jsonTime(data []byte, field string) (time.Time, error) {
	var object map[string]json.RawMessage
	if err := json.Unmarshal(data, &object); err != nil {
		return time.Time{}, fmt.Errorf("decode JSON object: %w", err)
	}
	raw, ok := object[field]
	if !ok {
		return time.Time{}, fmt.Errorf("missing field %q", field)
	}
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		beat, err := time.Parse(time.RFC3339, text)
		if err != nil {
			return time.Time{}, fmt.Errorf("field %q: invalid RFC 3339 time %q", field, text)
		}
		return beat, nil
	}
	seconds, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %q: want Unix seconds or an RFC 3339 string, got %s", field, raw)
	}
	return time.Unix(0, int64(seconds*float64(time.Second))), nil
}

// roundAge rounds an age to whole seconds for messages.
func roundAge(age time.Duration) string {
	return shortDuration(age.Round(time.Second))
}
