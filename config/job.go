package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agent-runner/agent-runner/internal/suggest"
	"github.com/agent-runner/agent-runner/schedule"
)

var jobNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// maxNameLength keeps job and listener names short enough for the lock,
// folder and socket paths built from them.
const maxNameLength = 64

// sharedKeys are the job keys that [defaults] may set too.
var sharedKeys = append(append([]string{
	"catch_up", "enabled", "env", "env_file", "inherit_env",
	"max_age", "timeout", "timezone", "working_dir",
}, policyKeys...), limitKeys...)

var jobKeys = slices.Sorted(slices.Values(append(slices.Clone(sharedKeys),
	"at", "command", "description", "every", "expect_file_updated", "heartbeat",
	"on_calendar", "on_failure", "on_success", "post", "schedule")))

// jobOnlyKeys explains why [defaults] rejects the job keys that are not
// shared.
var jobOnlyKeys = map[string]string{
	"command":             "command cannot be set in [defaults] because each job runs its own program: move it into each [jobs.NAME]",
	"description":         "description cannot be set in [defaults] because it describes one job: move it into each [jobs.NAME]",
	"expect_file_updated": "expect_file_updated cannot be set in [defaults] because each job writes its own file: move it into each [jobs.NAME]",
	"heartbeat":           "heartbeat cannot be set in [defaults] because each job keeps its own heartbeat file: move it into each [jobs.NAME]",
	"every":               "every cannot be set in [defaults] because each job needs its own schedule: move it into each [jobs.NAME]",
	"at":                  "at cannot be set in [defaults] because each job needs its own schedule: move it into each [jobs.NAME]",
	"on_calendar":         "on_calendar cannot be set in [defaults] because each job needs its own schedule: move it into each [jobs.NAME]",
	"on_success":          "on_success cannot be set in [defaults] because a chain belongs to one job: move it into each [jobs.NAME]",
	"on_failure":          "on_failure cannot be set in [defaults] because a chain belongs to one job: move it into each [jobs.NAME]",
	"post":                "post cannot be set in [defaults] because each job posts its own message: move it into each [jobs.NAME]",
	"schedule":            "schedule cannot be set in [defaults] because each job needs its own schedule: move it into each [jobs.NAME]",
}

// setting is a value of [defaults] or [jobs.NAME] with the key it was
// written at, so that later checks can point at the right line.
type setting[T any] struct {
	value T
	// key is nil when the file does not set the value.
	key keyPath
}

func (s setting[T]) isSet() bool { return s.key != nil }

// or returns s when it is set, else fallback.
func (s setting[T]) or(fallback setting[T]) setting[T] {
	if s.isSet() {
		return s
	}
	return fallback
}

// jobSettings holds the keys that [defaults] and [jobs.NAME] share.
type jobSettings struct {
	workingDir setting[string]
	envFile    setting[string]
	inheritEnv setting[[]string]
	timeout    setting[time.Duration]
	catchUp    setting[string]
	enabled    setting[bool]
	location   setting[*time.Location]
	maxAge     setting[time.Duration]
	env        map[string]envValue
	policy     policySettings
	limits     limitSettings
}

// over returns s with every unset key taken from defaults. Env tables
// merge key by key, and the job's value wins.
func (s jobSettings) over(defaults jobSettings) jobSettings {
	merged := jobSettings{
		workingDir: s.workingDir.or(defaults.workingDir),
		envFile:    s.envFile.or(defaults.envFile),
		inheritEnv: s.inheritEnv.or(defaults.inheritEnv),
		timeout:    s.timeout.or(defaults.timeout),
		catchUp:    s.catchUp.or(defaults.catchUp),
		enabled:    s.enabled.or(defaults.enabled),
		location:   s.location.or(defaults.location),
		maxAge:     s.maxAge.or(defaults.maxAge),
		policy:     s.policy.over(defaults.policy),
		limits:     s.limits.over(defaults.limits),
	}
	if len(defaults.env)+len(s.env) == 0 {
		// Most jobs set no env, and a big config has thousands of them.
		return merged
	}
	merged.env = make(map[string]envValue, len(defaults.env)+len(s.env))
	for name, value := range defaults.env {
		merged.env[name] = value
	}
	for name, value := range s.env {
		merged.env[name] = value
	}
	return merged
}

