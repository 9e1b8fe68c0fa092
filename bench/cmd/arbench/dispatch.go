package main

import (
	"fmt"
	"time"

	"github.com/agent-runner/agent-runner/bench"
)

// dispatchPlan is the slot plan of one implementation.
type dispatchPlan struct {
	period time.Duration
	slots  int
	warmup bool
}

// dispatchCase is one job count of the dispatch figure.
type dispatchCase struct {
	jobs  int
	reps  int
	impls []string
	// plans holds the slot plan of each implementation.
	plans map[string]dispatchPlan
}

// dispatchCases returns the job counts to measure.
//
// At 1,000 jobs the agent-runner slots are 12 s apart. The claims and
// finishes of one slot, two store commits per run, took up to 8 s on a
// loaded machine, and a slot that finds its job still running is
// skipped. At 10,000 jobs one slot is measured without warm-up, because
// the commits of a slot take most of a minute. The baselines do the same
// there, so that each ratio compares a first slot with a first slot. The
// agent-runner run with /bin/true children is left out at 10,000 jobs:
// 10,000 children and 20,000 commits per slot do not fit in a minute on
// two cores.
func (h *harness) dispatchCases() []dispatchCase {
	all := []string{implRunnerNoop, implRunnerTrue, implGocron, implHeap}
	small := dispatchPlan{period: time.Second, slots: pick(h, 10, 5), warmup: true}
	runner1000 := dispatchPlan{period: 12 * time.Second, slots: 1, warmup: true}
	base1000 := dispatchPlan{period: 3 * time.Second, slots: 2, warmup: true}
	single := dispatchPlan{period: time.Minute, slots: 1}
	return []dispatchCase{
		{jobs: 10, reps: pick(h, 3, 2), impls: all, plans: plansFor(all, small, small)},
		{jobs: 1000, reps: pick(h, 3, 2), impls: all, plans: plansFor(all, runner1000, base1000)},
		{jobs: 10000, reps: pick(h, 2, 1), impls: []string{implRunnerNoop, implGocron, implHeap}, plans: plansFor(all, single, single)},
	}
}

// plansFor gives the agent-runner implementations among impls the plan
// runner and the baselines the plan base.
func plansFor(impls []string, runner, base dispatchPlan) map[string]dispatchPlan {
	plans := make(map[string]dispatchPlan, len(impls))
	for _, impl := range impls {
		if impl == implRunnerNoop || impl == implRunnerTrue {
			plans[impl] = runner
		} else {
			plans[impl] = base
		}
	}
	return plans
}

var implLabels = map[string]string{
	implRunnerNoop: "agent-runner, no-op run",
	implRunnerTrue: "agent-runner, /bin/true child",
	implGocron:     "bare gocron v2",
	implHeap:       "timer heap",
}

// dispatchTargets are the p99 goals of agent-runner's lateness, in ms.
var dispatchTargets = map[int]float64{10: 2, 1000: 5, 10000: 25}

func (h *harness) dispatch() []row {
	var rows []row
	for _, c := range h.dispatchCases() {
		results := make(map[string][]bench.DispatchResult)
		errs := make(map[string]error)
		// The implementations take turns within each repetition, so that a
		// drift of the machine affects them alike and each ratio compares
		// runs of the same repetition.
		for rep := range c.reps {
			for _, impl := range c.impls {
				if errs[impl] != nil {
					continue
				}
				h.progress("dispatch: %d jobs, %s, repetition %d of %d", c.jobs, implLabels[impl], rep+1, c.reps)
				plan := c.plans[impl]
				var result bench.DispatchResult
				err := h.runWorkerProcess(workerArgs{
					kind: workerDispatch, impl: impl, jobs: c.jobs, period: plan.period,
					slots: plan.slots, warmup: plan.warmup,
				}, &result)
				if err != nil {
					errs[impl] = err
					continue
				}
				results[impl] = append(results[impl], result)
			}
		}
		for _, impl := range c.impls {
			rows = append(rows, dispatchRows(c, impl, results[impl], errs[impl])...)
		}
		for _, base := range []string{implGocron, implHeap} {
			rows = append(rows, ratioRow(
				fmt.Sprintf("dispatch N=%s p99 ratio: agent-runner no-op / %s", count(c.jobs), implLabels[base]),
				results[implRunnerNoop], results[base], errs[implRunnerNoop], errs[base]))
		}
	}
	return rows
}

