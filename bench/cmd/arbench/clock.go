package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// clockStepThreshold is the gap between wall-clock and monotonic elapsed
// time, over one check interval, that counts as a step of the wall clock.
const clockStepThreshold = 500 * time.Millisecond

// clockWatch records steps of the wall clock while the figures run. A
// step falsifies every figure that subtracts wall-clock instants, such as
// a slot and a run's start, so the output lists them.
type clockWatch struct {
	mu    sync.Mutex
	steps []string
	// activity is the last progress message, which names the measurement
	// that a step hit.
	activity string
	done     chan struct{}
	wg       sync.WaitGroup
}

func newClockWatch() *clockWatch {
	w := &clockWatch{done: make(chan struct{})}
	w.wg.Add(1)
	go w.watch()
	return w
}

func (w *clockWatch) watch() {
	defer w.wg.Done()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	last := time.Now()
	for {
		select {
		case <-w.done:
			return
		case <-ticker.C:
		}
		now := time.Now()
		// Round(0) drops the monotonic reading, so the first difference
		// is wall-clock time and the second monotonic time.
		step := now.Round(0).Sub(last.Round(0)) - now.Sub(last)
		if step > clockStepThreshold || step < -clockStepThreshold {
			w.mu.Lock()
			w.steps = append(w.steps, fmt.Sprintf("wall clock stepped by %s at %s, during: %s",
				step.Round(time.Millisecond), now.Format("15:04:05"), w.activity))
			w.mu.Unlock()
		}
		last = now
	}
}

// setActivity names the measurement running now.
func (w *clockWatch) setActivity(activity string) {
	w.mu.Lock()
	w.activity = activity
	w.mu.Unlock()
}

// stop ends the watch and writes the steps it saw to out.
func (w *clockWatch) stop(out io.Writer) {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.steps) == 0 {
		fmt.Fprintln(out, "Wall-clock steps during the run: none seen (checked every second).")
		return
	}
	fmt.Fprintln(out, "Wall-clock steps during the run; figures that subtract wall-clock instants in these measurements are not valid:")
	for _, step := range w.steps {
		fmt.Fprintln(out, "- "+step)
	}
}
