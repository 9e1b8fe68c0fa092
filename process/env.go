package process

import (
	"path/filepath"
	"sort"
	"strings"

	"github.com/agent-runner/agent-runner/config"
)

// passedEnv names the daemon's variables every child gets when they are
// set, so locale and home-relative tools work without inherit_env.
var passedEnv = []string{"HOME", "USER", "LANG", "TZ"}

// DaemonMarker is the entry every child of a daemon's listeners, hooks and
// alerts gets, naming the daemon by its state folder. A daemon that starts
// after another died kills what still carries it. The folder is named by
// ResolvedDir, so that a daemon started through a linked path finds the
// children of one started through the real path.
func DaemonMarker(stateDir string) string {
	return daemonVar + "=" + ResolvedDir(stateDir)
}

// ResolvedDir returns dir with symbolic links resolved, or dir itself when
// it cannot be resolved.
func ResolvedDir(dir string) string {
	if resolved, err := filepath.EvalSymlinks(dir); err == nil {
		return resolved
	}
	return dir
}

// DaemonMarkers returns the entries a start searches for: DaemonMarker,
// and the path as given when it differs, which children of daemons that
// did not resolve it carry.
func DaemonMarkers(stateDir string) []string {
	markers := []string{DaemonMarker(stateDir)}
	if asWritten := daemonVar + "=" + stateDir; asWritten != markers[0] {
		markers = append(markers, asWritten)
	}
	return markers
}

const daemonVar = "AGENT_RUNNER_DAEMON"

// Settings are the process rules that jobs, hooks and exec listeners share.
type Settings struct {
	// Path is the PATH every child gets unless Env sets its own.
	Path       []string
	WorkingDir string
	Env        map[string]config.Secret
	// EnvFile is re-read for every child, so edits apply without a
	// reload. A root daemon reads it as Identity's user.
	EnvFile    string
	InheritEnv []string
	// Identity sets HOME, USER and LOGNAME for its user, over the
	// daemon's own; inherit_env, env_file and env still win.
	Identity config.Identity
}

// Environment builds a child's variables: vars first (the run's own, so
// the leftover scan finds its marker early), then PATH, the passed-through
// daemon variables, the identity's user, inherit_env, env_file and finally
// env. exec.Cmd keeps the last of duplicate names, so later sources win.
//
// It also returns, as secrets for a Redactor, the values from inherit_env
// and env_file that the child gets under a name config.SecretName counts
// as a secret. They come from the same read of the env file as the
// child's variables, so redaction uses the values this child got even
// when the file changes between runs. Env's own values are left to
// NewRedactor, which is given Env.
func Environment(s Settings, vars []string) (env []string, secrets []config.Secret, err error) {
	env = append([]string(nil), vars...)
	env = append(env, "PATH="+strings.Join(s.Path, ":"))
	for _, name := range passedEnv {
		if value, ok := lookupEnv(name); ok {
			env = append(env, name+"="+value)
		}
	}
	if s.Identity.User != "" {
		env = append(env, "HOME="+s.Identity.Home, "USER="+s.Identity.User, "LOGNAME="+s.Identity.User)
	}
	named := map[string]config.Secret{}
	for _, name := range s.InheritEnv {
		if value, ok := lookupEnv(name); ok {
			env = append(env, name+"="+value)
			if config.NamedSecret(name, value) {
				named[name] = config.NewSecret(value, "inherited variable "+name)
			}
		}
	}
	if s.EnvFile != "" {
		fileEnv, err := readEnvFile(s.EnvFile, s.Identity)
		if err != nil {
			return nil, nil, err
		}
		for _, name := range sortedKeys(fileEnv) {
			env = append(env, name+"="+fileEnv[name])
			// The file's value replaces an inherited one in the child.
			delete(named, name)
			if config.NamedSecret(name, fileEnv[name]) {
				named[name] = config.NewSecret(fileEnv[name], "env_file "+s.EnvFile+" "+name)
			}
		}
	}
	for _, name := range sortedKeys(s.Env) {
		env = append(env, name+"="+s.Env[name].Reveal())
	}
	for _, name := range sortedKeys(named) {
		if _, overridden := s.Env[name]; !overridden {
			secrets = append(secrets, named[name])
		}
	}
	return env, secrets, nil
}

// Resolve finds argv0 on the PATH of env, which the child's own env may
// have replaced, or relative to dir when it contains a slash.
func Resolve(argv0, dir string, env []string) (string, error) {
	path := ""
	for _, kv := range env {
		if value, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = value
		}
	}
	return config.LookPath(argv0, dir, filepath.SplitList(path))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
