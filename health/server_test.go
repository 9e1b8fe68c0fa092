package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

// fakeSource is a Source whose status and error a test changes between
// requests.
type fakeSource struct {
	mu     sync.Mutex
	status control.Status
	err    error
}

func (f *fakeSource) set(status control.Status, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.err = status, err
}

func (f *fakeSource) get() (control.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.err
}

// startServer serves on a free port of 127.0.0.1 until the test ends, and
// returns the base URL.
func startServer(t *testing.T, source Source, metrics *Metrics, opts ...Option) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	server, err := NewServer("127.0.0.1:0", source, metrics, log, opts...)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- server.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := server.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve after Shutdown = %v, want nil", err)
		}
	})
	return "http://" + server.Addr().String()
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp, body
}

func getReport(t *testing.T, base string) (int, Report) {
	t.Helper()
	resp, body := get(t, base+"/healthz")
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var report Report
	if err := json.Unmarshal(body, &report); err != nil {
		t.Fatalf("decode /healthz body %q: %v", body, err)
	}
	return resp.StatusCode, report
}

func TestHealthzFollowsSource(t *testing.T) {
	source := &fakeSource{}
	healthy := control.Status{
		Jobs:      []jobs.JobStatus{job("collect", jobs.StateScheduled, nil)},
		Listeners: []listeners.Health{listener("chat", listeners.StateRunning)},
	}
	source.set(healthy, nil)
	base := startServer(t, source.get, NewMetrics())

	code, report := getReport(t, base)
	if code != http.StatusOK || report.Status != StatusOK {
		t.Fatalf("healthy: code %d, status %q, want 200 ok", code, report.Status)
	}
	if report.Problems == nil || len(report.Problems) != 0 {
		t.Errorf("healthy: problems = %#v, want []", report.Problems)
	}

	failingStatus := healthy
	failingStatus.Jobs = []jobs.JobStatus{job("collect", jobs.StateScheduled, func(s *jobs.JobStatus) {
		s.LastResult = state.ResultFailed
		s.LastExitCode = 1
		s.ConsecutiveFailures = 2
	})}
	source.set(failingStatus, nil)
	code, report = getReport(t, base)
	if code != http.StatusServiceUnavailable || report.Status != StatusUnhealthy {
		t.Fatalf("failing: code %d, status %q, want 503 unhealthy", code, report.Status)
	}
	if len(report.Problems) != 1 || report.Problems[0].Kind != KindJob || report.Problems[0].Name != "collect" {
		t.Errorf("failing: problems = %+v, want one for job collect", report.Problems)
	}

	source.set(healthy, nil)
	if code, report = getReport(t, base); code != http.StatusOK || report.Status != StatusOK {
		t.Errorf("recovered: code %d, status %q, want 200 ok", code, report.Status)
	}
}

func TestHealthzSourceError(t *testing.T) {
	source := &fakeSource{}
	source.set(control.Status{}, errors.New("read job states: secret-path/state.db: input/output error"))
	base := startServer(t, source.get, NewMetrics())

	resp, body := get(t, base+"/healthz")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("code = %d, want 503", resp.StatusCode)
	}
	if strings.Contains(string(body), "secret-path") {
		t.Errorf("body shows the internal error: %s", body)
	}
	resp, _ = get(t, base+"/")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status page code = %d, want 503", resp.StatusCode)
	}
}

func TestServerRoutes(t *testing.T) {
	source := &fakeSource{}
	base := startServer(t, source.get, nil)

	if resp, _ := get(t, base+"/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %d, want 404", resp.StatusCode)
	}
	resp, err := http.Post(base+"/healthz", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatalf("POST /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
	}
	resp, err = http.Head(base + "/healthz")
	if err != nil {
		t.Fatalf("HEAD /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /healthz = %d, want 200", resp.StatusCode)
	}
	resp, _ = get(t, base+"/")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy = %q, want default-src 'none'", csp)
	}
}

