package config

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// checkLimits resolves the user and group of s and reports what this
// machine cannot apply. That is an unknown user or group, a change of user
// or group that the runner may not make, a lower nice value without
// CAP_SYS_NICE, and a limit above the runner's own hard limit without
// CAP_SYS_RESOURCE. owner is "job" or "listener", for the messages.
func checkLimits(checks *reporter, s limitSettings, owner string) Identity {
	runner := os.Geteuid()
	caps := runnerCapabilities()
	if !caps.has(capSysNice) {
		checkNice(checks, s.nice, runner)
	}
	if !caps.has(capSysResource) {
		checkRlimits(checks, s, runner)
	}
	checkNROpen(checks, s)
	identity, ok := resolveIdentity(checks, s)
	if !ok {
		return Identity{}
	}
	if runner != 0 {
		checkSwitch(checks, s, identity, runner, owner)
	} else {
		checkRootSwitch(checks, s, identity, caps, owner)
	}
	childUID := uint32(runner)
	if identity.Set {
		childUID = identity.UID
	}
	if s.nProc.isSet() && childUID == 0 {
		checks.report(s.nProc.key, "nproc has no effect on processes that run as root, because the kernel does not enforce RLIMIT_NPROC for uid 0: set user too, or remove nproc")
	}
	return identity
}

// resolveIdentity looks up the user and group of s. It returns false after
// reporting one that does not exist.
func resolveIdentity(checks *reporter, s limitSettings) (Identity, bool) {
	if !s.user.isSet() && !s.group.isSet() {
		return Identity{}, true
	}
	identity := Identity{Set: true, UID: uint32(os.Geteuid())}
	ok := true
	if s.user.isSet() {
		u, err := lookupUser(s.user.value)
		if err != nil {
			checks.report(s.user.key, "%v", err)
			ok = false
		} else {
			identity, err = userIdentity(u)
			if err != nil {
				checks.report(s.user.key, "%v", err)
				ok = false
			}
		}
	}
	if s.group.isSet() {
		gid, err := lookupGroup(s.group.value)
		if err != nil {
			checks.report(s.group.key, "%v", err)
			return Identity{}, false
		}
		identity.GID = gid
		if !s.user.isSet() {
			identity.Groups = []uint32{gid}
		} else if !slices.Contains(identity.Groups, gid) {
			identity.Groups = append(identity.Groups, gid)
		}
	}
	return identity, ok
}

// lookupUser finds a user by name, or by uid when name is a number.
func lookupUser(name string) (*user.User, error) {
	if isNumber(name) {
		u, err := user.LookupId(name)
		if err != nil {
			return nil, fmt.Errorf("no user with uid %s in the user database: create one with useradd, or use an existing user", name)
		}
		return u, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("unknown user %q: create it with useradd, or fix the name", name)
	}
	return u, nil
}

// lookupGroup returns the gid of a group name, or of a gid written as a
// number.
func lookupGroup(name string) (uint32, error) {
	var g *user.Group
	var err error
	if isNumber(name) {
		g, err = user.LookupGroupId(name)
		if err != nil {
			return 0, fmt.Errorf("no group with gid %s in the group database: create one with groupadd, or use an existing group", name)
		}
	} else {
		g, err = user.LookupGroup(name)
		if err != nil {
			return 0, fmt.Errorf("unknown group %q: create it with groupadd, or fix the name", name)
		}
	}
	return parseID(g.Gid)
}

// userIdentity turns a user database entry into an Identity with the
// user's primary group and supplementary groups.
func userIdentity(u *user.User) (Identity, error) {
	uid, err := parseID(u.Uid)
	if err != nil {
		return Identity{}, err
	}
	gid, err := parseID(u.Gid)
	if err != nil {
		return Identity{}, err
	}
	identity := Identity{Set: true, User: u.Username, Home: u.HomeDir, UID: uid, GID: gid, Groups: []uint32{gid}}
	groups, err := u.GroupIds()
	if err != nil {
		return Identity{}, fmt.Errorf("list the groups of user %q: %w", u.Username, err)
	}
	for _, group := range groups {
		id, err := parseID(group)
		if err != nil {
			return Identity{}, err
		}
		if !slices.Contains(identity.Groups, id) {
			identity.Groups = append(identity.Groups, id)
		}
	}
	return identity, nil
}

func isNumber(text string) bool {
	_, err := strconv.ParseUint(text, 10, 32)
	return err == nil
}

func parseID(text string) (uint32, error) {
	id, err := strconv.ParseUint(text, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid id %q in the user database", text)
	}
	return uint32(id), nil
}

// checkSwitch reports a user or group that differs from the runner's own,
// which only root can switch to. A child that keeps the runner's uid and
// gid needs no switch, and it keeps the runner's supplementary groups.
func checkSwitch(checks *reporter, s limitSettings, identity Identity, runner int, owner string) {
	if !identity.Set {
		return
	}
	current := fmt.Sprintf("uid %d", runner)
	if u, err := user.LookupId(strconv.Itoa(runner)); err == nil {
		current = fmt.Sprintf("user %q (uid %d)", u.Username, runner)
	}
	if s.user.isSet() && identity.UID != uint32(runner) {
		checks.report(s.user.key, "user = %q runs the %s as uid %d, but the runner runs as %s and only root can switch users: run the daemon as root, or remove user", s.user.value, owner, identity.UID, current)
		return
	}
	if s.group.isSet() && identity.GID != uint32(os.Getegid()) {
		checks.report(s.group.key, "group = %q runs the %s as gid %d, but the runner runs as %s with gid %d and only root can switch groups: run the daemon as root, or remove group", s.group.value, owner, identity.GID, current, os.Getegid())
	} else if s.user.isSet() && identity.GID != uint32(os.Getegid()) {
		checks.report(s.user.key, "user = %q has the primary gid %d, but the runner runs as %s with gid %d and only root can switch groups: run the daemon as root, or remove user", s.user.value, identity.GID, current, os.Getegid())
	}
}

