package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigMissingBlamesEnvVariable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone.toml")
	t.Setenv("AGENT_RUNNER_CONFIG", path)
	err := configMissing(path)
	if err == nil {
		t.Fatal("configMissing of a missing file = nil, want an error")
	}
	if !strings.Contains(err.Error(), "which AGENT_RUNNER_CONFIG names") {
		t.Errorf("error does not say AGENT_RUNNER_CONFIG named the file: %v", err)
	}
	if strings.Contains(err.Error(), "or set AGENT_RUNNER_CONFIG") {
		t.Errorf("error asks to set the variable that is already set: %v", err)
	}
}

func TestConfigMissingWithoutEnvVariable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone.toml")
	t.Setenv("AGENT_RUNNER_CONFIG", "")
	err := configMissing(path)
	if err == nil {
		t.Fatal("configMissing of a missing file = nil, want an error")
	}
	if !strings.Contains(err.Error(), "pass --config PATH or set AGENT_RUNNER_CONFIG") {
		t.Errorf("error does not say how to name the config: %v", err)
	}
}
