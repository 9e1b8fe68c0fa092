package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// Poster posts text through a live listener. The daemon provides one; a
// CLI running a job in-process has none, since it holds no sessions.
type Poster interface {
	// Post sends text through the listener named, or of the kind given,
	// by via, and returns the listener's name.
	Post(ctx context.Context, via, to, text string) (string, error)
}

// SetPoster gives the runner the daemon's listeners for post jobs.
func (r *Runner) SetPoster(p Poster) { r.poster = p }

// SetStandalone marks a runner that run-job made without a daemon. It
// loaded the config for this run, so a run's load problem is current and
// its error names no reload.
func (r *Runner) SetStandalone() { r.standalone = true }

// OnLoadProblem gives the runner a function to call at each run that
// fails on its job's load problem, so the daemon can look again whether
// the problem is gone.
func (r *Runner) OnLoadProblem(f func()) { r.loadProblem = f }

// maxPostBytes bounds the text a text_command may produce.
const maxPostBytes = 64 << 10

var errNoPoster = errors.New("a post job needs the running daemon's listener sessions: start agent-runner run, and run-job then posts through it")

// runPost produces the job's text, from the config or its text_command,
// and posts it.
func (r *Runner) runPost(ctx context.Context, job *config.Job, run state.Run, emit func(Line)) execOutcome {
	if r.poster == nil {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: errNoPoster}
	}
	text := job.Post.Text
	if len(job.Post.TextCommand) > 0 {
		var out execOutcome
		if text, out = r.postText(ctx, job, run, emit); out.result != state.ResultOK {
			return out
		}
	}
	if strings.TrimSpace(text) == "" {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: errors.New("the text to post is empty")}
	}
	name, err := r.poster.Post(ctx, job.Post.Via, job.Post.To, text)
	if err != nil {
		return execOutcome{result: state.ResultFailed, exitCode: -1, err: fmt.Errorf("post: %w", err)}
	}
	emit(Line{Stream: "stdout", Text: "posted through " + name})
	return execOutcome{result: state.ResultOK}
}

// postText runs the text_command and returns its standard output, with
// the job's secret values redacted as in its logged output, because the
// text goes to a public chat or feed.
func (r *Runner) postText(ctx context.Context, job *config.Job, run state.Run, emit func(Line)) (string, execOutcome) {
	spec, redactor, err := r.commandSpec(job, job.Post.TextCommand, run)
	if err != nil {
		return "", execOutcome{result: state.ResultFailed, exitCode: -1, err: err}
	}
	var text strings.Builder
	lines := redactor.Lines(emit)
	exit, err := r.reaper.Run(ctx, spec, func(line Line) {
		lines.Emit(line)
		if line.Stream == "stdout" && text.Len()+len(line.Text) < maxPostBytes {
			text.WriteString(line.Text + "\n")
		}
	})
	lines.Flush()
	if err != nil {
		return "", execOutcome{result: state.ResultFailed, exitCode: -1, err: err}
	}
	return redactor.Redact(strings.TrimSpace(text.String())), outcomeOf(exit)
}
