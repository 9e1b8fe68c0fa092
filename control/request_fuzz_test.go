package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/jobs"
	"github.com/agent-runner/agent-runner/state"
)

// stubHandler returns at once for every operation, so that the fuzz
// target exercises the server's reading, decoding and replying only. The
// embedded Handler is nil. It only keeps the stub compiling when the
// interface grows, and a call to a method the stub lacks panics.
type stubHandler struct{ Handler }

func (stubHandler) RunJob(_ context.Context, req jobs.Request) (state.Run, error) {
	if req.Job == "" {
		return state.Run{}, fmt.Errorf("run %q: %w", req.Job, jobs.ErrUnknownJob)
	}
	run := state.Run{ID: "1", Job: req.Job, Trigger: req.Trigger, Start: time.Unix(0, 0).UTC()}
	if req.Started != nil {
		req.Started(run)
	}
	if req.Output != nil {
		req.Output(jobs.Line{Stream: "stdout", Text: req.Job})
	}
	run.Result = state.ResultOK
	return run, nil
}

func (stubHandler) Status() (Status, error) {
	return Status{Jobs: []jobs.JobStatus{{Schedule: "@daily", State: "scheduled"}}}, nil
}

func (stubHandler) Send(_ context.Context, listener, _, _ string) (string, error) {
	if listener == "" {
		return "", errors.New("missing listener")
	}
	return listener, nil
}

func (stubHandler) Reload() (string, error) { return "no changes", nil }

func (stubHandler) RecordRun(state.Run) error { return nil }

func (stubHandler) Runs(job string, _ int, _ string) ([]state.Run, error) {
	return []state.Run{{ID: "1", Job: job, Result: state.ResultOK}}, nil
}

// final reports whether m ends an exchange.
func final(m Message) bool {
	return m.Run != nil || m.Status != nil || m.Sent != nil || m.Runs != nil || m.Reloaded != "" || m.Error != nil
}

// FuzzRequestLine writes arbitrary bytes as a client's request to a real
// Server on a unix socket, then half-closes. The server must reply with
// lines that each decode as a Message, end with exactly one final
// message, and close the connection within 5 s. A request line over the
// 64 KiB limit must get a bad-request error.
func FuzzRequestLine(f *testing.F) {
	for _, seed := range []string{
		`{"op":"status"}` + "\n",
		`{"op":"run-job","job":"backup","wait":true}` + "\n",
		`{"op":"run-job"}` + "\n",
		`{"op":"send","listener":"chat","target":"#c","text":"hi\nthere"}` + "\n",
		`{"op":"reload"}` + "\n",
		`{"op":"runs","job":"backup","limit":-1}` + "\n",
		`{"op":"nope"}` + "\n",
		`{"op":"status"}`,
		`{"op":"status"}` + "\n" + `{"op":"reload"}` + "\n",
		"\x00\xff\n",
		`{"op":` + strings.Repeat("[", 10000) + "\n",
		`{"op":"status","op":"run-job","job":"x"}` + "\n",
		"\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		f.Fatal(err)
	}
	socket := filepath.Join(dir, "s")
	srv, err := Listen(socket, "", stubHandler{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve()
	f.Cleanup(func() {
		srv.Close()
		os.RemoveAll(dir)
	})

	f.Fuzz(func(t *testing.T, request []byte) {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		conn := c.(*net.UnixConn)
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(request); err != nil {
			t.Fatalf("write request: %v", err)
		}
		_ = conn.CloseWrite()

		scanner := bufio.NewScanner(conn)
		scanner.Buffer(make([]byte, 64<<10), 8<<20)
		var messages []Message
		for scanner.Scan() {
			var m Message
			if err := json.Unmarshal(scanner.Bytes(), &m); err != nil {
				t.Fatalf("reply line %q is not a Message: %v", scanner.Bytes(), err)
			}
			messages = append(messages, m)
		}
		if err := scanner.Err(); err != nil {
			t.Fatalf("read reply to %q: %v", request, err)
		}
		if len(messages) == 0 {
			t.Fatalf("no reply to %q", request)
		}
		for i, m := range messages {
			if final(m) != (i == len(messages)-1) {
				t.Fatalf("reply to %q: message %d of %d is final=%v: %+v", request, i+1, len(messages), final(m), messages)
			}
		}
		line, _, _ := bytes.Cut(request, []byte("\n"))
		if len(line)+1 > maxRequestBytes {
			last := messages[len(messages)-1]
			if last.Error == nil || last.Error.Code != CodeBadRequest {
				t.Fatalf("a %d-byte request line got %+v, want a bad-request error", len(line), last)
			}
		}
	})
}
