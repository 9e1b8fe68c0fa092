package health

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
)

func TestLoopbackServerRejectsForeignHost(t *testing.T) {
	source := &fakeSource{}
	source.set(control.Status{Jobs: []jobs.JobStatus{job("collect", jobs.StateScheduled, nil)}}, nil)
	base := startServer(t, source.get, NewMetrics())
	port := strings.TrimPrefix(base, "http://127.0.0.1")
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		host string
		want int
	}{
		{"127.0.0.1" + port, http.StatusOK},
		{"localhost" + port, http.StatusOK},
		{"LOCALHOST.", http.StatusOK},
		{"[::1]" + port, http.StatusOK},
		{"status.localhost" + port, http.StatusOK},
		{hostname + port, http.StatusOK},
		// A page of a domain that re-resolved to 127.0.0.1 sends its
		// own name.
		{"rebind.example.com" + port, http.StatusMisdirectedRequest},
		{"localhost.example.com", http.StatusMisdirectedRequest},
	}
	for _, path := range []string{"/", "/healthz", "/metrics"} {
		for _, c := range cases {
			req, err := http.NewRequest(http.MethodGet, base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = c.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET %s with Host %q: %v", path, c.host, err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("GET %s with Host %q: status %d, want %d", path, c.host, resp.StatusCode, c.want)
			}
		}
	}
}
