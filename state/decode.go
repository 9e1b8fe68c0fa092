package state

import (
	"encoding/json"
	"strconv"
	"time"
)

// unmarshalRun decodes a run record as json.Unmarshal into a zero Run
// would. A record as the encoders write it, with printable ASCII strings,
// takes a direct path. Anything else, such as a string with an escape or
// a key in another case, goes through encoding/json, so both paths accept
// the same records and decode them alike.
func unmarshalRun(data []byte, run *Run) error {
	if fast, ok := decodeRunFast(data); ok {
		*run = fast
		return nil
	}
	*run = Run{}
	return json.Unmarshal(data, run)
}

// decodeRunFast decodes a run record that has the plain shape decodeFlat
// reads, and reports whether it had.
func decodeRunFast(data []byte) (Run, bool) {
	var fast Run
	ok := decodeFlat(data, func(key, value []byte, kind byte) bool {
		switch string(key) {
		case "id":
			return setString(&fast.ID, value, kind)
		case "job":
			return setString(&fast.Job, value, kind)
		case "trigger":
			return setString(&fast.Trigger, value, kind)
		case "slot":
			return setTime(&fast.Slot, value, kind)
		case "start":
			return setTime(&fast.Start, value, kind)
		case "finish":
			return setTime(&fast.Finish, value, kind)
		case "result":
			return setString(&fast.Result, value, kind)
		case "exit_code":
			return setInt(&fast.ExitCode, value, kind)
		case "duration":
			return setDuration(&fast.Duration, value, kind)
		case "error":
			return setString(&fast.Error, value, kind)
		case "output":
			return setString(&fast.Output, value, kind)
		}
		return false
	})
	return fast, ok
}

// unmarshalJob decodes a job record as json.Unmarshal into a zero
// JobState would, with the same two paths as unmarshalRun.
func unmarshalJob(data []byte, job *JobState) error {
	if fast, ok := decodeJobFast(data); ok {
		*job = fast
		return nil
	}
	*job = JobState{}
	return json.Unmarshal(data, job)
}

// decodeJobFast decodes a job record that has the plain shape decodeFlat
// reads, and reports whether it had.
func decodeJobFast(data []byte) (JobState, bool) {
	var fast JobState
	ok := decodeFlat(data, func(key, value []byte, kind byte) bool {
		switch string(key) {
		case "name":
			return setString(&fast.Name, value, kind)
		case "first_seen":
			return setTime(&fast.FirstSeen, value, kind)
		case "last_slot":
			return setTime(&fast.LastSlot, value, kind)
		case "running":
			return setBool(&fast.Running, value, kind)
		case "last_start":
			return setTime(&fast.LastStart, value, kind)
		case "last_finish":
			return setTime(&fast.LastFinish, value, kind)
		case "last_result":
			return setString(&fast.LastResult, value, kind)
		case "last_exit_code":
			return setInt(&fast.LastExitCode, value, kind)
		case "last_duration":
			return setDuration(&fast.LastDuration, value, kind)
		case "last_error":
			return setString(&fast.LastError, value, kind)
		case "last_success":
			return setTime(&fast.LastSuccess, value, kind)
		case "consecutive_failures":
			return setInt(&fast.ConsecutiveFailures, value, kind)
		case "next_run":
			return setTime(&fast.NextRun, value, kind)
		}
		return false
	})
	return fast, ok
}

// decodeFlat reads data as one JSON object without whitespace whose
// values are plain strings, integers or booleans, and calls set with each
// key and value: a string's content without its quotes, or the literal.
// kind is '"' for a string and '0' for any other literal. It returns false
// as soon as data has another shape or set refuses a value, and the
// caller then decodes data with encoding/json.
func decodeFlat(data []byte, set func(key, value []byte, kind byte) bool) bool {
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return false
	}
	pos := 1
	if data[pos] == '}' {
		return pos == len(data)-1
	}
	for {
		key, next, ok := plainString(data, pos)
		if !ok || next >= len(data) || data[next] != ':' {
			return false
		}
		pos = next + 1
		var value []byte
		kind := byte('0')
		if pos < len(data) && data[pos] == '"' {
			kind = '"'
			value, pos, ok = plainString(data, pos)
		} else {
			value, pos, ok = literal(data, pos)
		}
		if !ok || !set(key, value, kind) || pos >= len(data) {
			return false
		}
		switch data[pos] {
		case ',':
			pos++
		case '}':
			return pos == len(data)-1
		default:
			return false
		}
	}
}

// plainString reads the string that starts at data[pos] and returns its
// content and the position after its closing quote. It accepts only
// printable ASCII without escapes, the strings that need no decoding.
func plainString(data []byte, pos int) (content []byte, next int, ok bool) {
	if pos >= len(data) || data[pos] != '"' {
		return nil, 0, false
	}
	for i := pos + 1; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			return data[pos+1 : i], i + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// literal reads the run of letters, digits and minus signs that starts at
// data[pos]; the setters check what it holds.
func literal(data []byte, pos int) (value []byte, next int, ok bool) {
	end := pos
	for end < len(data) {
		c := data[end]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			break
		}
		end++
	}
	return data[pos:end], end, end > pos
}

func setString(field *string, value []byte, kind byte) bool {
	if kind != '"' {
		return false
	}
	*field = string(value)
	return true
}

// setInt accepts what encoding/json accepts for an int: a JSON integer
// without a leading zero, plus sign or fraction, within range.
func setInt(field *int, value []byte, kind byte) bool {
	n, ok := parseInt(value, kind)
	*field = int(n)
	return ok
}

func setDuration(field *time.Duration, value []byte, kind byte) bool {
	n, ok := parseInt(value, kind)
	*field = time.Duration(n)
	return ok
}

func parseInt(value []byte, kind byte) (int64, bool) {
	if kind == '"' {
		return 0, false
	}
	digits := value
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(value), 10, 64)
	return n, err == nil
}

func setBool(field *bool, value []byte, kind byte) bool {
	if kind == '"' {
		return false
	}
	switch string(value) {
	case "true":
		*field = true
	case "false":
		*field = false
	default:
		return false
	}
	return true
}

// setTime accepts the times the encoders write: RFC 3339 in UTC, with a
// fraction of one to nine digits or none. Other zones and shapes go
// through time.Time's UnmarshalJSON on the slow path.
func setTime(field *time.Time, value []byte, kind byte) bool {
	const secondsLen = len("2006-01-02T15:04:05")
	if kind != '"' || len(value) < secondsLen+1 || value[len(value)-1] != 'Z' {
		return false
	}
	if !digitsAt(value, 0, 4) || value[4] != '-' || !digitsAt(value, 5, 2) || value[7] != '-' ||
		!digitsAt(value, 8, 2) || value[10] != 'T' || !digitsAt(value, 11, 2) || value[13] != ':' ||
		!digitsAt(value, 14, 2) || value[16] != ':' || !digitsAt(value, 17, 2) {
		return false
	}
	if fraction := value[secondsLen : len(value)-1]; len(fraction) > 0 {
		if len(fraction) < 2 || len(fraction) > 10 || fraction[0] != '.' || !digitsAt(fraction, 1, len(fraction)-1) {
			return false
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(value))
	*field = t
	return err == nil
}

func digitsAt(b []byte, start, n int) bool {
	for _, c := range b[start : start+n] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