// jobPlan keeps a decoded job with the settings it came from, for the
// checks against this machine.
type jobPlan struct {
	job        *Job
	path       keyPath
	settings   machineSettings
	commandKey keyPath
	// runnerPath is the [runner] path, searched for the command unless
	// the job's env sets PATH.
	runnerPath []string
}

// machineSettings are the merged settings that the checks against this
// machine read. A plan keeps only these, because jobSettings is twice
// their size and a big config has thousands of plans.
type machineSettings struct {
	workingDir setting[string]
	envFile    setting[string]
	inheritEnv setting[[]string]
	env        map[string]envValue
	limits     limitSettings
}

func (s jobSettings) machineSettings() machineSettings {
	return machineSettings{workingDir: s.workingDir, envFile: s.envFile, inheritEnv: s.inheritEnv, env: s.env, limits: s.limits}
}

func (l *loader) decodeDefaults(root table) jobSettings {
	t, _ := l.subTable(root, "defaults", "[defaults]")
	rejected := maps.Clone(jobOnlyKeys)
	maps.Copy(rejected, cgroupKeys)
	l.checkKeys(t, "in [defaults]", sharedKeys, rejected)
	return l.decodeSettings(t)
}

// decodeSettings reads the keys that [defaults] and [jobs.NAME] share.
func (l *loader) decodeSettings(t table) jobSettings {
	s := l.decodeProcessSettings(t)
	if d, ok := l.durationValue(t, "timeout", 0); ok {
		s.timeout = setting[time.Duration]{d, t.key("timeout")}
	}
	if policy, ok := l.stringValue(t, "catch_up", `"once"`); ok {
		l.checkCatchUp(t.key("catch_up"), policy)
		s.catchUp = setting[string]{policy, t.key("catch_up")}
	}
	if enabled, ok := l.boolValue(t, "enabled"); ok {
		s.enabled = setting[bool]{enabled, t.key("enabled")}
	}
	if location, ok := l.locationValue(t, "timezone"); ok {
		s.location = setting[*time.Location]{location, t.key("timezone")}
	}
	if d, ok := l.durationValue(t, "max_age", time.Second); ok {
		s.maxAge = setting[time.Duration]{d, t.key("max_age")}
	}
	s.policy = l.decodePolicies(t)
	s.limits = l.decodeLimitSettings(t)
	return s
}

// decodeProcessSettings reads the keys that set up a child process:
// working_dir, env_file, inherit_env and env. Jobs and listeners share
// them, and [defaults] sets them for both.
func (l *loader) decodeProcessSettings(t table) jobSettings {
	var s jobSettings
	if dir, ok := l.nonEmptyString(t, "working_dir", `"scripts"`); ok {
		s.workingDir = setting[string]{l.resolve(dir), t.key("working_dir")}
	}
	if file, ok := l.nonEmptyString(t, "env_file", `"job.env"`); ok {
		s.envFile = setting[string]{l.resolve(file), t.key("env_file")}
	}
	if names, ok := l.stringList(t, "inherit_env", `["HOME_ASSISTANT_URL"]`); ok {
		l.checkEnvNames(t.key("inherit_env"), names)
		s.inheritEnv = setting[[]string]{names, t.key("inherit_env")}
	}
	s.env = l.decodeEnv(t)
	return s
}

// processSettings returns only the settings of s that decodeProcessSettings
// reads and the limit keys, for applying [defaults] to a listener.
func (s jobSettings) processSettings() jobSettings {
	return jobSettings{
		workingDir: s.workingDir,
		envFile:    s.envFile,
		inheritEnv: s.inheritEnv,
		env:        s.env,
		limits:     s.limits,
	}
}

func (l *loader) checkCatchUp(path keyPath, policy string) {
	if policy != CatchUpOnce && policy != CatchUpSkip && policy != CatchUpAll {
		l.report(path, `invalid catch_up %q: use "once" to run missed slots once after downtime, "all" to run each of them, or "skip" to wait for the next slot`, policy)
	}
}

