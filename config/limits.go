package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// limitKeys are the keys of a job or an exec listener that set the
// identity and the per-process limits of its child. [defaults] may set
// them too.
var limitKeys = []string{
	"cpu_time", "group", "memory_max", "nice", "nofile", "nproc", "umask", "user",
}

// cgroupKeys maps the keys of systemd settings that need a cgroup to the
// reason they are rejected, for users who move a unit's settings into a
// job.
var cgroupKeys = map[string]string{
	"cpu_quota": `cpu_quota needs a cgroup, which agent-runner does not create: use cpu_time = "10m" to cap the CPU seconds of each process, or run the command under systemd-run --scope -p CPUQuota=50%`,
	"tasks_max": "tasks_max needs a cgroup, which agent-runner does not create: use nproc, which caps the processes and threads of the job's user (RLIMIT_NPROC)",
}

// Identity is the user and groups a child runs as, resolved from the user
// and group keys against the user database when the config loads.
type Identity struct {
	// Set is false when the child runs as the daemon's own user.
	Set bool
	// User is the user's name, or "" when only group is set. Home is its
	// home folder from the user database.
	User string
	Home string
	UID  uint32
	GID  uint32
	// Groups are the supplementary group IDs: the user's groups, or only
	// GID when group is set without user.
	Groups []uint32
}

// Limits are the settings that a child gets between fork and exec. The
// resource limits are setrlimit(2) limits, so each process of the child's
// tree has its own budget, unlike a systemd unit's cgroup.
type Limits struct {
	// Umask is the file mode creation mask when UmaskSet.
	Umask    uint32
	UmaskSet bool
	// Nice is the child's nice value, -20 to 19, when NiceSet.
	Nice    int
	NiceSet bool
	// MemoryMax caps each process's data segment and private writable
	// mappings (RLIMIT_DATA) in bytes; 0 means no cap.
	MemoryMax uint64
	// CPUTime caps each process's CPU time (RLIMIT_CPU) and is a whole
	// number of seconds; 0 means no cap.
	CPUTime time.Duration
	// NoFile caps the open file descriptors of each process
	// (RLIMIT_NOFILE); 0 means the daemon's limit.
	NoFile uint64
	// NProc caps the processes and threads of the child's real user
	// (RLIMIT_NPROC), counting every process of that user on the
	// machine; 0 means no cap.
	NProc uint64
}

// IsZero reports whether l changes nothing.
func (l Limits) IsZero() bool {
	return l == Limits{}
}

// limitSettings holds the limitKeys of [defaults], a job or a listener.
type limitSettings struct {
	user      setting[string]
	group     setting[string]
	umask     setting[uint32]
	nice      setting[int]
	memoryMax setting[uint64]
	cpuTime   setting[time.Duration]
	noFile    setting[uint64]
	nProc     setting[uint64]
}

// over returns s with every unset key taken from defaults.
func (s limitSettings) over(defaults limitSettings) limitSettings {
	return limitSettings{
		user:      s.user.or(defaults.user),
		group:     s.group.or(defaults.group),
		umask:     s.umask.or(defaults.umask),
		nice:      s.nice.or(defaults.nice),
		memoryMax: s.memoryMax.or(defaults.memoryMax),
		cpuTime:   s.cpuTime.or(defaults.cpuTime),
		noFile:    s.noFile.or(defaults.noFile),
		nProc:     s.nProc.or(defaults.nProc),
	}
}

// limits returns the Limits that s sets.
func (s limitSettings) limits() Limits {
	return Limits{
		Umask:     s.umask.value,
		UmaskSet:  s.umask.isSet(),
		Nice:      s.nice.value,
		NiceSet:   s.nice.isSet(),
		MemoryMax: s.memoryMax.value,
		CPUTime:   s.cpuTime.value,
		NoFile:    s.noFile.value,
		NProc:     s.nProc.value,
	}
}

// Bounds of the limit keys.
const (
	minNice = -20
	maxNice = 19
	// maxCount bounds nofile and nproc far above Linux's default
	// fs.nr_open (2^20) and its largest pid_max (2^22), so that a typo
	// with extra digits is reported.
	maxCount = 1 << 30
	// minMemoryMax rejects a memory_max under which many programs die with
	// SIGSEGV before main. With prlimit --data on Debian 12, sh -c
	// true starts under 256 KiB and python3 -c pass needs 4 MiB, so
	// 16 MiB leaves room for larger runtimes.
	minMemoryMax = 16 << 20
)