func dispatchRows(c dispatchCase, impl string, results []bench.DispatchResult, err error) []row {
	prefix := fmt.Sprintf("dispatch N=%s %s:", count(c.jobs), implLabels[impl])
	note := dispatchNote(c, impl, results)
	var p50, p99, maximum, claimed, rss, goroutines, stacks []float64
	for _, r := range results {
		q := bench.QuantilesOf(r.Lateness)
		p50 = append(p50, bench.Milliseconds(q.P50))
		p99 = append(p99, bench.Milliseconds(q.P99))
		maximum = append(maximum, bench.Milliseconds(q.Max))
		claimed = append(claimed, bench.Milliseconds(bench.Percentile(r.Claimed, 99)))
		rss = append(rss, kibToMB(r.PeakRSS))
		goroutines = append(goroutines, float64(r.Runtime.Goroutines))
		stacks = append(stacks, float64(r.Runtime.StackBytes)/1e6)
	}
	p99Row := row{figure: prefix + " lateness p99", unit: "ms", values: p99, err: err, note: note}
	if impl == implRunnerNoop || impl == implRunnerTrue {
		p99Row.target = atMost(dispatchTargets[c.jobs], "ms")
	}
	rows := []row{
		{figure: prefix + " lateness p50", unit: "ms", values: p50, err: err},
		p99Row,
		{figure: prefix + " lateness max", unit: "ms", values: maximum, err: err},
	}
	if impl == implRunnerNoop || impl == implRunnerTrue {
		rows = append(rows, row{figure: prefix + " slot → claim committed p99", unit: "ms", values: claimed, err: err})
	}
	rows = append(rows,
		row{figure: prefix + " peak RSS of the measuring process", unit: "MB", values: rss, err: err},
		row{figure: prefix + " peak goroutines", unit: "goroutines", values: goroutines, err: err,
			note: fmt.Sprintf("runtime/metrics read every %s", bench.RuntimeSampleInterval)},
		row{figure: prefix + " peak goroutine stacks", unit: "MB", values: stacks, err: err},
	)
	return rows
}

// dispatchNote describes the samples behind a row, and any run that did
// not start.
func dispatchNote(c dispatchCase, impl string, results []bench.DispatchResult) string {
	if len(results) == 0 {
		return ""
	}
	plan := c.plans[impl]
	warmup := "no warm-up"
	if plan.warmup {
		warmup = "after 1 warm-up slot"
	}
	note := fmt.Sprintf("%s samples per run: %d slot(s) %s apart × %s jobs, %s", count(plan.slots*c.jobs), plan.slots, plan.period, count(c.jobs), warmup)
	for i, r := range results {
		if r.Skipped > 0 || r.Missing() > 0 || r.Overflow > 0 {
			note += fmt.Sprintf("; run %d: %d skipped, %d missing, %d extra", i+1, r.Skipped, r.Missing(), r.Overflow)
		}
	}
	return note
}

// ratioRow returns, per repetition, the p99 lateness of a over that of b.
func ratioRow(figure string, a, b []bench.DispatchResult, errA, errB error) row {
	r := row{figure: figure, unit: "×"}
	if errA != nil || errB != nil {
		r.err = fmt.Errorf("a measurement of the ratio failed")
		return r
	}
	for i := range min(len(a), len(b)) {
		r.values = append(r.values, float64(bench.Percentile(a[i].Lateness, 99))/float64(bench.Percentile(b[i].Lateness, 99)))
	}
	return r
}

// count formats n with a thousands separator, as 10,000.
func count(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// kibToMB converts KiB to decimal megabytes.
func kibToMB(kib int64) float64 {
	return float64(kib) * 1024 / 1e6
}
