package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestDoctorFindsPlantedFaults(t *testing.T) {
	p := newProject(t, `[jobs.ghost]
command = ["no-such-tool-xyz"]
every = "1h"

[jobs.secretive]
command = ["true"]
every = "1h"
env = { TOKEN = { file = "missing-token" } }
`)
	os.MkdirAll(p.path("state"), 0o777)
	os.Chmod(p.path("state"), 0o777)
	res := p.run("doctor")
	if res.code != 1 {
		t.Errorf("doctor exit = %d, want 1", res.code)
	}
	for _, want := range []string{
		`"no-such-tool-xyz" not found in PATH`,
		"secret file",
		"is open to other users",
		"no daemon responds",
		"3 problems found",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, res.stdout)
		}
	}

	clean := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	d := clean.startDaemon()
	res = clean.run("doctor")
	if res.code != 0 || !strings.Contains(res.stdout, "the daemon answers") {
		t.Errorf("doctor on a healthy setup = %d:\n%s", res.code, res.stdout)
	}
	d.stop()
}

func TestDoctorAcceptsStateDirCreatedAtFirstStart(t *testing.T) {
	p := newProject(t, "[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n")
	body := strings.Replace(readFile(p.config), "[runner]\n", "[runner]\nstate_dir = \"var/state\"\n", 1)
	if err := os.WriteFile(p.config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	res := p.run("doctor")
	if strings.Contains(res.stdout, "PROBLEM state_dir") || !strings.Contains(res.stdout, "will be created at the first start") {
		t.Errorf("doctor with a state_dir two levels below a writable folder:\n%s", res.stdout)
	}
}

func TestDoctorTrustsDaemonEnvironment(t *testing.T) {
	p := newProject(t, `[jobs.secretive]
command = ["true"]
every = "1h"
env = { TOKEN = { env = "DOCTOR_TEST_TOKEN" } }
`)
	// The daemon inherits the variable, and the shell that runs doctor
	// then lacks it.
	t.Setenv("DOCTOR_TEST_TOKEN", "a-token-long-enough")
	d := p.startDaemon()
	defer d.stop()
	os.Unsetenv("DOCTOR_TEST_TOKEN")

	res := p.run("doctor")
	if res.code != 0 {
		t.Errorf("doctor exit = %d, want 0:\n%s", res.code, res.stdout)
	}
	if !strings.Contains(res.stdout, "note     in this shell only, not for the running daemon:") {
		t.Errorf("doctor output lacks the note on the shell's missing variable:\n%s", res.stdout)
	}
	if strings.Contains(res.stdout, "PROBLEM") {
		t.Errorf("doctor reports a problem the daemon does not have:\n%s", res.stdout)
	}
}

// A state folder behind a folder that the user of doctor cannot search
// gets a fix, not a bare permission error.
func TestDoctorUnreachableStateDir(t *testing.T) {
	dir := sharedDir(t)
	private := filepath.Join(dir, "private")
	if err := os.MkdirAll(filepath.Join(private, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.toml")
	body := "[runner]\nstate_dir = \"private/state\"\n\n[jobs.fine]\ncommand = [\"true\"]\nevery = \"1h\"\n"
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "doctor", "--config", config)
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		// Root passes any mode, so doctor runs as nobody.
		nobody := lookupNobody(t)
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}}
		if err := os.Chmod(filepath.Dir(binary), 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		if err := os.Chmod(private, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(private, 0o700) })
	}
	output, err := cmd.CombinedOutput()
	if err == nil {
		t.Errorf("doctor exited 0, want a failure:\n%s", output)
	}
	want := "cannot be reached by this user (stat " + filepath.Join(private, "state") + ": permission denied): run doctor as the user the daemon runs as"
	if !strings.Contains(string(output), want) {
		t.Errorf("doctor output lacks %q:\n%s", want, output)
	}
}
