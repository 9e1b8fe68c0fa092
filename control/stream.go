package control

import (
	"sync"

	"github.com/agent-runner/agent-runner/jobs"
)

// maxQueuedOutput is the memory, in bytes, that the output a run-job
// client has not yet received may take before lines are dropped for it.
const maxQueuedOutput = 4 << 20

// lineOverhead is the estimated memory of the Message and jobs.Line that
// carry a queued line beside its text, so that a flood of empty lines is
// bounded too.
const lineOverhead = 64

// outputQueue carries a run-job's messages to its client in order, from
// a writer goroutine, so that the run never waits for the client. A
// client that reads slowly, such as a pager, gets the lines later. One
// that falls more than maxQueuedOutput behind misses the lines past that
// and learns how many in the final message.
//
// NOTE: lines travel as JSON strings, so invalid UTF-8 reaches a client
// as U+FFFD, and output through the daemon is not byte-exact.
type outputQueue struct {
	mu       sync.Mutex
	messages []Message
	// bytes is the memory of the queued lines and the one being written.
	bytes   int
	dropped int
	closed  bool
	// failed is set once a write failed, after which nothing is queued.
	failed bool
	// wake has a value when messages arrived or the queue closed.
	wake chan struct{}
}

func newOutputQueue() *outputQueue {
	return &outputQueue{wake: make(chan struct{}, 1)}
}

// addLine queues a line of output, or counts it as dropped when the
// queue is full.
func (q *outputQueue) addLine(line jobs.Line) {
	cost := len(line.Text) + lineOverhead
	q.mu.Lock()
	switch {
	case q.failed:
	case q.bytes+cost > maxQueuedOutput:
		q.dropped++
	default:
		q.messages = append(q.messages, Message{Line: &line})
		q.bytes += cost
	}
	q.mu.Unlock()
	q.signal()
}

// add queues a message other than output, which is never dropped.
func (q *outputQueue) add(m Message) {
	q.mu.Lock()
	if !q.failed {
		q.messages = append(q.messages, m)
	}
	q.mu.Unlock()
	q.signal()
}

// finish queues the final message, with the count of dropped lines for a
// run, and closes the queue.
func (q *outputQueue) finish(final Message) {
	q.mu.Lock()
	if final.Run != nil {
		final.OutputDropped = q.dropped
	}
	q.messages = append(q.messages, final)
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

// drain writes the queued messages in order until the queue is closed
// and empty, or a write fails.
func (q *outputQueue) drain(write func(Message) error) error {
	for {
		q.mu.Lock()
		batch, closed := q.messages, q.closed
		q.messages = nil
		q.mu.Unlock()
		for _, m := range batch {
			err := write(m)
			q.mu.Lock()
			if m.Line != nil {
				q.bytes -= len(m.Line.Text) + lineOverhead
			}
			if err != nil {
				q.failed, q.messages = true, nil
			}
			q.mu.Unlock()
			if err != nil {
				return err
			}
		}
		switch {
		case len(batch) > 0:
		case closed:
			return nil
		default:
			<-q.wake
		}
	}
}
