package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/daemon"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
)

// doctor collects the findings of one check of a deployment.
type doctor struct {
	out      io.Writer
	problems int
}

func (d *doctor) ok(format string, args ...any) {
	fmt.Fprintf(d.out, "ok       %s\n", fmt.Sprintf(format, args...))
}

func (d *doctor) problem(format string, args ...any) {
	d.problems++
	fmt.Fprintf(d.out, "PROBLEM  %s\n", fmt.Sprintf(format, args...))
}

func (d *doctor) note(format string, args ...any) {
	fmt.Fprintf(d.out, "note     %s\n", fmt.Sprintf(format, args...))
}

func cmdDoctor(args []string, stdout, stderr io.Writer) int {
	fs, configPath := newFlags("doctor", stdout, stderr)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if code := checkArgs(fs, 0, 0, "no arguments"); code >= 0 {
		return code
	}
	d := &doctor{out: stdout}
	cfg, ok := loadConfig(*configPath, stdout)
	if !ok {
		d.problem("the config has problems (listed above): fix them, then run doctor again")
		return exitFailure
	}
	d.ok("config %s is valid: %s, %s, %s", cfg.Path, daemon.Count(len(cfg.Jobs), "job"), daemon.Count(len(cfg.Listeners), "listener"), daemon.Count(len(cfg.Alerts), "alert sink"))
	status, statusErr := control.GetStatus(cfg.Runner.Socket)
	d.checkMachine(cfg, sameConfigStatus(cfg, status, statusErr))
	d.checkStateDir(cfg.Runner.StateDir)
	d.checkSocketGroup(cfg)
	d.checkDaemon(cfg, status, statusErr)
	d.checkPositions(cfg, status, statusErr)
	d.checkCluster(cfg)
	d.checkClock()
	if d.problems > 0 {
		fmt.Fprintf(stdout, "\n%s found\n", daemon.Count(d.problems, "problem"))
		return exitFailure
	}
	fmt.Fprintln(stdout, "\nno problems found")
	return exitOK
}

// sameConfigStatus returns the status of a daemon that runs the current
// contents of the config file, or nil.
func sameConfigStatus(cfg *config.Config, status control.Status, err error) *control.Status {
	if err != nil || status.Daemon == nil || status.Daemon.ConfigHash != cfg.Hash {
		return nil
	}
	return &status
}

// checkMachine reports commands, secrets, folders and env files that do
// not resolve here, secrets too short to be redacted, and listeners left
// disabled. Given the status of a daemon that runs this config, a job or
// listener that works in the daemon gets a note instead of a problem,
// because the daemon's environment and credentials may differ from this
// shell's.
func (d *doctor) checkMachine(cfg *config.Config, daemonStatus *control.Status) {
	problems, shellOnly := splitProblems(cfg, daemonStatus)
	lines := problemLines(problems)
	for _, line := range lines {
		d.problem("%s", line)
	}
	for _, line := range problemLines(shellOnly) {
		d.note("in this shell only, not for the running daemon: %s", line)
	}
	switch {
	case len(lines) > 0:
	case daemonStatus != nil:
		d.ok("every command, secret, working_dir and env_file resolves for the running daemon")
	default:
		d.ok("every command, secret, working_dir and env_file resolves on this machine")
	}
	for _, line := range configWarnings(cfg) {
		d.note("%s", line)
	}
	for _, lc := range cfg.Listeners {
		if !lc.Enabled {
			d.note("listener %s is disabled: %s", lc.Name, lc.DisabledReason)
		}
	}
}

