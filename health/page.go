package health

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/control"
	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/listeners"
	"github.com/agent-runner/agent-runner/state"
)

// timelineRuns is how many recent runs the page draws per job.
const timelineRuns = 20

// CSS classes of states and results, which the page colours.
const (
	classOK   = "ok"   // green: healthy and working
	classBad  = "bad"  // red: failed or down
	classBusy = "busy" // amber: in progress
	classOff  = "off"  // grey: disabled, stopped or skipped
)

//go:embed page.html
var pageSource string

// pageTemplate is parsed at the first page request rather than at
// package init, which took about 0.6 ms of every start, including starts
// of commands that never serve the page. Tests render the page.
var pageTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Parse(pageSource))
})

// pageView is everything the page template shows.
type pageView struct {
	Healthy   bool
	Summary   string
	Problems  []Problem
	Updated   string
	Jobs      []jobRow
	Listeners []listenerRow
	// Timeline is set when the server has Runs, and then the jobs table
	// has a column of recent runs.
	Timeline bool
	// Unavailable is set when the status could not be read, and then
	// the page shows only the summary.
	Unavailable bool
}

type jobRow struct {
	Name                string
	Schedule            string
	State               string
	StateClass          string
	NextRun             timeView
	LastRun             timeView
	LastResult          string
	ResultClass         string
	ResultTitle         string
	ConsecutiveFailures int
	Problem             string
	Runs                []runCell
	RunsError           string
}

type listenerRow struct {
	Name       string
	Kind       string
	State      string
	StateClass string
	Since      timeView
	Restarts   int
	LastEvent  timeView
	Handled    uint64
	Dropped    uint64
	LastError  string
	Problem    string
}

// runCell is one run in a job's timeline.
type runCell struct {
	Result string
	Class  string
	Title  string
}

// timeView is an instant as the page shows it: Text relative to now for
// a quick read, Title in UTC for the tooltip, and ISO for the datetime
// attribute. All are empty for a zero time.
type timeView struct {
	Text  string
	Title string
	ISO   string
}

// servePage renders the status page. It responds with 503 when the status
// cannot be read, so a monitor that checks / also notices.
func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	view := pageView{Updated: now.UTC().Format("2006-01-02 15:04:05Z"), Timeline: s.runs != nil}
	code := http.StatusOK
	status, err := s.source()
	if err != nil {
		s.errors.log("read status for the status page failed", err)
		view.Unavailable = true
		view.Summary = "status unavailable: see the daemon's log"
		code = http.StatusServiceUnavailable
	} else {
		s.fillPage(&view, status, now)
	}

	var body bytes.Buffer
	if err := pageTemplate().Execute(&body, view); err != nil {
		s.errors.log("render status page failed", err)
		http.Error(w, "render status page failed", http.StatusInternalServerError)
		return
	}
	header := w.Header()
	header.Set("Content-Type", "text/html; charset=utf-8")
	header.Set("Cache-Control", "no-store")
	header.Set("Content-Security-Policy", contentSecurityPolicy)
	header.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(body.Bytes())
}

func (s *Server) fillPage(view *pageView, status control.Status, now time.Time) {
	report := Evaluate(status, now)
	view.Healthy = report.Healthy()
	view.Summary = report.Summary
	view.Problems = report.Problems
	for _, job := range status.Jobs {
		row := newJobRow(job, now, problemsOf(report, KindJob, job.Name))
		row.Runs, row.RunsError = s.timeline(job.Name)
		view.Jobs = append(view.Jobs, row)
	}
	for _, listener := range status.Listeners {
		view.Listeners = append(view.Listeners, newListenerRow(listener, now, problemsOf(report, KindListener, listener.Name)))
	}
}

// problemsOf joins the reasons the report gives for one job or listener.
func problemsOf(report Report, kind, name string) string {
	var reasons []string
	for _, p := range report.Problems {
		if p.Kind == kind && p.Name == name {
			reasons = append(reasons, p.Reason)
		}
	}
	return strings.Join(reasons, "; ")
}

