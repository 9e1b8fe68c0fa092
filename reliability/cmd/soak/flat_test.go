package main

import (
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/reliability/harness"
)

// samplesOf returns one sample per 5 s with the given descriptor counts
// and otherwise steady values.
func samplesOf(fds ...int) []harness.ProcSample {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	samples := make([]harness.ProcSample, len(fds))
	for i, n := range fds {
		samples[i] = harness.ProcSample{At: start.Add(time.Duration(i) * 5 * time.Second), RSSKiB: 28000, Threads: 13, FDs: n, Goroutines: 35}
	}
	return samples
}

func TestCheckFlatIgnoresRunsInFlight(t *testing.T) {
	// A child in flight at a sample adds its descriptors; the floor stays.
	samples := samplesOf(43, 43, 49, 43, 43, 43, 50, 43, 49, 43, 49, 50, 50)
	if problems := checkFlat(samples); len(problems) > 0 {
		t.Errorf("problems %q for descriptors that only runs in flight raise", problems)
	}
}

func TestCheckFlatReportsALeak(t *testing.T) {
	// Two descriptors more at every sample, as a run that leaks its
	// pipes' write ends would cost.
	samples := samplesOf(43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63, 65, 67)
	problems := checkFlat(samples)
	if len(problems) != 1 || !strings.HasPrefix(problems[0], "fds grew") {
		t.Errorf("problems %q, want one about descriptors", problems)
	}
}