// splitProblems splits the problems of cfg into those the daemon of
// daemonStatus has too and those of jobs and listeners that work there.
func splitProblems(cfg *config.Config, daemonStatus *control.Status) (problems, shellOnly []error) {
	if daemonStatus == nil {
		return cfg.Problems(), nil
	}

	jobWorks := make(map[string]bool, len(daemonStatus.Jobs))
	for _, job := range daemonStatus.Jobs {
		jobWorks[job.Name] = job.Problem == ""
	}
	// A listener that the daemon cannot run as configured shows as
	// failed, with a message that can differ from this shell's, such as
	// for a credential that only the daemon's unit provides.
	listenerWorks := make(map[string]bool, len(daemonStatus.Listeners))
	for _, health := range daemonStatus.Listeners {
		listenerWorks[health.Name] = health.State != listeners.StateFailed && health.State != listeners.StateDisabled
	}

	add := func(problem error, worksInDaemon bool) {
		switch {
		case problem == nil:
		case worksInDaemon:
			shellOnly = append(shellOnly, problem)
		default:
			problems = append(problems, problem)
		}
	}
	for _, job := range cfg.Jobs {
		add(job.Problem, jobWorks[job.Name])
	}
	for _, listener := range cfg.Listeners {
		add(listener.Problem, listenerWorks[listener.Name])
	}
	for _, alert := range cfg.Alerts {
		add(alert.Problem, false)
	}
	return problems, shellOnly
}

// existingAncestor returns the nearest folder above dir that exists,
// which is where the daemon's first start creates the missing ones.
func existingAncestor(dir string) string {
	for {
		parent := filepath.Dir(dir)
		if parent == dir {
			return parent
		}
		if _, err := os.Stat(parent); err == nil {
			return parent
		}
		dir = parent
	}
}

// remountFix is the advice for a state folder on a read-only file
// system, where a chown, the fix for a folder of another user, fails too.
const remountFix = "check it for errors, which the kernel log names, then remount it read-write"

// checkStateDir reports a state folder this user cannot create or write,
// and one that others can read.
func (d *doctor) checkStateDir(dir string) {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := existingAncestor(dir)
		err = unix.Access(parent, unix.W_OK|unix.X_OK)
		if errors.Is(err, unix.EROFS) {
			d.problem("state_dir %s does not exist and %s is on a read-only file system: %s", dir, parent, remountFix)
			return
		}
		if err != nil {
			d.problem("state_dir %s does not exist and %s is not writable: create it for the user the daemon runs as", dir, parent)
			return
		}
		d.ok("state_dir %s will be created at the first start", dir)
		return
	case errors.Is(err, fs.ErrPermission):
		d.problem("state_dir %s cannot be reached by this user (%v): run doctor as the user the daemon runs as, such as with sudo -u that user", dir, err)
		return
	case err != nil:
		d.problem("state_dir %s: %v", dir, err)
		return
	}
	err = unix.Access(dir, unix.W_OK|unix.X_OK)
	if errors.Is(err, unix.EROFS) {
		d.problem("state_dir %s is on a read-only file system: %s", dir, remountFix)
		return
	}
	if err != nil {
		d.problem("state_dir %s is not writable by this user: chown it to the user the daemon runs as", dir)
		return
	}
	if info.Mode().Perm()&0o007 != 0 {
		d.problem("state_dir %s is open to other users (mode %o): chmod o-rwx it, since the store may hold session tokens", dir, info.Mode().Perm())
		return
	}
	d.ok("state_dir %s is writable and private", dir)
}

// checkSocketGroup reports a control socket that members of socket_group
// cannot reach: a folder on its path that the group cannot search, or a
// socket file without the group's read and write bits.
func (d *doctor) checkSocketGroup(cfg *config.Config) {
	name := cfg.Runner.SocketGroup
	if name == "" {
		return
	}
	group, err := user.LookupGroup(name)
	if err != nil {
		d.problem("socket_group %s: %v", name, err)
		return
	}
	gid, _ := strconv.Atoi(group.Gid)
	socket := cfg.Runner.Socket
	_, socketErr := os.Lstat(socket)
	for dir := filepath.Dir(socket); ; dir = filepath.Dir(dir) {
		// The daemon gives the state folder to the group at its start.
		daemonSets := dir == filepath.Clean(cfg.Runner.StateDir) && socketErr != nil
		if !daemonSets && !groupCanSearch(dir, gid) {
			d.problem("members of socket_group %s cannot reach the control socket %s: folder %s is not searchable by the group; run chgrp %s %s && chmod g+x %s, or set [runner] socket in a folder they can reach",
				name, socket, dir, name, dir, dir)
			return
		}
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	if info, err := os.Lstat(socket); err == nil {
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || int(st.Gid) != gid || info.Mode().Perm()&0o060 != 0o060 {
			d.problem("members of socket_group %s cannot use the control socket %s (mode %o): restart the daemon, which sets mode 0660 and the group", name, socket, info.Mode().Perm())
			return
		}
	}
	d.ok("members of socket_group %s can reach the control socket %s", name, socket)
}

// groupCanSearch reports whether members of gid may pass through dir, by
// its group or its other bits. A folder that does not exist yet counts as
// searchable, since the daemon creates it.
func groupCanSearch(dir string, gid int) bool {
	info, err := os.Stat(dir)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist)
	}
	mode := info.Mode().Perm()
	if mode&0o001 != 0 {
		return true
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Gid) == gid && mode&0o010 != 0
}

