package config

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/internal/suggest"
)

// table is one decoded TOML table with its key path, so that problems in
// it can be located.
type table struct {
	path   keyPath
	values map[string]any
}

func (t table) key(name string) keyPath {
	return t.path.child(name)
}

// names returns the keys of t in sorted order, so problems come out in a
// stable order.
func (t table) names() []string {
	return slices.Sorted(maps.Keys(t.values))
}

// typeName names the TOML type of a value decoded by go-toml, with an
// article. It never includes the value, which may be a secret.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	default:
		return "a local date or time"
	}
}

// subTable returns the table at name. It reports a problem when the value
// is not a table, and returns false then and when the key is absent.
func (r *reporter) subTable(t table, name, example string) (table, bool) {
	path := t.key(name)
	value, ok := t.values[name]
	if !ok {
		return table{path: path}, false
	}
	m, ok := value.(map[string]any)
	if !ok {
		r.report(path, "must be a table such as %s, not %s", example, typeName(value))
		return table{path: path}, false
	}
	return table{path: path, values: m}, true
}

// stringValue returns the string at name, or false when it is absent or
// not a string. example shows a valid value in the problem message.
func (r *reporter) stringValue(t table, name, example string) (string, bool) {
	value, ok := t.values[name]
	if !ok {
		return "", false
	}
	s, ok := value.(string)
	if !ok {
		r.report(t.key(name), "must be a string such as %s, not %s", example, typeName(value))
		return "", false
	}
	return s, true
}

// nonEmptyString is stringValue that also rejects "".
func (r *reporter) nonEmptyString(t table, name, example string) (string, bool) {
	s, ok := r.stringValue(t, name, example)
	if ok && s == "" {
		r.report(t.key(name), "must not be empty: write a value such as %s or remove the key", example)
		return "", false
	}
	return s, ok
}

func (r *reporter) boolValue(t table, name string) (bool, bool) {
	value, ok := t.values[name]
	if !ok {
		return false, false
	}
	b, ok := value.(bool)
	if !ok {
		r.report(t.key(name), "must be true or false, not %s", typeName(value))
		return false, false
	}
	return b, true
}

func (r *reporter) intValue(t table, name, example string) (int64, bool) {
	value, ok := t.values[name]
	if !ok {
		return 0, false
	}
	n, ok := value.(int64)
	if !ok {
		r.report(t.key(name), "must be an integer such as %s, not %s", example, typeName(value))
		return 0, false
	}
	return n, true
}

const durationHint = `write a Go duration such as "90s", "15m" or "1h30m"`

// durationValue returns the duration written as a string at name. It
// reports negative durations and durations below minimum.
func (r *reporter) durationValue(t table, name string, minimum time.Duration) (time.Duration, bool) {
	value, ok := t.values[name]
	if !ok {
		return 0, false
	}
	s, ok := value.(string)
	if !ok {
		r.report(t.key(name), `must be a duration string such as "15m", not %s`, typeName(value))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		if span, ok := systemdSpan(s); ok {
			r.report(t.key(name), "invalid duration %q: write %q, the Go duration of this systemd time span", s, goDuration(span))
			break
		}
		r.report(t.key(name), "invalid duration %q: %s", s, durationHint)
	case d < 0:
		r.report(t.key(name), "negative duration %q: %s", s, durationHint)
	case d < minimum:
		r.report(t.key(name), "duration %q is shorter than the minimum of %s: %s", s, minimum, durationHint)
	default:
		return d, true
	}
	return 0, false
}

// systemdUnits are the time span units of systemd.time(7) that a
// duration copied from a unit file may use, each with its length.
var systemdUnits = map[string]time.Duration{
	"us": time.Microsecond, "usec": time.Microsecond, "µs": time.Microsecond,
	"ms": time.Millisecond, "msec": time.Millisecond,
	"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
}

// systemdSpan parses a time span as systemd.time(7) writes it, such as
// "15min", "1h 30min", "2 days" or "90" (seconds), so that a duration
// copied from a timer or service unit gets its Go spelling in the error.
func systemdSpan(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, true
	}
	var total time.Duration
	for s != "" {
		digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
		if digits == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(s[:digits], 10, 32)
		if err != nil {
			return 0, false
		}
		s = strings.TrimLeft(s[digits:], " ")
		unitEnd := strings.IndexAny(s, "0123456789 ")
		if unitEnd < 0 {
			unitEnd = len(s)
		}
		unit, ok := systemdUnits[s[:unitEnd]]
		if !ok {
			return 0, false
		}
		// A span past time.Duration's 292 years would wrap around
		// into a wrong hint, and no Go duration can spell it.
		if time.Duration(n) > (math.MaxInt64-total)/unit {
			return 0, false
		}
		total += time.Duration(n) * unit
		s = strings.TrimLeft(s[unitEnd:], " ")
	}
	return total, total > 0
}

