package cluster

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/agent-runner/agent-runner/cluster/etcdtest"
	"github.com/agent-runner/agent-runner/state"
)

// testTTL is the lease TTL of the election tests, the minimum the
// config allows, so that expiry comes quickly.
const testTTL = 3 * time.Second

// waitTimeout bounds every wait in these tests. It is far above what a
// healthy run takes, so it only ends a test that hangs.
const waitTimeout = 60 * time.Second

// node is one contender: its elector and a store that writes under the
// fence of its current term.
type node struct {
	elector *Elector
	store   *Etcd
}

func newNode(client *clientv3.Client, prefix, name string) node {
	return newNodeTTL(client, prefix, name, testTTL)
}

// newNodeTTL is newNode with a lease TTL of ttl.
func newNodeTTL(client *clientv3.Client, prefix, name string, ttl time.Duration) node {
	return node{
		elector: NewElector(client, prefix, name, ttl, slog.Default()),
		store:   NewEtcd(client, prefix, 10),
	}
}

// win campaigns until n leads and fences n's store on the term.
func (n node) win(t *testing.T) *Term {
	t.Helper()
	term := campaign(t, n.elector)
	n.store.SetFence(term.Fence)
	return term
}

// campaignAsync starts a campaign and returns where its term arrives.
func campaignAsync(ctx context.Context, e *Elector) <-chan *Term {
	out := make(chan *Term, 1)
	go func() {
		term, err := e.Campaign(ctx)
		if err == nil {
			out <- term
		}
		close(out)
	}()
	return out
}

func waitTerm(t *testing.T, terms <-chan *Term) *Term {
	t.Helper()
	select {
	case term, ok := <-terms:
		if !ok {
			t.Fatal("campaign ended without winning")
		}
		t.Cleanup(term.Close)
		return term
	case <-time.After(waitTimeout):
		t.Fatalf("no leader after %s", waitTimeout)
	}
	return nil
}

func waitLost(t *testing.T, term *Term) {
	t.Helper()
	select {
	case <-term.Lost():
	case <-time.After(waitTimeout):
		t.Fatalf("term %d not lost after %s", term.Rev, waitTimeout)
	}
}

func claimSlot(s *Etcd, slot time.Time) error {
	_, err := s.Claim(state.Run{Job: "a", Trigger: state.TriggerSchedule, Slot: slot, Start: slot}, slot)
	return err
}