func (l *loader) decodeLimitSettings(t table) limitSettings {
	var s limitSettings
	if name, ok := l.nonEmptyString(t, "user", `"nobody"`); ok {
		s.user = setting[string]{name, t.key("user")}
	}
	if name, ok := l.nonEmptyString(t, "group", `"nogroup"`); ok {
		s.group = setting[string]{name, t.key("group")}
	}
	if mask, ok := l.umaskValue(t); ok {
		s.umask = setting[uint32]{mask, t.key("umask")}
	}
	if n, ok := l.intRange(t, "nice", "10", minNice, maxNice); ok {
		s.nice = setting[int]{n, t.key("nice")}
	}
	if n, ok := l.byteSizeValue(t, "memory_max"); ok {
		if n < minMemoryMax {
			l.report(t.key("memory_max"), `memory_max %d is below the minimum of 16M (%d bytes), because many programs die with SIGSEGV at start under a smaller RLIMIT_DATA: write "16M" or more, or remove the key for no limit`, n, minMemoryMax)
		} else {
			s.memoryMax = setting[uint64]{n, t.key("memory_max")}
		}
	}
	if d, ok := l.cpuTimeValue(t); ok {
		s.cpuTime = setting[time.Duration]{d, t.key("cpu_time")}
	}
	if n, ok := l.intRange(t, "nofile", "1024", 1, maxCount); ok {
		s.noFile = setting[uint64]{uint64(n), t.key("nofile")}
	}
	if n, ok := l.intRange(t, "nproc", "64", 1, maxCount); ok {
		s.nProc = setting[uint64]{uint64(n), t.key("nproc")}
	}
	return s
}

var umaskPattern = lazyPattern(`^[0-7]{1,4}$`)

// umaskValue returns the octal umask written as a string. TOML has no
// integers with a leading zero, and 27 would read as decimal, so only
// strings are taken.
func (l *loader) umaskValue(t table) (uint32, bool) {
	value, ok := t.values["umask"]
	if !ok {
		return 0, false
	}
	text, ok := value.(string)
	if !ok {
		l.report(t.key("umask"), `must be a string such as "027", not %s, so that the digits read as octal`, typeName(value))
		return 0, false
	}
	mask, err := strconv.ParseUint(text, 8, 32)
	if !umaskPattern().MatchString(text) || err != nil || mask > 0o777 {
		l.report(t.key("umask"), `invalid umask %q: write an octal mode such as "027" or "0022"`, text)
		return 0, false
	}
	return uint32(mask), true
}

const byteSizeHint = `write bytes with a K, M, G or T suffix (powers of 1024), such as "512M", or a plain number of bytes`

// byteSizeValue returns a size in bytes written as an integer or as a
// string with a K, M, G or T suffix, the units of systemd's MemoryMax=.
func (l *loader) byteSizeValue(t table, name string) (uint64, bool) {
	value, ok := t.values[name]
	if !ok {
		return 0, false
	}
	var n uint64
	switch v := value.(type) {
	case int64:
		if v <= 0 {
			l.report(t.key(name), "%s %d must be positive: %s, or remove the key for no limit", name, v, byteSizeHint)
			return 0, false
		}
		n = uint64(v)
	case string:
		size, err := parseByteSize(v)
		if err != nil {
			l.report(t.key(name), "invalid size %q: %s", v, byteSizeHint)
			return 0, false
		}
		n = size
	default:
		l.report(t.key(name), `must be a size such as "512M", not %s`, typeName(value))
		return 0, false
	}
	return n, true
}

// parseByteSize parses "512M" or "1048576" into bytes.
func parseByteSize(text string) (uint64, error) {
	shift := 0
	if i := strings.IndexAny(text, "KMGT"); i >= 0 && i == len(text)-1 {
		shift = 10 * (strings.IndexByte("KMGT", text[i]) + 1)
		text = text[:i]
	}
	n, err := strconv.ParseUint(text, 10, 64)
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, fmt.Errorf("size is zero")
	case n > (1<<63)>>shift:
		return 0, fmt.Errorf("size is too large")
	}
	return n << shift, nil
}

// cpuTimeValue returns cpu_time, which RLIMIT_CPU takes in whole seconds.
func (l *loader) cpuTimeValue(t table) (time.Duration, bool) {
	d, ok := l.durationValue(t, "cpu_time", time.Second)
	if !ok {
		return 0, false
	}
	if d%time.Second != 0 {
		l.report(t.key("cpu_time"), "cpu_time %s is not a whole number of seconds, which RLIMIT_CPU counts in: write a value such as %q", d, d.Round(time.Second).String())
		return 0, false
	}
	return d, true
}
