package process

import (
	"fmt"
	"os"
)

// inputWriter writes a child's standard input through a pipe that the
// runner owns. os/exec copies a Stdin that is not an *os.File on a
// goroutine that Cmd.Wait waits for. A child can exit and leave a
// background process that keeps the pipe open unread, with more input
// left than the pipe buffer takes. That copy then never ends, so Wait,
// and the stop of the background process after it, would block.
type inputWriter struct {
	data []byte
	pipe *os.File
	done chan struct{}
}

// newInputWriter creates the pipe for data and returns its writer and
// the read end, which the child gets as its stdin.
func newInputWriter(data []byte) (*inputWriter, *os.File, error) {
	read, write, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("create stdin pipe: %w", err)
	}
	return &inputWriter{data: data, pipe: write}, read, nil
}

// start writes the data in the background and closes the pipe after it.
// A write error, such as EPIPE from a child that exited without reading,
// only ends the write, as it would with os/exec.
func (w *inputWriter) start() {
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		_, _ = w.pipe.Write(w.data)
		_ = w.pipe.Close()
	}()
}

// close ends a write still in progress and waits for it to return.
func (w *inputWriter) close() {
	_ = w.pipe.Close()
	if w.done != nil {
		<-w.done
	}
}