func newJobRow(job jobs.JobStatus, now time.Time, problem string) jobRow {
	row := jobRow{
		Name:                job.Name,
		Schedule:            job.Schedule,
		State:               job.State,
		StateClass:          jobStateClass(job.State),
		NextRun:             newTimeView(job.NextRun, now),
		LastRun:             newTimeView(job.LastStart, now),
		LastResult:          job.LastResult,
		ResultClass:         resultClass(job.LastResult),
		ConsecutiveFailures: job.ConsecutiveFailures,
		Problem:             problem,
	}
	if job.LastResult == state.ResultFailed && job.LastExitCode > 0 {
		row.LastResult = fmt.Sprintf("%s (exit %d)", job.LastResult, job.LastExitCode)
	}
	if job.LastError != "" {
		row.ResultTitle = firstLine(job.LastError)
	}
	if job.State == jobs.StateFailed && job.Problem != "" {
		row.ResultTitle = firstLine(job.Problem)
	}
	return row
}

func newListenerRow(listener listeners.Health, now time.Time, problem string) listenerRow {
	return listenerRow{
		Name:       listener.Name,
		Kind:       listener.Kind,
		State:      listener.State,
		StateClass: listenerStateClass(listener),
		Since:      newTimeView(listener.Since, now),
		Restarts:   listener.Restarts,
		LastEvent:  newTimeView(listener.LastEvent, now),
		Handled:    listener.Handled,
		Dropped:    listener.Dropped,
		LastError:  firstLine(listener.LastError),
		Problem:    problem,
	}
}

// timeline returns a job's recent runs oldest first, or a message for
// the page when they cannot be read. It returns neither without Runs.
func (s *Server) timeline(job string) ([]runCell, string) {
	if s.runs == nil {
		return nil, ""
	}
	runs, err := s.runs(job, timelineRuns)
	if err != nil {
		s.errors.log("read recent runs for the status page failed", err)
		return nil, "history unavailable"
	}
	if len(runs) > timelineRuns {
		runs = runs[:timelineRuns]
	}
	cells := make([]runCell, 0, len(runs))
	for _, run := range slices.Backward(runs) {
		cells = append(cells, runCell{Result: run.Result, Class: resultClass(run.Result), Title: runTitle(run)})
	}
	return cells, ""
}

// runTitle is a run's tooltip, such as
// "2026-06-01 08:00:00Z schedule: ok in 1.2s".
func runTitle(run state.Run) string {
	start := run.Start.UTC().Format("2006-01-02 15:04:05Z")
	if run.Result == state.ResultRunning || run.Result == state.ResultSkipped || (run.ExitCode < 0 && run.Duration == 0) {
		// A crash hides how long a run lasted, and a run that never
		// started has no length.
		return fmt.Sprintf("%s %s: %s", start, run.Trigger, run.Result)
	}
	title := fmt.Sprintf("%s %s: %s in %s", start, run.Trigger, run.Result, roundDuration(run.Duration))
	if run.Result == state.ResultFailed && run.ExitCode > 0 {
		title += fmt.Sprintf(" (exit %d)", run.ExitCode)
	}
	return title
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Second)
	}
}

// jobStateClass colours a job's state. A running job is amber rather
// than green, because its result is still open.
func jobStateClass(st string) string {
	switch st {
	case jobs.StateScheduled:
		return classOK
	case jobs.StateRunning:
		return classBusy
	case jobs.StateFailed:
		return classBad
	default:
		return classOff
	}
}

func listenerStateClass(listener listeners.Health) string {
	switch listener.State {
	case listeners.StateRunning:
		return classOK
	case listeners.StateStarting:
		if listener.Retrying {
			return classBad
		}
		return classBusy
	case listeners.StateBackoff, listeners.StateFailed:
		return classBad
	default:
		return classOff
	}
}

func resultClass(result string) string {
	switch result {
	case state.ResultOK:
		return classOK
	case state.ResultRunning:
		return classBusy
	case state.ResultFailed, state.ResultTimeout, state.ResultPanic:
		return classBad
	case "":
		return ""
	default:
		return classOff
	}
}

func newTimeView(t, now time.Time) timeView {
	if t.IsZero() {
		return timeView{}
	}
	d := t.Sub(now).Round(time.Second)
	relative := "now"
	switch {
	case d > 0:
		relative = "in " + shortDuration(d)
	case d < 0:
		relative = shortDuration(-d) + " ago"
	}
	return timeView{
		Text:  relative,
		Title: t.UTC().Format("2006-01-02 15:04:05Z"),
		ISO:   t.UTC().Format(time.RFC3339),
	}
}

// shortDuration writes d as the list command does: "2d", "3h05m",
// "4m10s" or "9s".
func shortDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", d/time.Hour, (d%time.Hour)/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, (d%time.Minute)/time.Second)
	default:
		return fmt.Sprintf("%ds", d/time.Second)
	}
}
