package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// A descriptor that agent-runner inherited without close-on-exec, such
// as one a shell leaked, does not reach a job's process.
func TestInheritedDescriptorNotPassedToJob(t *testing.T) {
	p := newProject(t, `[jobs.fds]
command = ["sh", "-c", "ls /proc/self/fd"]
every = "1h"
`)
	leaked, err := os.Open(p.config)
	if err != nil {
		t.Fatal(err)
	}
	defer leaked.Close()
	cmd := p.command("run-job", "fds")
	// ExtraFiles become descriptors 3 and up in agent-runner, without
	// close-on-exec.
	cmd.ExtraFiles = []*os.File{leaked}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run-job: %v\n%s", err, stderr.String())
	}
	fds := strings.Fields(stdout.String())
	if len(fds) == 0 {
		t.Fatalf("job listed no descriptors:\n%s", stderr.String())
	}
	for _, fd := range fds {
		// ls holds 3 open for the listing itself.
		if fd != "0" && fd != "1" && fd != "2" && fd != "3" {
			t.Errorf("job has descriptor %s open; want only 0 to 3", fd)
		}
	}
}