// checkDaemon reports whether a daemon answers, and a store that a
// daemon-less CLI cannot read.
func (d *doctor) checkDaemon(cfg *config.Config, status control.Status, err error) {
	switch {
	case err == nil:
		d.ok("the daemon answers on %s: %s", cfg.Runner.Socket, daemon.Summary(status))
		if status.Daemon != nil && status.Daemon.ConfigHash != cfg.Hash {
			d.note("the daemon runs another version of the config than the file holds: run agent-runner reload")
		}
		if status.Daemon != nil && status.Daemon.ReloadError != "" {
			d.problem("the daemon rejected the last reload: %s", firstLine(status.Daemon.ReloadError))
		}
		if status.Daemon != nil && status.Daemon.StateError != "" {
			// The daemon's own writes see a full or read-only file system
			// that the permission check of state_dir above does not.
			d.problem("the daemon's state folder is failing: %s", firstLine(status.Daemon.StateError))
		}
		return
	case !errors.Is(err, control.ErrNoDaemon):
		d.problem("the control socket %s exists but the daemon cannot be used: %v", cfg.Runner.Socket, err)
		return
	}
	d.note("no daemon responds on %s; start it with systemctl start agent-runner or agent-runner run", cfg.Runner.Socket)
	if cfg.Cluster != nil {
		// A cluster node keeps its state in etcd, which checkCluster tries.
		return
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := openStoreOffline(cfg, true, log)
	if err != nil {
		d.problem("state store %s: %v", daemon.StorePath(cfg), err)
		return
	}
	if store != nil {
		store.Close()
		d.ok("state store %s opens", daemon.StorePath(cfg))
	}
}

// checkPositions reports each job whose stored position lies ahead of
// the clock, from the daemon's status or, without a daemon, from the
// store, with the command that moves it back.
func (d *doctor) checkPositions(cfg *config.Config, status control.Status, err error) {
	statuses := status.Jobs
	if err != nil {
		if !errors.Is(err, control.ErrNoDaemon) || cfg.Cluster != nil {
			return
		}
		store, err := openStoreOffline(cfg, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil || store == nil {
			// checkDaemon reported a store that does not open.
			return
		}
		statuses, err = jobs.OfflineStatus(cfg, store, time.Now())
		store.Close()
		if err != nil {
			d.problem("read job positions from %s: %v", daemon.StorePath(cfg), err)
			return
		}
	}
	ahead := 0
	for _, job := range statuses {
		if job.PositionAhead > 0 {
			ahead++
			d.problem("job %s: %s", job.Name, job.StaleReason)
		}
	}
	switch {
	case ahead > 1 && cfg.Cluster == nil:
		d.note("agent-runner reset --ahead resets all %d jobs at once, once the clock is right", ahead)
	case ahead == 0:
		d.ok("no job's stored position is ahead of the clock")
	}
}

// checkClock reports a clock the kernel says is not synchronized, since
// schedules follow the wall clock.
func (d *doctor) checkClock() {
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		d.note("could not read the clock's synchronization state: %v", err)
		return
	}
	if tx.Status&unix.STA_UNSYNC != 0 {
		d.note("the system clock is not synchronized by NTP; schedules follow the wall clock, so enable systemd-timesyncd or chrony")
		return
	}
	d.ok("the system clock is synchronized")
}
