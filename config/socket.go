package config

import (
	"fmt"
	"path/filepath"

	"github.com/pelletier/go-toml/v2"
)

// LocateSocket returns the control socket path of the config file at
// path without validating the rest of the file, so that a CLI can still
// reach the daemon, which runs the last valid config, after an edit broke
// the file. A file that is not even TOML yields the default socket.
func LocateSocket(path string) (string, error) {
	file, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve config path: %w", err)
	}
	dir := filepath.Dir(file)
	var partial struct {
		Runner struct {
			StateDir string `toml:"state_dir"`
			Socket   string `toml:"socket"`
		} `toml:"runner"`
	}
	if data, err := readConfigFile(file); err == nil {
		// Errors are ignored on purpose: the fields that did decode are
		// the best guess there is.
		_ = toml.Unmarshal(data, &partial)
	}
	resolve := func(p string) string {
		if filepath.IsAbs(p) {
			return filepath.Clean(p)
		}
		return filepath.Join(dir, p)
	}
	if partial.Runner.Socket != "" {
		return resolve(partial.Runner.Socket), nil
	}
	stateDir := "state"
	if partial.Runner.StateDir != "" {
		stateDir = partial.Runner.StateDir
	}
	return filepath.Join(resolve(stateDir), "control.sock"), nil
}
