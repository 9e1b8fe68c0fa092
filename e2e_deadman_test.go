package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// healthzProblem is one entry of the /healthz problems list.
type healthzProblem struct{ Kind, Name, Reason string }

// startWithHealth writes jobsTOML with an http address, starts the
// daemon and returns the base URL of its health server.
func startWithHealth(t *testing.T, jobsTOML string) (*project, string) {
	t.Helper()
	port := freePort(t)
	p := newProject(t, jobsTOML)
	body, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	withHTTP := strings.Replace(string(body), "[runner]\n", fmt.Sprintf("[runner]\nhttp = \":%d\"\n", port), 1)
	if err := os.WriteFile(p.config, []byte(withHTTP), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// healthzProblems returns the status code of /healthz and its problems.
func healthzProblems(t *testing.T, base string) (int, []healthzProblem) {
	t.Helper()
	code, body := get(t, base+"/healthz")
	var report struct{ Problems []healthzProblem }
	if err := json.Unmarshal([]byte(body), &report); err != nil {
		return code, nil
	}
	return code, report.Problems
}

// hasReason reports whether problems contains one for job name whose
// reason contains text.
func hasReason(problems []healthzProblem, name, text string) bool {
	for _, problem := range problems {
		if problem.Kind == "job" && problem.Name == name && strings.Contains(problem.Reason, text) {
			return true
		}
	}
	return false
}

func TestDeadmanMaxAgeFlipsHealthz(t *testing.T) {
	p, base := startWithHealth(t, `[jobs.digest]
command = ["sh", "-c", "test ! -e broken"]
every = "1s"
max_age = "3s"
`)
	d := p.startDaemon()
	defer d.stop()
	waitFor(t, "healthz to report healthy", func() bool {
		code, _ := healthzProblems(t, base)
		return code == http.StatusOK
	})

	if err := os.WriteFile(p.path("broken"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "healthz to report the stale job", func() bool {
		code, problems := healthzProblems(t, base)
		return code == http.StatusServiceUnavailable && hasReason(problems, "digest", "no successful run for")
	})
	_, problems := healthzProblems(t, base)
	if !hasReason(problems, "digest", "(max_age 3s)") {
		t.Errorf("problems: got %+v, want the max_age in the reason", problems)
	}

	if err := os.Remove(p.path("broken")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "healthz to recover after a successful run", func() bool {
		code, _ := healthzProblems(t, base)
		return code == http.StatusOK
	})
}

func TestDeadmanHeartbeatFlipsHealthz(t *testing.T) {
	p, base := startWithHealth(t, `[jobs.worker]
command = ["sh", "-c", "if test -e beating; then touch beat; fi"]
every = "1s"
heartbeat = { file = "beat", max_age = "2s" }
`)
	if err := os.WriteFile(p.path("beating"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d := p.startDaemon()
	defer d.stop()
	waitFor(t, "healthz to report healthy", func() bool {
		code, _ := healthzProblems(t, base)
		return code == http.StatusOK
	})

	if err := os.Remove(p.path("beating")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "healthz to report the stale heartbeat", func() bool {
		code, problems := healthzProblems(t, base)
		return code == http.StatusServiceUnavailable && hasReason(problems, "worker", "heartbeat file")
	})
	_, problems := healthzProblems(t, base)
	if len(problems) != 1 {
		t.Errorf("problems: got %+v, want only the heartbeat, since every run exits 0", problems)
	}

	if err := os.WriteFile(p.path("beating"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "healthz to recover once the job beats again", func() bool {
		code, _ := healthzProblems(t, base)
		return code == http.StatusOK
	})
}