func TestElectionResignHandsOver(t *testing.T) {
	c := etcdtest.Start(t, 3)
	a, b := newNode(c.Client(), "/ha/", "a"), newNode(c.Client(), "/ha/", "b")
	termA := a.win(t)
	if err := claimSlot(a.store, t0); err != nil {
		t.Fatalf("leader's claim: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pending := campaignAsync(ctx, b.elector)
	select {
	case <-pending:
		t.Fatal("b won while a leads")
	case <-time.After(testTTL):
	}
	if err := termA.Resign(context.Background()); err != nil {
		t.Fatalf("resign: %v", err)
	}
	termB := waitTerm(t, pending)
	b.store.SetFence(termB.Fence)
	if termB.Rev <= termA.Rev {
		t.Errorf("term of b %d is not after term of a %d", termB.Rev, termA.Rev)
	}
	if err := claimSlot(a.store, t0.Add(time.Minute)); !errors.Is(err, ErrNotLeader) {
		t.Errorf("deposed leader's claim: got %v, want ErrNotLeader", err)
	}
	if err := claimSlot(b.store, t0.Add(time.Minute)); err != nil {
		t.Errorf("new leader's claim: %v", err)
	}
	leader, ok, err := b.elector.Leader(context.Background())
	if err != nil || !ok || leader.Node != "b" || leader.Term != termB.Rev {
		t.Errorf("leader: got %+v, ok %v, err %v, want b at term %d", leader, ok, err, termB.Rev)
	}
}

func TestElectionRevokedLease(t *testing.T) {
	c := etcdtest.Start(t, 3)
	client := c.Client()
	a, b := newNode(client, "/ha/", "a"), newNode(c.Client(), "/ha/", "b")
	termA := a.win(t)
	pending := campaignAsync(t.Context(), b.elector)
	if _, err := client.Revoke(context.Background(), termA.session.Lease()); err != nil {
		t.Fatalf("revoke the leader's lease: %v", err)
	}
	waitLost(t, termA)
	b.store.SetFence(waitTerm(t, pending).Fence)
	if err := claimSlot(a.store, t0); !errors.Is(err, ErrNotLeader) {
		t.Errorf("claim after the lease was revoked: got %v, want ErrNotLeader", err)
	}
	if err := claimSlot(b.store, t0); err != nil {
		t.Errorf("new leader's claim: %v", err)
	}
}

// A leader whose connection to etcd freezes stops keepalives without
// knowing it. It must notice on its own, lose the election to a node
// that still reaches etcd, and have its writes rejected once it thaws.
func TestElectionFrozenLeader(t *testing.T) {
	c := etcdtest.Start(t, 3)
	proxy := etcdtest.NewProxy(t, strings.TrimPrefix(c.Members[0].ClientURL, "http://"))
	frozen := newNode(c.Client("http://"+proxy.Addr), "/ha/", "frozen")
	other := newNode(c.Client(), "/ha/", "other")
	termFrozen := frozen.win(t)
	pending := campaignAsync(t.Context(), other.elector)

	proxy.Pause()
	waitLost(t, termFrozen)
	if reason := termFrozen.Reason(); !strings.Contains(reason, "keepalive") {
		t.Errorf("reason: got %q, want the missing keepalive", reason)
	}
	other.store.SetFence(waitTerm(t, pending).Fence)
	if err := claimSlot(other.store, t0); err != nil {
		t.Fatalf("new leader's claim: %v", err)
	}

	proxy.Resume()
	if err := claimSlot(frozen.store, t0.Add(time.Minute)); !errors.Is(err, ErrNotLeader) {
		t.Errorf("thawed leader's claim: got %v, want ErrNotLeader", err)
	}
	job, _, err := other.store.Job("a")
	if err != nil || !job.LastSlot.Equal(t0) {
		t.Errorf("last slot: got %s, err %v, want %s", job.LastSlot, err, t0)
	}
}

func TestElectionSurvivesOneMemberDown(t *testing.T) {
	c := etcdtest.Start(t, 3)
	// The default lease_ttl, not the minimum: on a loaded 2-core CI
	// machine with the race detector, the client's move to another member
	// once took longer than 3 s, and the lease expired.
	const ttl = 10 * time.Second
	a := newNodeTTL(c.Client(), "/ha/", "a", ttl)
	term := a.win(t)
	c.Stop(0)
	for i := range 3 {
		if err := claimSlot(a.store, t0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatalf("claim %d with one member down: %v", i, err)
		}
	}
	select {
	case <-term.Lost():
		t.Fatalf("leadership lost with two of three members up: %s", term.Reason())
	case <-time.After(2 * ttl):
	}
	if err := claimSlot(a.store, t0.Add(time.Hour)); err != nil {
		t.Errorf("claim after two TTLs with one member down: %v", err)
	}
}

func TestElectionQuorumLostStopsLeader(t *testing.T) {
	c := etcdtest.Start(t, 3)
	a := newNode(c.Client(), "/ha/", "a")
	term := a.win(t)
	c.Stop(1)
	c.Stop(2)
	stopped := time.Now()
	waitLost(t, term)
	t.Logf("leadership lost %s after the second member stopped (TTL %s): %s", time.Since(stopped).Round(time.Millisecond), testTTL, term.Reason())
}

func TestElectionObserve(t *testing.T) {
	c := etcdtest.Start(t, 3)
	a, b := newNode(c.Client(), "/ha/", "a"), newNode(c.Client(), "/ha/", "b")
	leaders := a.elector.Observe(t.Context())
	next := func() Leader {
		select {
		case l := <-leaders:
			return l
		case <-time.After(waitTimeout):
			t.Fatal("no leader change observed")
		}
		return Leader{}
	}
	if l := next(); l.Node != "" {
		t.Fatalf("first observation: got %+v, want no leader", l)
	}
	termA := a.win(t)
	for l := next(); l.Node != "a"; l = next() {
	}
	pending := campaignAsync(t.Context(), b.elector)
	if err := termA.Resign(context.Background()); err != nil {
		t.Fatalf("resign: %v", err)
	}
	waitTerm(t, pending)
	for l := next(); l.Node != "b"; l = next() {
	}
	members, err := b.elector.Members(context.Background())
	if err != nil || len(members) != 1 || members[0].Node != "b" {
		t.Errorf("members after a resigned: got %+v, err %v, want only b", members, err)
	}
}
