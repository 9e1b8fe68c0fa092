package control

import (
	"context"
	"sync"
	"time"

	"github.com/agent-runner/agent-runner/jobs"
)

// maxQueuedOutput is the output, in bytes, by which a run-job client may
// fall behind its run before lines are dropped for it.
const maxQueuedOutput = 4 << 20

// outputQueue passes a run's output to its client without making the run
// wait: a client that reads slowly, such as a pager, gets the lines later,
// and one that falls more than maxQueuedOutput behind misses the lines
// past that and learns how many at the end.
//
// NOTE: lines travel as JSON strings, so invalid UTF-8 reaches a client
// as U+FFFD, and output through the daemon is not byte-exact.
type outputQueue struct {
	mu      sync.Mutex
	lines   []jobs.Line
	bytes   int
	dropped int
	closed  bool
	// wake has a value when lines arrived or the queue closed.
	wake chan struct{}
}

func newOutputQueue() *outputQueue {
	return &outputQueue{wake: make(chan struct{}, 1)}
}

// add queues line, or counts it as dropped when the queue is full.
func (q *outputQueue) add(line jobs.Line) {
	q.mu.Lock()
	if q.bytes+len(line.Text) > maxQueuedOutput {
		q.dropped++
		q.mu.Unlock()
		return
	}
	q.lines = append(q.lines, line)
	q.bytes += len(line.Text)
	q.mu.Unlock()
	q.signal()
}

// close ends the queue once the run has ended.
func (q *outputQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *outputQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// drain writes the queued lines until the queue is closed and empty, or a
// write fails. It returns the number of lines dropped.
func (q *outputQueue) drain(write func(jobs.Line) error) (int, error) {
	for {
		q.mu.Lock()
		batch, closed, dropped := q.lines, q.closed, q.dropped
		q.lines, q.bytes = nil, 0
		q.mu.Unlock()
		for _, line := range batch {
			if err := write(line); err != nil {
				return dropped, err
			}
		}
		switch {
		case len(batch) > 0:
		case closed:
			return dropped, nil
		default:
			<-q.wake
		}
	}
}

// sendUntil writes m with no deadline, so that a slow client delays only
// its own stream, until ctx ends. The caller sets the connection's write
// deadline to the past when ctx ends, which fails a write in progress.
func (e *encoder) sendUntil(ctx context.Context, m Message) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.conn.SetWriteDeadline(time.Time{})
	if err := ctx.Err(); err != nil {
		// ctx may have ended before the deadline was cleared.
		return err
	}
	return e.enc.Encode(m)
}