func (l *loader) decodeJobs(root table, defaults jobSettings, runner Runner) []*Job {
	jobs, _ := l.subTable(root, "jobs", "[jobs.NAME]")
	names := jobs.names()
	// Each plan is large, so growing the slice once keeps a big config's
	// load from copying them all at every doubling.
	l.jobs = slices.Grow(l.jobs, len(names))
	list := make([]*Job, 0, len(names))
	for _, name := range names {
		t, ok := l.subTable(jobs, name, "[jobs.NAME]")
		if !ok {
			continue
		}
		if !jobNamePattern.MatchString(name) {
			l.report(t.path, `invalid job name %q: use lowercase letters, digits, "_" and "-", starting with a letter or digit, such as %q`, name, suggestJobName(name))
		} else if len(name) > maxNameLength {
			l.report(t.path, "job name is %d characters long: keep it to %d", len(name), maxNameLength)
		}
		list = append(list, l.decodeJob(t, name, defaults, runner))
	}
	return list
}

// suggestJobName turns name into a valid job name by lowercasing it and
// replacing each run of other characters with "-".
func suggestJobName(name string) string {
	return suggestName(name, "job")
}

// suggestName turns name into a valid job or listener name, or returns
// fallback when nothing of name is left.
func suggestName(name, fallback string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r < 128 && (r == '_' || r == '-' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9')) {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	suggestion := strings.Trim(b.String(), "-_")
	if suggestion == "" {
		return fallback
	}
	return suggestion
}

func (l *loader) decodeJob(t table, name string, defaults jobSettings, runner Runner) *Job {
	l.checkKeys(t, "in ["+t.path.String()+"]", jobKeys, cgroupKeys)
	job := &Job{Name: name, Line: l.lines.line(t.path)}
	job.Description, _ = l.stringValue(t, "description", `"Collect the daily digest"`)
	if _, ok := t.values["post"]; ok {
		job.Post = l.decodePost(t)
		if _, ok := t.values["command"]; ok {
			l.report(t.path, "sets both command and post: a job either runs a command or posts a message, so keep one")
		}
	} else {
		job.Command = l.decodeCommand(t)
	}
	settings := l.decodeSettings(t).over(defaults)
	applySettings(job, settings, runner, l.dir)
	l.decodeSchedule(t, job)
	l.decodeChains(t, job)
	l.decodeDeadMan(t, job)
	l.jobs = append(l.jobs, jobPlan{
		job:        job,
		path:       t.path,
		settings:   settings.machineSettings(),
		commandKey: t.key("command"),
		runnerPath: runner.Path,
	})
	return job
}

// applySettings copies the merged settings into job, filling in the
// built-in defaults for keys that neither the job nor [defaults] sets.
func applySettings(job *Job, s jobSettings, runner Runner, configDir string) {
	job.WorkingDir = configDir
	if s.workingDir.isSet() {
		job.WorkingDir = s.workingDir.value
	}
	job.EnvFile = s.envFile.value
	job.InheritEnv = s.inheritEnv.value
	job.Timeout = s.timeout.value
	job.CatchUp = CatchUpOnce
	if s.catchUp.isSet() {
		job.CatchUp = s.catchUp.value
	}
	job.Enabled = true
	if s.enabled.isSet() {
		job.Enabled = s.enabled.value
	}
	job.Location = runner.Location
	if s.location.isSet() {
		job.Location = s.location.value
	}
	job.MaxAge = s.maxAge.value
	job.Env = map[string]Secret{}
	job.Limits = s.limits.limits()
	applyPolicies(job, s.policy)
}

const commandExample = `["python3", "collect.py"]`

func (l *loader) decodeCommand(t table) []string {
	if _, ok := t.values["command"]; !ok {
		l.report(t.path, "missing command: add command = %s to [%s]", commandExample, t.path)
		return nil
	}
	return l.argvValue(t, "command", commandExample)
}

// argvValue returns the program and arguments at name, or nil when the key
// is absent or invalid. The value must be an array, because no shell
// splits a string into words.
func (l *loader) argvValue(t table, name, example string) []string {
	path := t.key(name)
	value, ok := t.values[name]
	if !ok {
		return nil
	}
	if _, ok := value.(string); ok {
		l.report(path, "must be an array such as %s, not a string, because no shell splits the command into words", example)
		return nil
	}
	command, ok := l.stringList(t, name, example)
	if !ok {
		return nil
	}
	if len(command) == 0 {
		l.report(path, "must not be empty: write the program and its arguments such as %s", example)
		return nil
	}
	for i, arg := range command {
		if arg == "" {
			l.reportEntry(path, i, "entry %d is empty: remove it or write the argument", i+1)
		}
	}
	return command
}

// decodeSchedule sets the job's cron expression or interval. It needs
// job.Location, because cron expressions are checked in the job's zone.
func (l *loader) decodeSchedule(t table, job *Job) {
	var set []string
	for _, key := range scheduleKeys {
		if _, ok := t.values[key]; ok {
			set = append(set, key)
		}
	}
	switch {
	case len(set) == 2:
		l.report(t.key(set[1]), "%s are both set: keep exactly one schedule key", strings.Join(set, " and "))
	case len(set) > 2:
		l.report(t.key(set[1]), "%s are all set: keep exactly one schedule key", strings.Join(set, ", "))
	case len(set) == 0 && hasMisspelledScheduleKey(t):
		// The unknown-key problem already names the intended key, so a
		// missing-schedule problem on the header line would only mislead.
	case len(set) == 0:
		l.report(t.path, `missing schedule: add schedule = "*/15 * * * *" for cron, on_calendar = "Mon..Fri 09:00" as in systemd timers, every = "15m" for a fixed interval, or at = "2026-12-24T10:00:00Z" for one run`)
	}
	if at, ok := l.decodeAt(t); ok {
		job.At = at
	}
	l.decodeCalendar(t, job)
	if expr, ok := l.stringValue(t, "schedule", `"*/15 * * * *"`); ok {
		if _, err := schedule.ParseCron(expr, job.Location); err != nil {
			l.report(t.key("schedule"), "%s", cronMessage(expr, err, job.Location))
		}
		job.Cron = expr
	}
	if every, ok := l.durationValue(t, "every", time.Second); ok {
		job.Every = every
	}
}

// scheduleKeys are the keys that give a job its slots; a job sets one.
var scheduleKeys = []string{"schedule", "on_calendar", "every", "at"}

// hasMisspelledScheduleKey reports whether t has an unknown key whose
// closest job key is a schedule key, such as evrey for every, or a
// systemd directive that one replaces, such as OnCalendar.
func hasMisspelledScheduleKey(t table) bool {
	for _, name := range t.names() {
		if slices.Contains(jobKeys, name) {
			continue
		}
		if slices.Contains(scheduleKeys, suggest.Closest(name, jobKeys)) || slices.Contains(scheduleKeys, systemdDirectives[name]) {
			return true
		}
	}
	return false
}

// cronMessage explains a cron expression that schedule.ParseCron rejects.
// An OnCalendar= expression copied from a systemd timer gets the key that
// takes it, since the cron hint alone would have the user rewrite it.
func cronMessage(expr string, err error, loc *time.Location) string {
	if errors.Is(err, schedule.ErrNoFutureSlot) {
		return fmt.Sprintf("cron expression %q never fires: check that its day and month exist together", expr)
	}
	var zoneError *schedule.UnknownZoneError
	if errors.As(err, &zoneError) {
		return fmt.Sprintf(`invalid cron expression %q: unknown time zone %q: use an IANA name such as "Europe/Berlin" or "UTC", as in "CRON_TZ=Europe/Berlin 0 8 * * *"`, expr, zoneError.Zone)
	}
	// ParseCron wraps the parser's reason in text that repeats the
	// expression, so the message uses the reason alone.
	reason := errors.Unwrap(err)
	if reason == nil {
		return fmt.Sprintf("invalid cron expression %q: %v", expr, err)
	}
	if _, calendarErr := schedule.ParseCalendar([]string{expr}, loc); calendarErr == nil {
		return fmt.Sprintf(`invalid cron expression %q: %v: it is a systemd OnCalendar= expression, so write on_calendar = %q instead of schedule`, expr, reason, expr)
	}
	return fmt.Sprintf(`invalid cron expression %q: %v: write 5 fields such as "*/15 * * * *", 6 with leading seconds, or a shortcut such as "@daily"`, expr, reason)
}
