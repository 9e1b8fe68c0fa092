package main

import (
	"fmt"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// configWarnings returns a line for each warning of the loaded config,
// such as a secret too short to be redacted, for check and doctor.
func configWarnings(cfg *config.Config) []string {
	lines := make([]string, 0, len(cfg.Warnings))
	for _, warning := range cfg.Warnings {
		lines = append(lines, warning.String())
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
