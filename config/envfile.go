package config

import (
	"errors"
	"fmt"
	"strings"
)

// maxReadSize bounds env files and secret files. Both are small, and the
// bound keeps a path such as /dev/zero from exhausting memory.
const maxReadSize = 1 << 20

// ReadEnvFile reads a file of KEY=VALUE lines. Blank lines and lines
// starting with "#" are skipped, a line may start with "export ", and a
// value may be wrapped in single or double quotes, which are removed
// without processing escapes. A later line wins over an earlier one with
// the same name. Names follow the rules of env tables, so names starting
// with AGENT_RUNNER_ are rejected.
//
// Errors name the file and the line but never quote the line, because it
// may contain a secret.
func ReadEnvFile(path string) (map[string]string, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	env, err := parseEnvFile(string(data))
	if err != nil {
		return nil, fmt.Errorf("read env file: %s:%w", path, err)
	}
	return env, nil
}

// parseEnvFile parses the lines of an env file. Its errors start with the
// line number.
func parseEnvFile(text string) (map[string]string, error) {
	env := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, err := parseEnvLine(line)
		if err != nil {
			return nil, fmt.Errorf("%d: %w", i+1, err)
		}
		env[name] = value
	}
	return env, nil
}

func parseEnvLine(line string) (name, value string, err error) {
	line = strings.TrimPrefix(line, "export ")
	name, value, found := strings.Cut(line, "=")
	if !found {
		return "", "", errors.New(`missing "=": write KEY=VALUE`)
	}
	name = strings.TrimSpace(name)
	if err := checkEnvName(name); err != nil {
		return "", "", err
	}
	value, err = unquote(strings.TrimSpace(value))
	return name, value, err
}

// unquote removes one pair of matching quotes around value.
func unquote(value string) (string, error) {
	if value == "" || (value[0] != '"' && value[0] != '\'') {
		return value, nil
	}
	quote := value[0]
	if len(value) < 2 || value[len(value)-1] != quote {
		return "", fmt.Errorf("missing closing %c: end the value with the quote it starts with", quote)
	}
	return value[1 : len(value)-1], nil
}

// readSmallFile reads a regular file of at most maxReadSize bytes.
func readSmallFile(path string) ([]byte, error) {
	return ReadRegularFile(path, maxReadSize)
}
