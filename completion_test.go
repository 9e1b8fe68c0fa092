package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCompleteAfterLeadingConfig(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config.toml")
	jobs := "[jobs.digest]\ncommand = [\"true\"]\nevery = \"1h\"\n\n[jobs.backup]\ncommand = [\"true\"]\nevery = \"1h\"\n"
	if err := os.WriteFile(config, []byte(jobs), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGENT_RUNNER_CONFIG", filepath.Join(dir, "absent.toml"))

	tests := []struct {
		name  string
		words []string
		want  []string
	}{
		{"config value", []string{"--config", ""}, []string{filesDirective}},
		{"config value after =", []string{"--config=con"}, []string{filesDirective}},
		{"command after config", []string{"--config", config, "run-j"}, []string{"run-job"}},
		{"command after config=", []string{"--config=" + config, "che"}, []string{"check"}},
		{"job name after config", []string{"--config", config, "run-job", ""}, []string{"backup", "digest"}},
		{"job name after -config", []string{"-config", config, "next", "d"}, []string{"digest"}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := complete("bash", test.words)
			if !slices.Equal(got, test.want) {
				t.Errorf("complete(%q) = %q, want %q", test.words, got, test.want)
			}
		})
	}
}
