package jobs

import (
	"container/heap"
	"time"
)

// slotHeap orders the scheduled entries by their next slot, so the
// dispatcher needs one timer for the earliest instant, however many jobs
// share it, and pops every job due at that instant in one batch.
type slotHeap []*entry

func (h slotHeap) Len() int { return len(h) }

func (h slotHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	// Equal slots pop in name order, as catch-up handles them.
	return h[i].job.Name < h[j].job.Name
}

func (h slotHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *slotHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *slotHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

// schedule puts e in the heap at its next slot, or takes it out when it
// has none.
func (h *slotHeap) schedule(e *entry) {
	switch {
	case e.next.IsZero() && e.index >= 0:
		heap.Remove(h, e.index)
	case e.next.IsZero():
	case e.index >= 0:
		heap.Fix(h, e.index)
	default:
		heap.Push(h, e)
	}
}

// remove takes e out of the heap if it is there.
func (h *slotHeap) remove(e *entry) {
	if e.index >= 0 {
		heap.Remove(h, e.index)
	}
}

// earliest returns the first next slot, or false for an empty heap.
func (h slotHeap) earliest() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0].next, true
}

// popDue removes and returns the entries whose next slot is not after
// until, earliest first.
func (h *slotHeap) popDue(until time.Time) []*entry {
	var due []*entry
	for len(*h) > 0 && !(*h)[0].next.After(until) {
		due = append(due, heap.Pop(h).(*entry))
	}
	return due
}

// delayedRuns are catch-up runs that wait for their place in
// catch_up_spread, in the order of their start instants.
type delayedRuns []delayedRun

type delayedRun struct {
	at       time.Time
	requests []Request
}

// add inserts d after every run due at or before its instant.
func (q *delayedRuns) add(d delayedRun) {
	i := len(*q)
	for i > 0 && (*q)[i-1].at.After(d.at) {
		i--
	}
	*q = append(*q, delayedRun{})
	copy((*q)[i+1:], (*q)[i:])
	(*q)[i] = d
}

// popDue removes and returns the requests of the runs due by now.
func (q *delayedRuns) popDue(now time.Time) []Request {
	var due []Request
	n := 0
	for n < len(*q) && !(*q)[n].at.After(now) {
		due = append(due, (*q)[n].requests...)
		n++
	}
	*q = (*q)[n:]
	return due
}

// take removes the job's requests and returns the instant of the first
// run that had one, or false when none waits.
func (q *delayedRuns) take(job string) (time.Time, []Request, bool) {
	var (
		at      time.Time
		removed []Request
	)
	remaining := (*q)[:0]
	for _, d := range *q {
		var rest []Request
		for _, req := range d.requests {
			if req.Job != job {
				rest = append(rest, req)
				continue
			}
			if len(removed) == 0 {
				at = d.at
			}
			removed = append(removed, req)
		}
		if len(rest) > 0 {
			remaining = append(remaining, delayedRun{at: d.at, requests: rest})
		}
	}
	clear((*q)[len(remaining):])
	*q = remaining
	return at, removed, len(removed) > 0
}

// firsts returns, per job with a run in the queue, the instant of its
// first one, in one pass over the queue.
func (q delayedRuns) firsts() map[string]time.Time {
	out := make(map[string]time.Time)
	for _, d := range q {
		for _, req := range d.requests {
			if _, ok := out[req.Job]; !ok {
				out[req.Job] = d.at
			}
		}
	}
	return out
}

// has reports whether a run of the job waits in the queue.
func (q delayedRuns) has(job string) bool {
	for _, d := range q {
		for _, req := range d.requests {
			if req.Job == job {
				return true
			}
		}
	}
	return false
}
