package main

import (
	"fmt"
	"time"

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

// pastAtWarnings returns a line for each enabled job whose one-off at
// instant has passed. A job added with such an instant never runs on
// schedule, because a new job catches up nothing from before it was first
// seen, which makes a mistyped date easy to miss.
func pastAtWarnings(cfg *config.Config, now time.Time) []string {
	var lines []string
	for _, job := range cfg.Jobs {
		if job.Enabled && !job.At.IsZero() && job.At.Before(now) {
			lines = append(lines, fmt.Sprintf("job %s: at %s has passed, so the job runs on schedule only if the daemon saw it before then: fix the date, or use run-job",
				job.Name, job.At.UTC().Format(time.RFC3339)))
		}
	}
	return lines
}
