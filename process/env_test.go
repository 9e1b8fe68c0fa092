package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/agent-runner/agent-runner/config"
)

// lastValue returns the value that exec.Cmd gives name in env: the last
// entry wins.
func lastValue(env []string, name string) string {
	cmd := exec.Command("/bin/true")
	cmd.Env = env
	value := ""
	for _, kv := range cmd.Environ() {
		if len(kv) > len(name) && kv[:len(name)+1] == name+"=" {
			value = kv[len(name)+1:]
		}
	}
	return value
}

func TestEnvironmentIdentity(t *testing.T) {
	t.Setenv("HOME", "/root")
	t.Setenv("USER", "root")
	t.Setenv("LOGNAME", "root")
	identity := config.Identity{Set: true, User: "svc", Home: "/var/lib/svc", UID: 990, GID: 990}
	env, err := Environment(Settings{Identity: identity}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"HOME": "/var/lib/svc", "USER": "svc", "LOGNAME": "svc"} {
		if got := lastValue(env, name); got != want {
			t.Errorf("%s = %q, want %q from the job's user", name, got, want)
		}
	}
}

// The job's own env, env_file and inherit_env set these variables over
// the user's.
func TestEnvironmentIdentityJobWins(t *testing.T) {
	t.Setenv("HOME", "/root")
	t.Setenv("LOGNAME", "daemon-login")
	identity := config.Identity{Set: true, User: "svc", Home: "/var/lib/svc", UID: 990, GID: 990}
	env, err := Environment(Settings{
		Identity:   identity,
		InheritEnv: []string{"LOGNAME"},
		Env:        map[string]config.Secret{"HOME": config.NewSecret("/srv/svc", "inline")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := lastValue(env, "HOME"); got != "/srv/svc" {
		t.Errorf("HOME = %q, want the job's env value /srv/svc", got)
	}
	if got := lastValue(env, "LOGNAME"); got != "daemon-login" {
		t.Errorf("LOGNAME = %q, want daemon-login from inherit_env", got)
	}
	if got := lastValue(env, "USER"); got != "svc" {
		t.Errorf("USER = %q, want svc", got)
	}
}

// A group without a user changes none of the user's variables.
func TestEnvironmentGroupOnly(t *testing.T) {
	t.Setenv("HOME", "/root")
	env, err := Environment(Settings{Identity: config.Identity{Set: true, GID: 990, Groups: []uint32{990}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "HOME=/root") || lastValue(env, "HOME") != "/root" {
		t.Errorf("HOME = %q, want the daemon's /root", lastValue(env, "HOME"))
	}
}

func TestDaemonMarkerResolvesLinkedStateFolder(t *testing.T) {
	folder := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "linked")
	if err := os.Symlink(folder, link); err != nil {
		t.Fatal(err)
	}
	if got, want := DaemonMarker(link), DaemonMarker(folder); got != want {
		t.Errorf("DaemonMarker through the link = %q, through the folder = %q; want them equal", got, want)
	}
	markers := DaemonMarkers(link)
	if len(markers) != 2 || markers[0] != DaemonMarker(folder) || markers[1] != "AGENT_RUNNER_DAEMON="+link {
		t.Errorf("DaemonMarkers(link) = %q, want the resolved entry and the linked one", markers)
	}
	if markers := DaemonMarkers(folder); len(markers) != 1 {
		t.Errorf("DaemonMarkers(folder) = %q, want one entry", markers)
	}
}
