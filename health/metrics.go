package health

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

// Histogram buckets, in seconds.
var (
	// runDurationBuckets spans scripts that exit at once to hour-long
	// batch jobs.
	runDurationBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}
	// latenessBuckets spans a busy scheduler (milliseconds) to a catch-up
	// run after a day offline.
	latenessBuckets = []float64{0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600, 86400}
	// storeWriteBuckets spans one bbolt commit, which costs two fsyncs,
	// from a fast SSD (0.5 ms) to a stalled disk (4 s).
	storeWriteBuckets = prometheus.ExponentialBuckets(0.0005, 2, 14)
)

// Metrics counts runs and store writes for /metrics. It implements
// jobs.Observer and keeps its own registry, so tests and several daemons
// in one process never share counters.
type Metrics struct {
	registry   *prometheus.Registry
	runs       *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	lateness   prometheus.Histogram
	storeWrite prometheus.Histogram
}

var _ jobs.Observer = (*Metrics)(nil)

// NewMetrics returns Metrics registered on a new registry together with
// the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_runner_runs_total",
			Help: "Finished runs, including skipped ones, by job, result and trigger.",
		}, []string{"job", "result", "trigger"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "agent_runner_run_duration_seconds",
			Help:    "Duration of finished runs, skipped ones excluded.",
			Buckets: runDurationBuckets,
		}, []string{"job"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agent_runner_schedule_lateness_seconds",
			Help:    "Time from a schedule slot to the start of its run, for scheduled and catch-up runs.",
			Buckets: latenessBuckets,
		}),
		storeWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "agent_runner_store_write_seconds",
			Help:    "Duration of state store commits.",
			Buckets: storeWriteBuckets,
		}),
	}
	m.registry.MustRegister(
		m.runs, m.duration, m.lateness, m.storeWrite,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// RunStarted records the lateness of a run that serves a slot. Manual
// runs have no slot, so they are left out rather than counted as on time.
func (m *Metrics) RunStarted(run state.Run, lateness time.Duration) {
	if run.Slot.IsZero() {
		return
	}
	m.lateness.Observe(max(lateness, 0).Seconds())
}

// RunFinished counts a run by result and records its duration. A skipped
// run never started, so its zero duration is left out of the histogram.
func (m *Metrics) RunFinished(run state.Run) {
	m.runs.WithLabelValues(run.Job, run.Result, run.Trigger).Inc()
	if run.Result != state.ResultSkipped {
		m.duration.WithLabelValues(run.Job).Observe(run.Duration.Seconds())
	}
}

// ObserveStoreWrite records how long one state store commit took.
func (m *Metrics) ObserveStoreWrite(d time.Duration) {
	m.storeWrite.Observe(d.Seconds())
}

// statusCollector turns a Source into gauges and counters at scrape time,
// so they never lag behind the store.
type statusCollector struct {
	source Source

	lastSuccess         *prometheus.Desc
	consecutiveFailures *prometheus.Desc
	listenerUp          *prometheus.Desc
	listenerRestarts    *prometheus.Desc
	listenerEvents      *prometheus.Desc
	listenerDropped     *prometheus.Desc
}

func newStatusCollector(source Source) *statusCollector {
	return &statusCollector{
		source: source,
		lastSuccess: prometheus.NewDesc("agent_runner_job_last_success_timestamp_seconds",
			"Unix time of the job's last successful run; absent until it first succeeds.",
			[]string{"job"}, nil),
		consecutiveFailures: prometheus.NewDesc("agent_runner_job_consecutive_failures",
			"Failed, timed-out or panicked runs of the job since its last success.",
			[]string{"job"}, nil),
		listenerUp: prometheus.NewDesc("agent_runner_listener_up",
			"1 when the listener is connected and running, 0 otherwise.",
			[]string{"listener", "kind"}, nil),
		listenerRestarts: prometheus.NewDesc("agent_runner_listener_restarts_total",
			"Restarts of the listener after a failure since the daemon started.",
			[]string{"listener"}, nil),
		listenerEvents: prometheus.NewDesc("agent_runner_listener_events_total",
			"Events the listener handled since the daemon started.",
			[]string{"listener"}, nil),
		listenerDropped: prometheus.NewDesc("agent_runner_listener_events_dropped_total",
			"Events the listener dropped because its hook queue was full.",
			[]string{"listener"}, nil),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lastSuccess
	ch <- c.consecutiveFailures
	ch <- c.listenerUp
	ch <- c.listenerRestarts
	ch <- c.listenerEvents
	ch <- c.listenerDropped
}

// Collect reads the status once per scrape. When that fails it sends an
// invalid metric, which the /metrics handler logs and counts in
// promhttp_metric_handler_errors_total while it still serves the rest.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	status, err := c.source()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.consecutiveFailures, fmt.Errorf("read status: %w", err))
		return
	}
	for _, job := range status.Jobs {
		c.collectJob(ch, job)
	}
	for _, listener := range status.Listeners {
		c.collectListener(ch, listener)
	}
}

func (c *statusCollector) collectJob(ch chan<- prometheus.Metric, job jobs.JobStatus) {
	if !job.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue,
			float64(job.LastSuccess.UnixNano())/1e9, job.Name)
	}
	ch <- prometheus.MustNewConstMetric(c.consecutiveFailures, prometheus.GaugeValue,
		float64(job.ConsecutiveFailures), job.Name)
}

func (c *statusCollector) collectListener(ch chan<- prometheus.Metric, listener listeners.Health) {
	up := 0.0
	if listener.State == listeners.StateRunning {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.listenerUp, prometheus.GaugeValue, up, listener.Name, listener.Kind)
	ch <- prometheus.MustNewConstMetric(c.listenerRestarts, prometheus.CounterValue, float64(listener.Restarts), listener.Name)
	ch <- prometheus.MustNewConstMetric(c.listenerEvents, prometheus.CounterValue, float64(listener.Handled), listener.Name)
	ch <- prometheus.MustNewConstMetric(c.listenerDropped, prometheus.CounterValue, float64(listener.Dropped), listener.Name)
}
