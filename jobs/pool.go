package jobs

import (
	"sync"
	"time"
)

// defaultWorkers is the number of worker places when max_concurrent sets
// no cap. A place is held by a run on its way to starting, which waits
// for its job lock, the gate or the claim's commit, and then for the
// run's first detachAfter. The claims of all places share group commits,
// so more places mostly add goroutine stacks and children at once.
const defaultWorkers = 64

// detachAfter is how long a run holds its worker place. A burst of runs
// shorter than that, such as quick checks, has no more runs going at once
// than the pool has places. A longer run lets go of its place, so the
// pool never caps the runs going on; only max_concurrent does.
//
// NOTE: without max_concurrent, when more long runs share a slot than the
// pool has places, each further group of them starts up to detachAfter
// after the one before.
const detachAfter = time.Second

// pool runs the dispatcher's requests on a bounded set of goroutines. A
// request waits in the queue, not in a goroutine of its own, until a
// worker takes it. Once its run has gone on for detachAfter, or starts a
// long wait for the job lock, the run lets go of its worker place through
// Request.release: it goes on in the same goroutine, and another worker
// starts when the queue holds more.
type pool struct {
	run func(Request)

	mu    sync.Mutex
	limit int
	// active counts the workers that hold a place.
	active  int
	queue   []Request
	stopped bool
	wg      sync.WaitGroup
}

func newPool(limit int, run func(Request)) *pool {
	p := &pool{run: run}
	p.setLimit(limit)
	return p
}

// setLimit sets the number of worker places: max_concurrent, or
// defaultWorkers when that is 0.
func (p *pool) setLimit(maxConcurrent int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limit = maxConcurrent
	if p.limit <= 0 {
		p.limit = defaultWorkers
	}
	p.startWorkersLocked()
}

// submit queues requests in order, behind those already queued.
func (p *pool) submit(requests []Request) {
	if len(requests) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.queue = append(p.queue, requests...)
	p.startWorkersLocked()
}

func (p *pool) startWorkersLocked() {
	for !p.stopped && p.active < p.limit && p.active < len(p.queue) {
		p.active++
		p.wg.Add(1)
		go p.work()
	}
}

// work takes requests from the queue until it is empty or the worker's
// run let go of its place and no place is free to take back.
func (p *pool) work() {
	defer p.wg.Done()
	for {
		req, ok := p.next()
		if !ok {
			return
		}
		var once sync.Once
		released := false
		req.release = func() {
			once.Do(func() {
				released = true
				p.releasePlace()
			})
		}
		p.run(req)
		// The run may have let go of its place; the worker then needs a
		// free one before it takes more work.
		once.Do(func() {})
		if released && !p.retake() {
			return
		}
	}
}

// next pops the oldest request, or gives up the worker's place when the
// queue is empty.
func (p *pool) next() (Request, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || len(p.queue) == 0 {
		p.active--
		return Request{}, false
	}
	req := p.queue[0]
	p.queue[0] = Request{}
	p.queue = p.queue[1:]
	if len(p.queue) == 0 {
		// Let the backing array go after a burst.
		p.queue = nil
	}
	return req, true
}

func (p *pool) releasePlace() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active--
	p.startWorkersLocked()
}

// retake takes a place back for a worker whose run released it, when one
// is free and work is waiting.
func (p *pool) retake() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.active >= p.limit || len(p.queue) == 0 {
		return false
	}
	p.active++
	return true
}

// stop drops the queued requests and waits for the workers, whose runs
// the caller has stopped through Runner.Shutdown.
func (p *pool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.queue = nil
	p.mu.Unlock()
	p.wg.Wait()
}
