package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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
	env, _, err := Environment(Settings{Identity: identity}, nil)
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
	env, _, err := Environment(Settings{
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
	env, _, err := Environment(Settings{Identity: config.Identity{Set: true, GID: 990, Groups: []uint32{990}}}, nil)
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

// Values of env_file and inherit_env whose names are secrets come back as
// secrets, each as the child gets it: env overrides one, env_file another.
func TestEnvironmentSecretsByName(t *testing.T) {
	t.Setenv("INHERITED_TOKEN", "inherited-token-value")
	t.Setenv("SHADOWED_SECRET", "shadowed-by-env-file")
	t.Setenv("GIT_AUTHOR_NAME", "Plain Author")
	file := filepath.Join(t.TempDir(), "job.env")
	text := "API_TOKEN=file-token-value\nSHADOWED_SECRET=from-the-env-file\n" +
		"OVERRIDDEN_PASSWORD=replaced-by-env\nDATA_DIR=/srv/data\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	env, secrets, err := Environment(Settings{
		EnvFile:    file,
		InheritEnv: []string{"INHERITED_TOKEN", "SHADOWED_SECRET", "GIT_AUTHOR_NAME", "UNSET_TOKEN"},
		Env:        map[string]config.Secret{"OVERRIDDEN_PASSWORD": config.NewSecret("from-env", "inline")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}

	var got []string
	for _, secret := range secrets {
		got = append(got, secret.Reveal())
	}
	want := []string{"file-token-value", "inherited-token-value", "from-the-env-file"}
	if !slices.Equal(got, want) {
		t.Errorf("secrets = %q, want %q", got, want)
	}
	if got := lastValue(env, "SHADOWED_SECRET"); got != "from-the-env-file" {
		t.Errorf("SHADOWED_SECRET = %q, want the env file's value", got)
	}
	for _, secret := range secrets {
		if strings.Contains(secret.String(), secret.Reveal()) {
			t.Errorf("secret prints as %q, with its value", secret.String())
		}
	}
}

// An env file edited between two children gives each child's redaction
// the value that child got.
func TestEnvironmentSecretsFollowEditedFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "job.env")
	for _, value := range []string{"first-token-value", "second-token-value"} {
		if err := os.WriteFile(file, []byte("BOT_TOKEN="+value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, secrets, err := Environment(Settings{EnvFile: file}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(secrets) != 1 || secrets[0].Reveal() != value {
			t.Errorf("secrets after writing %s = %v, want that value", value, secrets)
		}
	}
}

// A switch such as true under a secret name is no secret, also when it
// replaces an inherited secret of that name.
func TestEnvironmentSecretsSkipSwitches(t *testing.T) {
	t.Setenv("REQUIRE_AUTH", "inherited-auth-value")
	file := filepath.Join(t.TempDir(), "job.env")
	if err := os.WriteFile(file, []byte("REQUIRE_AUTH=true\nUSE_COOKIES=Off\nAPI_TOKEN=file-token-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, secrets, err := Environment(Settings{EnvFile: file, InheritEnv: []string{"REQUIRE_AUTH"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, secret := range secrets {
		got = append(got, secret.Reveal())
	}
	if want := []string{"file-token-value"}; !slices.Equal(got, want) {
		t.Errorf("secrets = %q, want %q", got, want)
	}
}
