package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHealthzFollowsJobHealth(t *testing.T) {
	port := freePort(t)
	p := newProject(t, `[jobs.flaky]
command = ["sh", "-c", "test -e healthy"]
every = "1s"
`)
	body, _ := os.ReadFile(p.config)
	os.WriteFile(p.config, []byte(strings.Replace(string(body), "[runner]\n", fmt.Sprintf("[runner]\nhttp = \":%d\"\n", port), 1)), 0o600)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	d := p.startDaemon()
	waitFor(t, "healthz to report the failing job", func() bool {
		code, _ := get(t, base+"/healthz")
		return code == http.StatusServiceUnavailable
	})
	_, report := get(t, base+"/healthz")
	var parsed struct {
		Status   string
		Problems []struct{ Kind, Name string }
	}
	if err := json.Unmarshal([]byte(report), &parsed); err != nil {
		t.Fatalf("healthz body %q is not JSON: %v", report, err)
	}
	if parsed.Status != "unhealthy" || len(parsed.Problems) != 1 || parsed.Problems[0].Name != "flaky" {
		t.Errorf("healthz = %+v, want the flaky job named", parsed)
	}

	os.WriteFile(p.path("healthy"), nil, 0o600)
	waitFor(t, "healthz to recover", func() bool {
		code, _ := get(t, base+"/healthz")
		return code == http.StatusOK
	})

	code, metrics := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics status %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, name := range []string{"agent_runner_runs_total", "agent_runner_run_duration_seconds", "agent_runner_schedule_lateness_seconds", "agent_runner_store_write_seconds"} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if h := families["agent_runner_store_write_seconds"]; h != nil && h.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
		t.Errorf("agent_runner_store_write_seconds has no samples after several runs")
	}
	if code, page := get(t, base+"/"); code != http.StatusOK || !strings.Contains(page, `data-job="flaky"`) {
		t.Errorf("status page = %d, want a row for the job", code)
	}
	d.stop()
}
