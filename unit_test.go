package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

func TestShippedUnitMatchesTemplate(t *testing.T) {
	var rendered bytes.Buffer
	if err := unitTemplate.Execute(&rendered, defaultUnit); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("UPDATE_UNIT") == "1" {
		if err := os.WriteFile("contrib/agent-runner.service", rendered.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shipped, err := os.ReadFile("contrib/agent-runner.service")
	if err != nil {
		t.Fatal(err)
	}
	if rendered.String() != string(shipped) {
		t.Errorf("contrib/agent-runner.service differs from the template; regenerate it with UPDATE_UNIT=1 go test -run TestShippedUnit .")
	}
}

func TestInstallUnitUsesThisConfig(t *testing.T) {
	p := newProject(t, "[jobs.a]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("install-unit")
	if res.code != 0 {
		t.Fatalf("install-unit exit %d: %s", res.code, res.stderr)
	}
	for _, want := range []string{
		"ExecStart=" + binary + " run --config " + p.config,
		"WorkingDirectory=" + p.dir,
		"ReadWritePaths=" + p.path("state"),
		"TimeoutStopSec=20s",
		"Type=notify",
		"Restart=always",
		"StartLimitIntervalSec=0",
		"KillMode=mixed",
		"ExecReload=/bin/kill -HUP $MAINPID",
	} {
		if !strings.Contains(res.stdout, want+"\n") {
			t.Errorf("unit lacks %q:\n%s", want, res.stdout)
		}
	}
	// The test's project lives in a temporary folder, usually /tmp.
	if strings.HasPrefix(p.config, "/tmp/") && !strings.Contains(res.stderr, "the config "+p.config+" is under /tmp, which PrivateTmp=true hides") {
		t.Errorf("install-unit for a config under /tmp printed %q, want a warning", res.stderr)
	}
}

func TestShippedUnitHasNoWarnings(t *testing.T) {
	if got := unitWarnings(defaultUnit); len(got) != 0 {
		t.Errorf("warnings for the shipped unit: %q", got)
	}
	values := defaultUnit
	values.WorkingDir = "/var/tmp/bots"
	if got := unitWarnings(values); len(got) != 1 || !strings.Contains(got[0], "the working folder /var/tmp/bots is under /var/tmp") {
		t.Errorf("warnings for a working folder under /var/tmp: %q", got)
	}
	values.WorkingDir = "/tmpfiles"
	if got := unitWarnings(values); len(got) != 0 {
		t.Errorf("warnings for /tmpfiles: %q", got)
	}
}

func TestInstallUnitAddsWrittenFolders(t *testing.T) {
	p := newProject(t, `[jobs.a]
command = ["true"]
every = "1h"
heartbeat = { file = "beats/a.beat", max_age = "2h" }
expect_file_updated = "out/a.txt"

[listeners.web]
kind = "exec"
command = ["sleep", "600"]
probe = { heartbeat = "beats/web.beat", max_age = "1m" }

[listeners.chat]
kind = "twitch"
channels = ["somechannel"]
enabled = false
log_to = "logs/chat.jsonl"

[listeners.inside]
kind = "twitch"
channels = ["somechannel"]
enabled = false
log_to = "state/inside.jsonl"
`)
	res := p.run("install-unit")
	if res.code != 0 {
		t.Fatalf("install-unit exit %d: %s", res.code, res.stderr)
	}
	want := "ReadWritePaths=" + p.path("state") +
		" -" + p.path("beats") +
		" -" + p.path("logs") +
		" -" + p.path("out") + "\n"
	if !strings.Contains(res.stdout, want) {
		t.Errorf("unit lacks %q:\n%s", want, res.stdout)
	}
}

func TestInstallUnitRuntimeDirForSocket(t *testing.T) {
	p := newProject(t, "[jobs.a]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	body, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	withSocket := strings.Replace(string(body), "[runner]\n", "[runner]\nsocket = \"/run/agent-runner/control.sock\"\n", 1)
	if err := os.WriteFile(p.config, []byte(withSocket), 0o600); err != nil {
		t.Fatal(err)
	}
	res := p.run("install-unit")
	if res.code != 0 {
		t.Fatalf("install-unit exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "\nRuntimeDirectory=agent-runner\n") {
		t.Errorf("unit lacks RuntimeDirectory=agent-runner:\n%s", res.stdout)
	}
	if want := "\nReadWritePaths=" + p.path("state") + "\n"; !strings.Contains(res.stdout, want) {
		t.Errorf("unit lacks %q:\n%s", want, res.stdout)
	}
}

func TestInstallUnitWarnsMissingStateDir(t *testing.T) {
	p := newProject(t, "[jobs.a]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	warning := "the state folder " + p.path("state") + " does not exist"
	res := p.run("install-unit", "--user", "nobody")
	if res.code != 0 {
		t.Fatalf("install-unit exit %d: %s", res.code, res.stderr)
	}
	if !strings.Contains(res.stderr, warning) {
		t.Errorf("install-unit without a state folder printed %q, want %q", res.stderr, warning)
	}
	if !strings.Contains(res.stderr, "install -d -o nobody -m 0700 "+p.path("state")) {
		t.Errorf("install-unit printed %q, want the install -d command", res.stderr)
	}

	if err := os.Mkdir(p.path("state"), 0o700); err != nil {
		t.Fatal(err)
	}
	res = p.run("install-unit", "--user", "nobody")
	if strings.Contains(res.stderr, warning) {
		t.Errorf("install-unit with a state folder printed %q", res.stderr)
	}
}

func TestStopTimeoutCoversHookGrace(t *testing.T) {
	tests := []struct {
		shutdown, killGrace, want time.Duration
	}{
		{30 * time.Second, 10 * time.Second, 45 * time.Second},
		{30 * time.Second, time.Minute, 95 * time.Second},
	}
	for _, tt := range tests {
		runner := config.Runner{ShutdownTimeout: tt.shutdown, KillGrace: tt.killGrace}
		if got := stopTimeout(runner); got != tt.want {
			t.Errorf("stopTimeout(shutdown_timeout %v, kill_grace %v) = %v, want %v", tt.shutdown, tt.killGrace, got, tt.want)
		}
	}
}
