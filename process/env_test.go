package process

import (
	"os/exec"
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
