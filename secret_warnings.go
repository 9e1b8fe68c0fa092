package main

import (
	"fmt"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/process"
)

// shortSecretWarnings returns a line for each secret env value that is too
// short to be redacted from output, for check and doctor to name.
func shortSecretWarnings(cfg *config.Config) []string {
	var lines []string
	add := func(kind, name string, env map[string]config.Secret) {
		for _, variable := range process.Unredacted(env) {
			lines = append(lines, fmt.Sprintf("%s %s: secret %s is too short to be redacted from output (under %d bytes, or every line under %d): use a longer value",
				kind, name, variable, process.MinSecretBytes, process.MinSecretLineBytes))
		}
	}
	for _, job := range cfg.Jobs {
		add("job", job.Name, job.Env)
	}
	for _, listener := range cfg.Listeners {
		add("listener", listener.Name, listener.Env)
	}
	return lines
}
