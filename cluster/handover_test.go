package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/cluster/etcdtest"
)

func TestHandoverRecordsResign(t *testing.T) {
	c := etcdtest.Start(t, 3)
	client := c.Client()
	a, b := newNode(client, "/ha/", "a"), newNode(client, "/ha/", "b")

	termA := a.win(t)
	if termA.Handover != (Handover{}) {
		t.Errorf("first term's handover: got %+v, want none", termA.Handover)
	}
	pending := campaignAsync(t.Context(), b.elector)
	if err := termA.Resign(context.Background()); err != nil {
		t.Fatalf("resign: %v", err)
	}
	termB := waitTerm(t, pending)
	want := Handover{Previous: "a", PreviousTerm: termA.Rev, Resigned: true}
	if termB.Handover != want {
		t.Errorf("handover after a resign: got %+v, want %+v", termB.Handover, want)
	}

	pending = campaignAsync(t.Context(), a.elector)
	if _, err := client.Revoke(context.Background(), termB.session.Lease()); err != nil {
		t.Fatalf("revoke b's lease: %v", err)
	}
	waitLost(t, termB)
	termA = waitTerm(t, pending)
	want = Handover{Previous: "b", PreviousTerm: termB.Rev, Resigned: false}
	if termA.Handover != want {
		t.Errorf("handover after an expired lease: got %+v, want %+v", termA.Handover, want)
	}
}

func TestHandoverListenerDelay(t *testing.T) {
	const wait = 90 * time.Second
	ran := func(term int64) bool { return term == 7 }
	cases := []struct {
		name     string
		handover Handover
		want     time.Duration
	}{
		{"first term", Handover{}, 0},
		{"resigned", Handover{Previous: "a", PreviousTerm: 5, Resigned: true}, 0},
		{"expired", Handover{Previous: "a", PreviousTerm: 5}, wait},
		{"own lost term", Handover{Previous: "b", PreviousTerm: 7}, 0},
	}
	for _, tc := range cases {
		if got := tc.handover.ListenerDelay(wait, ran); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := (Handover{Previous: "a", PreviousTerm: 7}).ListenerDelay(wait, nil); got != wait {
		t.Errorf("expired without a record of own terms: got %s, want %s", got, wait)
	}
}

func TestTermCheckLive(t *testing.T) {
	c := etcdtest.Start(t, 3)
	client := c.Client()
	a := newNode(client, "/ha/", "a")
	term := a.win(t)
	if err := term.CheckLive(); err != nil {
		t.Fatalf("fresh term: %v", err)
	}
	time.Sleep(term.window + checkInterval)
	if err := term.CheckLive(); err != nil {
		t.Errorf("term renewed for a whole window: %v", err)
	}
	if _, err := client.Revoke(context.Background(), term.session.Lease()); err != nil {
		t.Fatalf("revoke the lease: %v", err)
	}
	waitLost(t, term)
	if err := term.CheckLive(); !errors.Is(err, ErrNotLeader) {
		t.Errorf("lost term: got %v, want ErrNotLeader", err)
	}
}

// A term whose renewals stop fails CheckLive once the window has passed,
// whether or not its watch loop has run since, as after SIGSTOP.
func TestTermCheckLiveStale(t *testing.T) {
	term := &Term{window: time.Second, base: time.Now().Add(-2 * time.Second), lost: make(chan struct{})}
	if err := term.CheckLive(); !errors.Is(err, ErrNotLeader) {
		t.Errorf("renewal two seconds old: got %v, want ErrNotLeader", err)
	}
	term.renewed(time.Now())
	if err := term.CheckLive(); err != nil {
		t.Errorf("renewal just now: %v", err)
	}
	term.renewed(time.Now().Add(-time.Minute))
	if err := term.CheckLive(); err != nil {
		t.Errorf("an older renewal moved the stamp back: %v", err)
	}
}