func TestNewServerRejectsBadInput(t *testing.T) {
	source := (&fakeSource{}).get
	if _, err := NewServer("", source, nil, nil); err == nil {
		t.Error("NewServer with empty addr: want an error")
	}
	if _, err := NewServer("127.0.0.1:0", nil, nil, nil); err == nil {
		t.Error("NewServer with nil source: want an error")
	}
	if _, err := NewServer("127.0.0.1:notaport", source, nil, nil); err == nil {
		t.Error("NewServer with invalid port: want an error")
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	server, err := NewServer("127.0.0.1:0", (&fakeSource{}).get, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := server.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := server.Serve(); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
	if _, err := http.Get("http://" + server.Addr().String() + "/healthz"); err == nil {
		t.Error("GET after Shutdown succeeded, want a refused connection")
	}
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := get(t, base+"/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d: %s", resp.StatusCode, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return families
}

// findMetric returns the metric of family name whose labels are exactly
// labels, or nil.
func findMetric(families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	family := families[name]
	if family == nil {
		return nil
	}
	for _, m := range family.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, pair := range m.GetLabel() {
			if labels[pair.GetName()] != pair.GetValue() {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

func TestMetricsExposition(t *testing.T) {
	lastSuccess := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	source := &fakeSource{}
	source.set(control.Status{
		Jobs: []jobs.JobStatus{
			job("collect", jobs.StateScheduled, func(s *jobs.JobStatus) { s.LastSuccess = lastSuccess }),
			job("broken", jobs.StateScheduled, failing(state.ResultFailed, 3)),
		},
		Listeners: []listeners.Health{
			{Name: "chat", Kind: "twitch", State: listeners.StateRunning, Restarts: 2, Handled: 41, Dropped: 1},
			{Name: "bot", Kind: "discord", State: listeners.StateBackoff},
		},
	}, nil)
	metrics := NewMetrics()
	slot := time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC)
	scheduled := state.Run{ID: "1", Job: "collect", Trigger: state.TriggerSchedule, Slot: slot, Start: slot.Add(250 * time.Millisecond)}
	metrics.RunStarted(scheduled, 250*time.Millisecond)
	scheduled.Result, scheduled.Duration = state.ResultOK, 1500*time.Millisecond
	metrics.RunFinished(scheduled)
	manual := state.Run{ID: "2", Job: "broken", Trigger: state.TriggerManual, Start: slot}
	metrics.RunStarted(manual, 0)
	manual.Result, manual.ExitCode, manual.Duration = state.ResultFailed, 1, 20*time.Millisecond
	metrics.RunFinished(manual)
	metrics.RunFinished(state.Run{ID: "3", Job: "collect", Trigger: state.TriggerSchedule, Slot: slot, Result: state.ResultSkipped})
	metrics.ObserveStoreWrite(3 * time.Millisecond)

	families := scrape(t, startServer(t, source.get, metrics))

	wantTypes := map[string]dto.MetricType{
		"agent_runner_runs_total":                         dto.MetricType_COUNTER,
		"agent_runner_run_duration_seconds":               dto.MetricType_HISTOGRAM,
		"agent_runner_job_last_success_timestamp_seconds": dto.MetricType_GAUGE,
		"agent_runner_job_consecutive_failures":           dto.MetricType_GAUGE,
		"agent_runner_schedule_lateness_seconds":          dto.MetricType_HISTOGRAM,
		"agent_runner_listener_up":                        dto.MetricType_GAUGE,
		"agent_runner_listener_restarts_total":            dto.MetricType_COUNTER,
		"agent_runner_listener_events_total":              dto.MetricType_COUNTER,
		"agent_runner_listener_events_dropped_total":      dto.MetricType_COUNTER,
		"agent_runner_store_write_seconds":                dto.MetricType_HISTOGRAM,
		"go_goroutines":                                   dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                       dto.MetricType_COUNTER,
		"promhttp_metric_handler_errors_total":            dto.MetricType_COUNTER,
	}
	for name, want := range wantTypes {
		family := families[name]
		if family == nil {
			t.Errorf("metric %s missing", name)
			continue
		}
		if family.GetType() != want {
			t.Errorf("metric %s has type %v, want %v", name, family.GetType(), want)
		}
	}

	counters := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"agent_runner_runs_total", map[string]string{"job": "collect", "result": "ok", "trigger": "schedule"}, 1},
		{"agent_runner_runs_total", map[string]string{"job": "broken", "result": "failed", "trigger": "manual"}, 1},
		{"agent_runner_runs_total", map[string]string{"job": "collect", "result": "skipped", "trigger": "schedule"}, 1},
		{"agent_runner_listener_restarts_total", map[string]string{"listener": "chat"}, 2},
		{"agent_runner_listener_events_total", map[string]string{"listener": "chat"}, 41},
		{"agent_runner_listener_events_dropped_total", map[string]string{"listener": "chat"}, 1},
		{"agent_runner_listener_restarts_total", map[string]string{"listener": "bot"}, 0},
	}
	for _, c := range counters {
		m := findMetric(families, c.name, c.labels)
		if m == nil {
			t.Errorf("%s%v missing", c.name, c.labels)
			continue
		}
		if got := m.GetCounter().GetValue(); got != c.value {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.value)
		}
	}

	gauges := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"agent_runner_job_last_success_timestamp_seconds", map[string]string{"job": "collect"}, float64(lastSuccess.Unix())},
		{"agent_runner_job_consecutive_failures", map[string]string{"job": "collect"}, 0},
		{"agent_runner_job_consecutive_failures", map[string]string{"job": "broken"}, 3},
		{"agent_runner_listener_up", map[string]string{"listener": "chat", "kind": "twitch"}, 1},
		{"agent_runner_listener_up", map[string]string{"listener": "bot", "kind": "discord"}, 0},
	}
	for _, g := range gauges {
		m := findMetric(families, g.name, g.labels)
		if m == nil {
			t.Errorf("%s%v missing", g.name, g.labels)
			continue
		}
		if got := m.GetGauge().GetValue(); got != g.value {
			t.Errorf("%s%v = %v, want %v", g.name, g.labels, got, g.value)
		}
	}
	if m := findMetric(families, "agent_runner_job_last_success_timestamp_seconds", map[string]string{"job": "broken"}); m != nil {
		t.Errorf("last success of a job that never succeeded = %v, want absent", m.GetGauge().GetValue())
	}

	histograms := []struct {
		name   string
		labels map[string]string
		count  uint64
		sum    float64
	}{
		{"agent_runner_run_duration_seconds", map[string]string{"job": "collect"}, 1, 1.5},
		{"agent_runner_run_duration_seconds", map[string]string{"job": "broken"}, 1, 0.02},
		{"agent_runner_schedule_lateness_seconds", map[string]string{}, 1, 0.25},
		{"agent_runner_store_write_seconds", map[string]string{}, 1, 0.003},
	}
	for _, h := range histograms {
		m := findMetric(families, h.name, h.labels)
		if m == nil {
			t.Errorf("%s%v missing", h.name, h.labels)
			continue
		}
		if got := m.GetHistogram().GetSampleCount(); got != h.count {
			t.Errorf("%s%v count = %d, want %d", h.name, h.labels, got, h.count)
		}
		if got := m.GetHistogram().GetSampleSum(); got != h.sum {
			t.Errorf("%s%v sum = %v, want %v", h.name, h.labels, got, h.sum)
		}
	}
	buckets := findMetric(families, "agent_runner_run_duration_seconds", map[string]string{"job": "collect"}).GetHistogram().GetBucket()
	// The parser adds the +Inf bucket, so the last configured bound is
	// second to last.
	if first, last := buckets[0].GetUpperBound(), buckets[len(buckets)-2].GetUpperBound(); first != 0.01 || last != 3600 {
		t.Errorf("run duration buckets span %v to %v, want 0.01 to 3600", first, last)
	}
}

