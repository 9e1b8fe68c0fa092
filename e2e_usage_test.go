package main

import (
	"strings"
	"testing"
)

func TestConfigBeforeTheCommand(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	for _, args := range [][]string{
		{"--config", p.config, "check"},
		{"--config=" + p.config, "check"},
		{"-config", p.config, "next", "fine"},
	} {
		res := runBinary(t, args...)
		if res.code != 0 {
			t.Errorf("agent-runner %v = %d: %s", args, res.code, res.stderr)
		}
	}
}

func TestMissingConfigNamesThePath(t *testing.T) {
	for _, cmd := range []string{"list", "status", "reload", "check"} {
		res := runBinary(t, cmd)
		if res.code != exitFailure || !strings.Contains(res.stderr, "no config file at ") || !strings.Contains(res.stderr, "--config") {
			t.Errorf("%s without a config = %d: %s", cmd, res.code, res.stderr)
		}
		if strings.Contains(res.stderr, "has problems") || strings.Contains(res.stderr, "control.sock") {
			t.Errorf("%s without a config blames something else: %s", cmd, res.stderr)
		}
	}
}

func TestSecondRunRefusesAtOnce(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	d := p.startDaemon()
	defer d.stop()
	res := p.run("run")
	if res.code != exitFailure || !strings.Contains(res.stderr, "a daemon already runs this config") {
		t.Errorf("second run = %d: %s", res.code, res.stderr)
	}
}

func TestNextRejectsDownSinceBeforePrinting(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("next", "--down-since", "20:00", "fine")
	if res.code != exitUsage || res.stdout != "" {
		t.Errorf("next --down-since 20:00 = %d, stdout %q", res.code, res.stdout)
	}
}

func TestInstallUnitUser(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	res := p.run("install-unit", "--user", "nobody")
	if res.code != 0 || !strings.Contains(res.stdout, "\nUser=nobody\n") {
		t.Errorf("install-unit --user nobody = %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = p.run("install-unit", "--user", "no-such-user-xyz")
	if res.code != exitFailure || !strings.Contains(res.stderr, "useradd") {
		t.Errorf("install-unit --user no-such-user-xyz = %d: %s", res.code, res.stderr)
	}
}
