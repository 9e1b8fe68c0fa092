package config

import (
	"path/filepath"
	"testing"
	"time"
)

const deadManConfig = `
[defaults]
max_age = "2h"

[jobs.digest]
command = ["true"]
every = "1h"
heartbeat = { file = "var/digest.heartbeat", max_age = "10m", json_field = "time" }
expect_file_updated = "var/digest.json"

[jobs.backup]
command = ["true"]
every = "1h"
max_age = "26h"

[listeners.server]
kind = "exec"
command = ["true"]
stale_after = "15m"
`

func TestLoadDeadManKeys(t *testing.T) {
	path := writeConfig(t, deadManConfig)
	config, err := Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	dir := filepath.Dir(path)

	digest := mustJob(t, config, "digest")
	if digest.MaxAge != 2*time.Hour {
		t.Errorf("digest MaxAge: got %s, want 2h from [defaults]", digest.MaxAge)
	}
	if digest.ExpectFileUpdated != filepath.Join(dir, "var/digest.json") {
		t.Errorf("ExpectFileUpdated: got %q, want it resolved in %s", digest.ExpectFileUpdated, dir)
	}
	heartbeat := digest.Heartbeat
	if heartbeat == nil {
		t.Fatal("Heartbeat: got nil")
	}
	if heartbeat.File != filepath.Join(dir, "var/digest.heartbeat") {
		t.Errorf("Heartbeat.File: got %q, want it resolved in %s", heartbeat.File, dir)
	}
	if heartbeat.MaxAge != 10*time.Minute {
		t.Errorf("Heartbeat.MaxAge: got %s, want 10m", heartbeat.MaxAge)
	}
	if heartbeat.JSONField != "time" {
		t.Errorf("Heartbeat.JSONField: got %q, want time", heartbeat.JSONField)
	}

	backup := mustJob(t, config, "backup")
	if backup.MaxAge != 26*time.Hour {
		t.Errorf("backup MaxAge: got %s, want 26h over [defaults]", backup.MaxAge)
	}
	if backup.Heartbeat != nil || backup.ExpectFileUpdated != "" {
		t.Errorf("backup: got heartbeat %v and expect_file_updated %q, want neither", backup.Heartbeat, backup.ExpectFileUpdated)
	}

	server := config.Listener("server")
	if server == nil {
		t.Fatal("listener server not found")
	}
	if server.StaleAfter != 15*time.Minute {
		t.Errorf("StaleAfter: got %s, want 15m", server.StaleAfter)
	}
}

func TestLoadDeadManOffByDefault(t *testing.T) {
	config, err := Load(writeConfig(t, "[jobs.digest]\ncommand = [\"true\"]\nevery = \"1h\"\n"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	job := mustJob(t, config, "digest")
	if job.MaxAge != 0 {
		t.Errorf("MaxAge: got %s, want 0", job.MaxAge)
	}
	if job.Heartbeat != nil {
		t.Errorf("Heartbeat: got %+v, want nil", job.Heartbeat)
	}
}