// checkRootSwitch reports a user or group that a runner with uid 0 cannot
// switch to because it lacks CAP_SETUID or CAP_SETGID. The child always
// sets its supplementary groups, which needs CAP_SETGID even when the
// gid stays 0.
func checkRootSwitch(checks *reporter, s limitSettings, identity Identity, caps capabilities, owner string) {
	if !identity.Set {
		return
	}
	if s.user.isSet() && identity.UID != 0 && !caps.has(capSetuid) {
		checks.report(s.user.key, "user = %q runs the %s as uid %d, but the runner runs as root without %s, which switching users needs: %s, or remove user", s.user.value, owner, identity.UID, capSetuid.name, grantHint(capSetuid))
	}
	if caps.has(capSetgid) {
		return
	}
	key, name, value := s.user.key, "user", s.user.value
	if s.group.isSet() {
		key, name, value = s.group.key, "group", s.group.value
	}
	checks.report(key, "%s = %q sets the groups of the %s, but the runner runs as root without %s, which setting groups needs: %s, or remove %s", name, value, owner, capSetgid.name, grantHint(capSetgid), name)
}

// checkNice reports a nice value below the runner's own, which a process
// without CAP_SYS_NICE may only take within its RLIMIT_NICE.
func checkNice(checks *reporter, nice setting[int], runner int) {
	if !nice.isSet() {
		return
	}
	// getpriority returns 20 - nice, so that the result is never negative.
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		return
	}
	own := 20 - prio
	if nice.value >= own {
		return
	}
	var limit unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NICE, &limit) == nil && uint64(20-nice.value) <= limit.Cur {
		return
	}
	if runner == 0 {
		checks.report(nice.key, "nice %d is below the runner's own nice value %d, and the runner runs as root without %s, which lowering it needs: %s, or use a nice value of at least %d", nice.value, own, capSysNice.name, grantHint(capSysNice), own)
		return
	}
	checks.report(nice.key, "nice %d is below the runner's own nice value %d, and only root may lower it: run the daemon as root, or use a nice value of at least %d", nice.value, own, own)
}

// rlimitKey pairs a limit setting with its resource and the hard limit
// the child gets.
type rlimitKey struct {
	name     string
	key      keyPath
	resource int
	hard     uint64
}

// checkRlimits reports limits above the runner's hard limit, which
// setrlimit rejects without CAP_SYS_RESOURCE.
func checkRlimits(checks *reporter, s limitSettings, runner int) {
	var keys []rlimitKey
	if s.memoryMax.isSet() {
		keys = append(keys, rlimitKey{"memory_max", s.memoryMax.key, unix.RLIMIT_DATA, s.memoryMax.value})
	}
	if s.cpuTime.isSet() {
		// The child's hard limit is one second above cpu_time, so that
		// SIGXCPU comes before SIGKILL.
		keys = append(keys, rlimitKey{"cpu_time", s.cpuTime.key, unix.RLIMIT_CPU, uint64(s.cpuTime.value/time.Second) + 1})
	}
	if s.noFile.isSet() {
		keys = append(keys, rlimitKey{"nofile", s.noFile.key, unix.RLIMIT_NOFILE, s.noFile.value})
	}
	if s.nProc.isSet() {
		keys = append(keys, rlimitKey{"nproc", s.nProc.key, unix.RLIMIT_NPROC, s.nProc.value})
	}
	for _, k := range keys {
		var limit unix.Rlimit
		if unix.Getrlimit(k.resource, &limit) != nil {
			continue
		}
		if limit.Max == unix.RLIM_INFINITY || k.hard <= limit.Max {
			continue
		}
		if runner == 0 {
			checks.report(k.key, "%s needs a hard limit of %d, above the runner's own hard limit of %d, and the runner runs as root without %s, which raising it needs: %s, raise the limit (such as LimitNOFILE= in the unit), or lower %s", k.name, k.hard, limit.Max, capSysResource.name, grantHint(capSysResource), k.name)
			continue
		}
		checks.report(k.key, "%s needs a hard limit of %d, above the runner's own hard limit of %d, and only root may raise it: run the daemon as root, raise the limit in the service unit (such as LimitNOFILE=), or lower %s", k.name, k.hard, limit.Max, k.name)
	}
}

// checkNROpen reports a nofile above the kernel's fs.nr_open, which no
// capability lets setrlimit exceed.
func checkNROpen(checks *reporter, s limitSettings) {
	if !s.noFile.isSet() {
		return
	}
	if max, err := readNROpen(); err == nil && s.noFile.value > max {
		checks.report(s.noFile.key, "nofile %d is above the kernel's maximum of %d (fs.nr_open): lower it, or raise fs.nr_open with sysctl", s.noFile.value, max)
	}
}

// readNROpen returns the kernel's cap on RLIMIT_NOFILE.
func readNROpen() (uint64, error) {
	data, err := os.ReadFile("/proc/sys/fs/nr_open")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, errors.New("invalid fs.nr_open")
	}
	return n, nil
}
