package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

// countingListener counts its runs and runs until its context ends.
type countingListener struct{ calls atomic.Int32 }

func (l *countingListener) Run(ctx context.Context, _ listeners.Host) error {
	l.calls.Add(1)
	<-ctx.Done()
	return nil
}

func TestPoolStartAfterStopRunsNothing(t *testing.T) {
	p := newPool()
	done := make(chan error, 1)
	go func() { done <- p.run() }()
	p.stop(func(_ string, stop context.CancelCauseFunc) { stop(errors.New("stop")) })
	<-done

	log := slog.New(slog.DiscardHandler)
	l := &countingListener{}
	cfg := &config.Listener{Name: "late", Kind: "exec", HookQueue: 1}
	router := listeners.NewRouter(cfg, nil, nil, nil, log)
	p.start("late", listeners.NewSupervisor("late", "exec", l, router, nil, log))
	time.Sleep(200 * time.Millisecond)
	if n := l.calls.Load(); n != 0 {
		t.Errorf("a listener added after the pool stopped ran %d time(s)", n)
	}
}

func TestPoolEndsRetiredSupervisor(t *testing.T) {
	p := newPool()
	log := slog.New(slog.DiscardHandler)
	cfg := &config.Listener{Name: "gone", Kind: "exec", HookQueue: 1}
	router := listeners.NewRouter(cfg, nil, nil, nil, log)
	sup := listeners.NewSupervisor("gone", "exec", &countingListener{}, router, nil, log)
	p.start("gone", sup)
	sup.Retire()
	p.end(sup)

	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the retired supervisor's goroutine still runs")
	}
	if len(p.stops) != 0 {
		t.Errorf("%d stop entries left after the end, want 0", len(p.stops))
	}
}

func TestChatListenerStopsAfterJobs(t *testing.T) {
	cfg := &config.Config{Runner: config.Runner{ShutdownTimeout: time.Minute, KillGrace: time.Second}}
	jobsStopped := make(chan struct{})
	set := &listenerSet{
		cfg: cfg,
		log: slog.New(slog.DiscardHandler),
		configs: map[string]*config.Listener{
			"chat": {Name: "chat", Kind: config.KindTwitch},
			"web":  {Name: "web", Kind: config.KindExec, Exec: &config.Exec{Command: []string{"true"}}},
		},
	}
	set.stopAfterJobs(jobsStopped)
	chat, stopChat := context.WithCancelCause(context.Background())
	web, stopWeb := context.WithCancelCause(context.Background())

	set.stopListener("chat", stopChat)
	set.stopListener("web", stopWeb)
	if web.Err() == nil {
		t.Error("the exec listener still runs after its stop, want it stopped at once")
	}
	time.Sleep(100 * time.Millisecond)
	if chat.Err() != nil {
		t.Fatal("the chat listener stopped while jobs still run")
	}

	close(jobsStopped)
	select {
	case <-chat.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the chat listener still runs 5 s after the jobs stopped")
	}
}
