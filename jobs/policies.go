package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/state"
)

// maxRetryBackoff caps the doubling wait between retries.
const maxRetryBackoff = time.Hour

// RunPolicies runs a request and then what the job's policies add to it:
// retries of a failed scheduled run, each after retry_backoff doubling
// and all within the job's timeout, and the jobs chained to the final
// result by on_success or on_failure, started in the background.
func (r *Runner) RunPolicies(ctx context.Context, req Request) (state.Run, error) {
	run, err := r.Run(ctx, req)
	if err != nil && !ran(run) {
		return run, err
	}
	// A run whose final record failed to store still ran, so its retries,
	// alert and chained jobs follow, and the error is returned after them.
	job := r.job(req.Job)
	if job == nil {
		return run, err
	}
	if retriable(req.Trigger) {
		run = r.retry(ctx, job, req, run)
	}
	if hook := r.finalHook(); hook != nil {
		hook(run)
	}
	r.chain(job, run)
	return run, err
}

// ran reports whether a run that Run returned with an error was claimed,
// which means it ran and only storing its final record failed.
func ran(run state.Run) bool { return run.ID != "" }

// SetFinalHook sets a function called with the last run of each request
// that RunPolicies handles, once retries are over, for alerts.
func (r *Runner) SetFinalHook(hook func(state.Run)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.final = hook
}

func (r *Runner) finalHook() func(state.Run) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.final
}

func retriable(trigger string) bool {
	return trigger == state.TriggerSchedule || trigger == state.TriggerCatchUp || trigger == state.TriggerRetry
}

func failedResult(result string) bool {
	return result == state.ResultFailed || result == state.ResultTimeout || result == state.ResultPanic
}

// retry runs a failed run again up to job.Retries times and returns the
// last run.
func (r *Runner) retry(ctx context.Context, job *config.Job, req Request, run state.Run) state.Run {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(r.stopped, cancel)
	defer stop()
	first := run.Start
	backoff := job.RetryBackoff
	for attempt := 1; attempt <= job.Retries && failedResult(run.Result); attempt++ {
		if job.Timeout > 0 && r.now().Add(backoff).Sub(first) >= job.Timeout {
			r.log.Warn("no time left for another retry within the job's timeout", "job", job.Name, "attempt", attempt)
			break
		}
		r.log.Info("retrying failed run", "job", job.Name, "run", run.ID, "attempt", attempt, "of", job.Retries, "after", backoff)
		if err := r.sleep(ctx, backoff); err != nil {
			break
		}
		next, err := r.Run(ctx, Request{Job: job.Name, Trigger: state.TriggerRetry, Next: req.Next})
		if err != nil && !ran(next) {
			if !errors.Is(err, ErrStopping) {
				r.log.Error("retry failed to start", "job", job.Name, "err", err)
			}
			break
		}
		run = next
		backoff = min(2*backoff, maxRetryBackoff)
	}
	return run
}

// chain starts the jobs named for the run's result.
func (r *Runner) chain(job *config.Job, run state.Run) {
	targets := job.OnSuccess
	if run.Result != state.ResultOK {
		if !failedResult(run.Result) {
			return
		}
		targets = job.OnFailure
	}
	for _, target := range targets {
		r.log.Info("starting chained job", "job", target, "after", job.Name, "result", run.Result)
		go func() {
			chained, err := r.RunPolicies(context.Background(), Request{Job: target, Trigger: state.TriggerChain})
			if err != nil && !ran(chained) && !errors.Is(err, ErrStopping) {
				r.log.Error("chained job failed to start", "job", target, "err", err)
			}
		}()
	}
}

func (r *Runner) job(name string) *config.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.jobs[name]
}
