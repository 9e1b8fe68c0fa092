package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
	"github.com/agent-runner/agent-runner/listeners"
)

func testGate(fence func() error) *listenerGate {
	return &listenerGate{opened: make(chan struct{}), until: time.Now().Add(time.Minute), previous: "a", fence: fence, log: slog.Default()}
}

func TestListenerGateWaitsThenOpens(t *testing.T) {
	gate := testGate(func() error { return nil })
	if _, waiting := gate.waiting(); !waiting {
		t.Fatal("new gate with a delay: not waiting")
	}
	if err := gate.check("chat", "send"); err == nil || !strings.Contains(err.Error(), "handover") {
		t.Errorf("check while waiting: got %v, want the handover wait", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if gate.wait(ctx) {
		t.Error("wait returned true for an ended context while the gate is closed")
	}
	close(gate.opened)
	if !gate.wait(context.Background()) {
		t.Error("wait returned false on an open gate")
	}
	if err := gate.check("chat", "send"); err != nil {
		t.Errorf("check on an open gate of a live term: %v", err)
	}
	if gate.denied.Load() != 1 {
		t.Errorf("denied: got %d, want 1", gate.denied.Load())
	}
}

func TestListenerGateFencesLostTerm(t *testing.T) {
	lost := errors.New("term lost")
	gate := testGate(func() error { return lost })
	close(gate.opened)
	if err := gate.check("chat", "send"); !errors.Is(err, lost) {
		t.Errorf("check of a lost term: got %v, want %v", err, lost)
	}
	var nilGate *listenerGate
	if err := nilGate.check("chat", "send"); err != nil {
		t.Errorf("check without a cluster: %v", err)
	}
}

func TestRouterDropsFencedEvents(t *testing.T) {
	lc := &config.Listener{Name: "chat", Kind: config.KindExec}
	router := listeners.NewRouter(lc, nil, nil, nil, slog.Default())
	defer router.Close()
	var live bool
	router.SetFence(func(string) error {
		if live {
			return nil
		}
		return errors.New("term lost")
	})
	router.Deliver(listeners.Event{ID: "1"})
	live = true
	router.Deliver(listeners.Event{ID: "2"})
	sup := listeners.NewSupervisor("chat", config.KindExec, nil, router, nil, slog.Default())
	h := sup.Health()
	if h.Fenced != 1 {
		t.Errorf("fenced: got %d, want 1", h.Fenced)
	}
	if h.Handled != 1 {
		t.Errorf("handled: got %d, want 1", h.Handled)
	}
}