// goDuration writes d as time.ParseDuration reads it, without the zero
// minutes and seconds that time.Duration.String adds: "15m", not "15m0s".
func goDuration(d time.Duration) string {
	text := d.String()
	if strings.HasSuffix(text, "m0s") {
		text = strings.TrimSuffix(text, "0s")
	}
	if strings.HasSuffix(text, "h0m") {
		text = strings.TrimSuffix(text, "0m")
	}
	return text
}

// stringList returns the array of strings at name. It reports the array
// itself when it has another type and each entry that is not a string, and
// returns false when any of them is wrong.
func (r *reporter) stringList(t table, name, example string) ([]string, bool) {
	value, ok := t.values[name]
	if !ok {
		return nil, false
	}
	items, ok := value.([]any)
	if !ok {
		r.report(t.key(name), "must be an array of strings such as %s, not %s", example, typeName(value))
		return nil, false
	}
	list := make([]string, 0, len(items))
	valid := true
	for i, item := range items {
		s, ok := item.(string)
		if !ok {
			r.reportEntry(t.key(name), i, "entry %d must be a string, not %s", i+1, typeName(item))
			valid = false
		}
		list = append(list, s)
	}
	return list, valid
}

// locationValue returns the time zone named at name.
func (r *reporter) locationValue(t table, name string) (*time.Location, bool) {
	zone, ok := r.stringValue(t, name, `"Europe/Berlin"`)
	if !ok {
		return nil, false
	}
	location, err := loadLocation(zone)
	if err != nil {
		r.report(t.key(name), "%v", err)
		return nil, false
	}
	return location, true
}

// loadLocation wraps time.LoadLocation, which takes "" to mean UTC and
// reports unknown zones without a hint.
func loadLocation(zone string) (*time.Location, error) {
	if zone == "" {
		return nil, fmt.Errorf(`empty time zone: use an IANA name such as "Europe/Berlin" or "UTC"`)
	}
	location, err := time.LoadLocation(zone)
	if err != nil {
		return nil, fmt.Errorf(`unknown time zone %q: use an IANA name such as "Europe/Berlin" or "UTC"`, zone)
	}
	return location, nil
}

// systemdDirectives maps directives of timer and service units to the
// key that does their work here, for lines copied from a unit file, whose
// names are too far from the keys for a "did you mean" guess.
var systemdDirectives = map[string]string{
	"Description":        "description",
	"ExecStart":          "command",
	"OnCalendar":         "on_calendar",
	"OnUnitActiveSec":    "every",
	"OnUnitInactiveSec":  "every",
	"Persistent":         "catch_up",
	"RandomizedDelaySec": "randomized_delay",
	"TimeoutSec":         "timeout",
	"TimeoutStartSec":    "timeout",
	"RuntimeMaxSec":      "timeout",
	"WorkingDirectory":   "working_dir",
	"Environment":        "env",
	"EnvironmentFile":    "env_file",
	"PassEnvironment":    "inherit_env",
	"User":               "user",
	"Group":              "group",
	"UMask":              "umask",
	"Nice":               "nice",
	"LimitCPU":           "cpu_time",
	"LimitNOFILE":        "nofile",
	"LimitNPROC":         "nproc",
	"Restart":            "retries",
	"RestartSec":         "retry_backoff",
	"OnFailure":          "on_failure",
	"OnSuccess":          "on_success",
}

// checkKeys reports every key of t that is not in allowed. rejected maps
// keys that users are likely to try in this table to the reason they are
// not allowed here.
func (r *reporter) checkKeys(t table, where string, allowed []string, rejected map[string]string) {
	for _, name := range t.names() {
		if slices.Contains(allowed, name) {
			continue
		}
		if reason, ok := rejected[name]; ok {
			r.report(t.key(name), "%s", reason)
			continue
		}
		if key, ok := systemdDirectives[name]; ok && slices.Contains(allowed, key) {
			r.report(t.key(name), "unknown key: write %s, which takes the place of systemd's %s=", key, name)
			continue
		}
		if name == "include" && len(t.path) > 0 {
			// A key written after a table header belongs to that table, so
			// an include line appended at the end of a file lands here.
			r.report(t.key(name), "unknown key: include is a top-level key: move it above the first table")
			continue
		}
		list := strings.Join(allowed, ", ")
		if guess := suggest.Closest(name, allowed); guess != "" {
			r.report(t.key(name), "unknown key, did you mean %q? The keys allowed %s are %s", guess, where, list)
		} else {
			r.report(t.key(name), "unknown key: the keys allowed %s are %s", where, list)
		}
	}
}