func TestMetricsSourceError(t *testing.T) {
	source := &fakeSource{}
	source.set(control.Status{}, errors.New("store closed"))
	metrics := NewMetrics()
	metrics.ObserveStoreWrite(time.Millisecond)
	base := startServer(t, source.get, metrics)
	scrape(t, base)
	// promhttp counts a failed gathering after it wrote the response, so
	// the second scrape shows the first one's error.
	families := scrape(t, base)

	if families["agent_runner_store_write_seconds"] == nil {
		t.Error("agent_runner_store_write_seconds missing while the status source fails")
	}
	if families["agent_runner_job_consecutive_failures"] != nil {
		t.Error("agent_runner_job_consecutive_failures present although the status source fails")
	}
	errorsTotal := findMetric(families, "promhttp_metric_handler_errors_total", map[string]string{"cause": "gathering"})
	if errorsTotal == nil || errorsTotal.GetCounter().GetValue() < 1 {
		t.Errorf("promhttp_metric_handler_errors_total{cause=gathering} = %v, want at least 1", errorsTotal)
	}
}

func TestErrorLimiterHoldsBackRepeats(t *testing.T) {
	var out strings.Builder
	limiter := newErrorLimiter(slog.New(slog.NewTextHandler(&out, nil)), 50*time.Millisecond)
	for range 3 {
		limiter.log("read status failed", errors.New("store closed"))
	}
	limiter.log("render failed", errors.New("template broken"))
	if got := strings.Count(out.String(), "read status failed"); got != 1 {
		t.Errorf("repeated message logged %d times within the interval, want 1:\n%s", got, out.String())
	}
	if got := strings.Count(out.String(), "render failed"); got != 1 {
		t.Errorf("second message logged %d times, want 1", got)
	}

	time.Sleep(60 * time.Millisecond)
	limiter.log("read status failed", errors.New("store closed"))
	if !strings.Contains(out.String(), "suppressed=2") {
		t.Errorf("log after the interval does not count 2 suppressed repeats:\n%s", out.String())
	}
}
