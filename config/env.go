package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnvPrefix starts the names of the variables that belong to the
// runner itself, such as AGENT_RUNNER_CONFIG.
const reservedEnvPrefix = "AGENT_RUNNER_"

// checkEnvName returns an error when name cannot be given to a job. An
// invalid name is left out of the error, because it may be a secret
// pasted where a name belongs.
func checkEnvName(name string) error {
	if !envNamePattern.MatchString(name) {
		return errors.New(`invalid environment variable name: use letters, digits and "_", not starting with a digit`)
	}
	if strings.HasPrefix(name, reservedEnvPrefix) {
		return fmt.Errorf("environment variable name %q is reserved: names starting with %s belong to the runner, so pick another name", name, reservedEnvPrefix)
	}
	return nil
}

func (l *loader) checkEnvNames(path keyPath, names []string) {
	for i, name := range names {
		if err := checkEnvName(name); err != nil {
			l.reportEntry(path, i, "entry %d: %v", i+1, err)
		}
	}
}

// Kinds of envValue. The last three are secret references, written as
// {file = "..."}, {env = "..."} or {credential = "..."}.
const (
	envInline     = "inline"
	envFile       = "file"
	envVariable   = "env"
	envCredential = "credential"
)

var secretKinds = []string{envCredential, envVariable, envFile}

var secretExamples = map[string]string{
	envCredential: `"token"`,
	envVariable:   `"TOKEN"`,
	envFile:       `"secrets/token"`,
}

// envValue is one entry of an env table before its secret is read.
type envValue struct {
	// kind is envInline or one of secretKinds.
	kind string
	// text is the inline value, the absolute path of a secret file, or the
	// name of a variable or credential.
	text string
	key  keyPath
}

// decodeEnv returns the valid entries of the env table in t.
func (l *loader) decodeEnv(t table) map[string]envValue {
	env, ok := l.subTable(t, "env", `{ KEY = "value" }`)
	if !ok {
		return nil
	}
	values := map[string]envValue{}
	for _, name := range env.names() {
		if err := checkEnvName(name); err != nil {
			// NOTE: the key path in the report still shows the name.
			l.report(env.key(name), "%v", err)
			continue
		}
		if value, ok := l.decodeEnvValue(env, name); ok {
			values[name] = value
		}
	}
	return values
}

func (l *loader) decodeEnvValue(env table, name string) (envValue, bool) {
	path := env.key(name)
	switch value := env.values[name].(type) {
	case string:
		return envValue{kind: envInline, text: value, key: path}, true
	case map[string]any:
		return l.decodeSecretReference(table{path: path, values: value})
	default:
		l.report(path, `must be a string or a secret reference such as {file = "secrets/token"}, not %s`, typeName(value))
		return envValue{}, false
	}
}

// decodeSecretReference reads a table that must set exactly one of file,
// env or credential.
func (l *loader) decodeSecretReference(t table) (envValue, bool) {
	l.checkKeys(t, "in a secret reference", secretKinds, nil)
	var kinds []string
	for _, kind := range secretKinds {
		if _, ok := t.values[kind]; ok {
			kinds = append(kinds, kind)
		}
	}
	switch len(kinds) {
	case 0:
		l.report(t.path, `empty secret reference: set exactly one of file, env or credential, such as {file = "secrets/token"}`)
		return envValue{}, false
	case 1:
	default:
		l.report(t.path, "secret reference sets %s: set exactly one of file, env or credential", strings.Join(kinds, " and "))
		return envValue{}, false
	}
	kind := kinds[0]
	text, ok := l.nonEmptyString(t, kind, secretExamples[kind])
	if !ok || !l.checkSecretSource(t.key(kind), kind, text) {
		return envValue{}, false
	}
	if kind == envFile {
		text = l.resolve(text)
	}
	return envValue{kind: kind, text: text, key: t.path}, true
}

// checkSecretSource reports a variable or credential name that cannot
// exist. The reports leave the name out, because an invalid name can be
// the secret itself, pasted where its name belongs.
func (l *loader) checkSecretSource(path keyPath, kind, name string) bool {
	switch {
	case kind == envVariable && !envNamePattern.MatchString(name):
		l.report(path, `invalid environment variable name: env takes the name of a variable set for the runner, such as "DISCORD_TOKEN", made of letters, digits and "_" and not starting with a digit. `+
			`Set the secret itself as the value of that variable, or write it to a file and use { file = "secrets/token" }`)
		return false
	case kind == envCredential && !validCredentialName(name):
		l.report(path, `invalid credential name: credential takes the name given to LoadCredential= in the systemd unit, such as "discord-token", which contains no ":" or "/". `+
			`Write the secret itself to a file and load it with LoadCredential=discord-token:/path/to/secret`)
		return false
	}
	return true
}

// validCredentialName reports whether systemd can pass a credential of
// that name. The name becomes a file name in $CREDENTIALS_DIRECTORY, and
// LoadCredential=NAME:PATH ends the name at the first ":".
func validCredentialName(name string) bool {
	return !strings.ContainsAny(name, ":/") && name != "." && name != ".."
}
