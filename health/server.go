package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agent-runner/agent-runner/state"
)

// Timeouts of the HTTP server. A scrape or a page load reads the store
// once, so every request is short, and slow clients are cut off rather
// than allowed to hold connections.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
)

// errorLogInterval is how often one kind of error is logged. A monitor
// probes every few seconds, so a broken store would otherwise log on
// every probe.
const errorLogInterval = time.Minute

// contentSecurityPolicy allows the status page nothing but its inline
// CSS: no scripts, images, frames or requests elsewhere.
const contentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Runs returns up to n runs of a job, newest first, as state.Store.Runs
// does.
type Runs func(job string, n int) ([]state.Run, error)

// Option configures a Server.
type Option func(*Server)

// WithRuns makes the status page draw each job's recent runs from runs.
func WithRuns(runs Runs) Option {
	return func(s *Server) { s.runs = runs }
}

// Server serves /healthz, /metrics and the status page at /.
type Server struct {
	source   Source
	runs     Runs
	log      *slog.Logger
	listener net.Listener
	http     *http.Server
	errors   *errorLimiter
}

// NewServer listens on addr at once, so a port conflict fails the
// daemon's start and a test can pass "127.0.0.1:0" and read Addr. A nil
// metrics is replaced by a fresh Metrics that no runner observes, so
// /metrics then shows the status and runtime values but no run counts.
func NewServer(addr string, source Source, metrics *Metrics, log *slog.Logger, opts ...Option) (*Server, error) {
	if addr == "" {
		return nil, errors.New(`start http server: missing listen address: set [runner] http, such as "127.0.0.1:9090"`)
	}
	if source == nil {
		return nil, errors.New("start http server: nil status source")
	}
	if metrics == nil {
		metrics = NewMetrics()
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Server{source: source, log: log, errors: newErrorLimiter(log, errorLogInterval)}
	for _, opt := range opts {
		opt(s)
	}
	s.http = &http.Server{
		Handler:           s.routes(metrics),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("start http server: %w", err)
	}
	if isLoopback(listener.Addr()) {
		s.http.Handler = loopbackHostsOnly(s.http.Handler)
	}
	s.listener = newLimitListener(listener, maxConnections, log)
	return s, nil
}

// Addr returns the address the server listens on, with the port the
// system chose when addr had port 0.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Serve serves requests until Shutdown, and returns nil then.
func (s *Server) Serve() error {
	s.log.Info("http server started", "addr", s.Addr().String())
	err := s.http.Serve(s.listener)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve http: %w", err)
}

// Shutdown stops accepting connections and waits for the requests in
// flight to finish or for ctx to end. It also closes the listener when
// Serve never ran.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if closeErr := s.listener.Close(); closeErr != nil && !errors.Is(closeErr, net.ErrClosed) && err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("stop http server: %w", err)
	}
	s.log.Info("http server stopped", "addr", s.Addr().String())
	return nil
}

func (s *Server) routes(metrics *Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.Handle("GET /metrics", s.metricsHandler(metrics))
	mux.HandleFunc("GET /{$}", s.servePage)
	return mux
}

// metricsHandler gathers the Metrics registry and the status collector
// together. The status collector sits in a registry of its own, so one
// Metrics can serve several servers without registering twice.
func (s *Server) metricsHandler(metrics *Metrics) http.Handler {
	status := prometheus.NewRegistry()
	status.MustRegister(newStatusCollector(s.source))
	return promhttp.HandlerFor(prometheus.Gatherers{metrics.registry, status}, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s.errors},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      metrics.registry,
	})
}

// serveHealthz writes the Report as JSON, with 200 when healthy and 503
// otherwise, including when the status cannot be read.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	report, err := s.report()
	if err != nil {
		s.errors.log("read status for /healthz failed", err)
	}
	code := http.StatusOK
	if !report.Healthy() {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(report); err != nil {
		s.log.Debug("write /healthz response failed", "err", err)
	}
}

// report evaluates the current status. When the status cannot be read,
// it returns an unhealthy report that names no cause, because the error
// belongs in the log rather than in a response to any client of the port.
func (s *Server) report() (Report, error) {
	status, err := s.source()
	if err != nil {
		return Report{Status: StatusUnhealthy, Summary: "status unavailable: see the daemon's log", Problems: []Problem{}}, err
	}
	return Evaluate(status, time.Now()), nil
}

// errorLimiter logs each message at most once per interval, and counts
// the repeats it held back.
type errorLimiter struct {
	logger   *slog.Logger
	interval time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newErrorLimiter(logger *slog.Logger, interval time.Duration) *errorLimiter {
	return &errorLimiter{logger: logger, interval: interval, last: make(map[string]time.Time), suppressed: make(map[string]int)}
}

func (l *errorLimiter) log(msg string, err error) {
	l.mu.Lock()
	now := time.Now()
	if last, ok := l.last[msg]; ok && now.Sub(last) < l.interval {
		l.suppressed[msg]++
		l.mu.Unlock()
		return
	}
	suppressed := l.suppressed[msg]
	l.last[msg] = now
	l.suppressed[msg] = 0
	l.mu.Unlock()
	l.logger.Error(msg, "err", err, "suppressed", suppressed)
}

// promLogger passes promhttp's errors to an errorLimiter.
type promLogger struct{ limiter *errorLimiter }

func (p promLogger) Println(v ...any) {
	p.limiter.log("serve /metrics failed", errors.New(strings.TrimSpace(fmt.Sprintln(v...))))
}
