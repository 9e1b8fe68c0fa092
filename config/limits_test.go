package config

import (
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// loadText writes text as config.toml in a temporary folder and loads it.
func loadText(t *testing.T, text string) *Config {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	config, err := Load(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return config
}

func TestLoadLimits(t *testing.T) {
	config := loadText(t, `[defaults]
umask = "027"
nofile = 4096

[jobs.limited]
command = ["true"]
every = "1h"
nice = 5
memory_max = "512M"
cpu_time = "2m"
nproc = 64
user = "root"

[jobs.plain]
command = ["true"]
every = "1h"
umask = "0"

[listeners.server]
kind = "exec"
command = ["true"]
nice = -1
memory_max = 16777216
`)
	want := Limits{Umask: 0o027, UmaskSet: true, Nice: 5, NiceSet: true, MemoryMax: 512 << 20, CPUTime: 2 * time.Minute, NoFile: 4096, NProc: 64}
	if got := mustJob(t, config, "limited").Limits; got != want {
		t.Errorf("limited: got %+v, want %+v", got, want)
	}
	want = Limits{Umask: 0, UmaskSet: true, NoFile: 4096}
	if got := mustJob(t, config, "plain").Limits; got != want {
		t.Errorf("plain: got %+v, want %+v with umask 0 set", got, want)
	}
	want = Limits{Umask: 0o027, UmaskSet: true, Nice: -1, NiceSet: true, MemoryMax: 16 << 20, NoFile: 4096}
	if got := config.Listener("server").Exec.Limits; got != want {
		t.Errorf("listener server: got %+v, want %+v with the [defaults] keys", got, want)
	}
}

func TestLoadIdentityOfUser(t *testing.T) {
	u, err := user.Lookup("root")
	if err != nil {
		t.Skipf("no user root: %v", err)
	}
	config := loadText(t, `[jobs.as-root]
command = ["true"]
every = "1h"
user = "0"
`)
	job := mustJob(t, config, "as-root")
	if os.Geteuid() != 0 {
		if job.Problem == nil || !strings.Contains(job.Problem.Error(), "only root can switch users: run the daemon as root, or remove user") {
			t.Errorf("got problem %v, want the refusal to switch users", job.Problem)
		}
		return
	}
	if job.Problem != nil {
		t.Fatalf("got problem %v, want none", job.Problem)
	}
	id := job.Identity
	if !id.Set || id.User != u.Username || id.Home != u.HomeDir || id.UID != 0 || id.GID != 0 {
		t.Errorf("got identity %+v, want root with home %s", id, u.HomeDir)
	}
	if !slices.Contains(id.Groups, 0) {
		t.Errorf("groups %v lack the primary group 0", id.Groups)
	}
}

// A group without a user keeps the runner's uid and has that group as
// its only supplementary group.
func TestLoadIdentityOfGroup(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Skipf("no group for gid %d: %v", os.Getegid(), err)
	}
	config := loadText(t, `[jobs.grouped]
command = ["true"]
every = "1h"
group = "`+g.Name+`"
`)
	job := mustJob(t, config, "grouped")
	if job.Problem != nil {
		t.Fatalf("got problem %v, want none for the runner's own group", job.Problem)
	}
	want := Identity{Set: true, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid()), Groups: []uint32{uint32(os.Getegid())}}
	id := job.Identity
	if !id.Set || id.User != "" || id.UID != want.UID || id.GID != want.GID || !slices.Equal(id.Groups, want.Groups) {
		t.Errorf("got identity %+v, want %+v", id, want)
	}
}

func TestLoadNProcAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the problem applies to jobs that run as root")
	}
	config := loadText(t, `[jobs.capped]
command = ["true"]
every = "1h"
nproc = 10
`)
	problem := mustJob(t, config, "capped").Problem
	if problem == nil || !strings.Contains(problem.Error(), "jobs.capped.nproc: nproc has no effect on processes that run as root") {
		t.Errorf("got problem %v, want nproc without effect for root", problem)
	}
}

func TestParseByteSize(t *testing.T) {
	valid := map[string]uint64{
		"1":     1,
		"1024":  1024,
		"4K":    4 << 10,
		"512M":  512 << 20,
		"2G":    2 << 30,
		"1T":    1 << 40,
		"8192T": 8192 << 40,
	}
	for text, want := range valid {
		got, err := parseByteSize(text)
		if err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", text, got, err, want)
		}
	}
	for _, text := range []string{"", "0", "0M", "K", "1.5G", "-1", "12X", "1MB", "1 M", "9999999T"} {
		if got, err := parseByteSize(text); err == nil {
			t.Errorf("parseByteSize(%q) = %d, want an error", text, got)
		}
	}
}

func TestReadEffectiveCapabilities(t *testing.T) {
	status := filepath.Join(t.TempDir(), "status")
	text := "Name:\tagent-runner\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n"
	if err := os.WriteFile(status, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	caps, err := readEffectiveCapabilities(status)
	if err != nil {
		t.Fatal(err)
	}
	if caps.has(capSysResource) {
		t.Errorf("CapEff 000001fffeffffff has CAP_SYS_RESOURCE, want it missing")
	}
	for _, c := range []capability{capSetgid, capSetuid, capSysNice} {
		if !caps.has(c) {
			t.Errorf("CapEff 000001fffeffffff lacks %s", c.name)
		}
	}
	if err := os.WriteFile(status, []byte("Name:\tx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readEffectiveCapabilities(status); err == nil {
		t.Error("a status without CapEff gave no error")
	}
}
