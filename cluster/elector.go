package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Elector campaigns for leadership of the nodes that share one prefix,
// with an etcd lease of a fixed TTL as the proof that a node is alive.
type Elector struct {
	client *clientv3.Client
	keys   keys
	node   string
	ttl    time.Duration
	log    *slog.Logger
}

// NewElector returns an elector for node under prefix. ttl is rounded
// down to whole seconds, since etcd grants leases in seconds.
func NewElector(client *clientv3.Client, prefix, node string, ttl time.Duration, log *slog.Logger) *Elector {
	return &Elector{client: client, keys: keys{prefix}, node: node, ttl: ttl.Truncate(time.Second), log: log}
}

// Node returns the name this elector campaigns with.
func (e *Elector) Node() string { return e.node }

// Leader describes the node that holds leadership.
type Leader struct {
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	// Term is the create revision of the leader's election key, which
	// grows with every election won.
	Term  int64            `json:"-"`
	Lease clientv3.LeaseID `json:"-"`
}

// Member is one node with a live session, leader or not.
type Member struct {
	Node    string    `json:"node"`
	Started time.Time `json:"started"`
}

// stopAfter is how long a leader goes on without a lease keepalive
// response before it stops its work. It is half the TTL, but at least
// one keepalive interval plus a second, so that a single late response
// does not depose a healthy leader. etcd's client (v3.7.3) sends a
// keepalive TTL/3 after the last response, from a loop that runs every
// 500 ms. With the minimum TTL of 3 s, that leaves 1 s before etcd can
// expire the lease.
func stopAfter(ttl time.Duration) time.Duration {
	return max(ttl/2, ttl/3+time.Second)
}

// Campaign opens a session and blocks until this node is the leader, ctx
// ends or the session is lost before winning. The session registers the
// node as a member while it lasts.
func (e *Elector) Campaign(ctx context.Context) (*Term, error) {
	// The lease is granted here because concurrency.NewSession grants it
	// under the client's context, which a stop signal would not end.
	lease, err := e.client.Grant(ctx, int64(e.ttl/time.Second))
	if err != nil {
		return nil, fmt.Errorf("grant etcd lease: %w", err)
	}
	session, err := concurrency.NewSession(e.client, concurrency.WithLease(lease.ID), concurrency.WithTTL(int(e.ttl/time.Second)))
	if err != nil {
		return nil, fmt.Errorf("open etcd session: %w", err)
	}
	term, err := e.campaign(ctx, session)
	if err != nil {
		closeSession(session)
		return nil, err
	}
	return term, nil
}

func (e *Elector) campaign(ctx context.Context, session *concurrency.Session) (*Term, error) {
	member, _ := json.Marshal(Member{Node: e.node, Started: time.Now().UTC()})
	if _, err := e.client.Put(ctx, e.keys.node(e.node), string(member), clientv3.WithLease(session.Lease())); err != nil {
		return nil, fmt.Errorf("register node %s: %w", e.node, err)
	}
	// A session lost while waiting ends the campaign: its key is gone,
	// so winning would prove nothing.
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-session.Done():
			cancel()
		case <-waitCtx.Done():
		}
	}()
	election := concurrency.NewElection(session, e.keys.election())
	value, _ := json.Marshal(Leader{Node: e.node, Since: time.Now().UTC()})
	if err := election.Campaign(waitCtx, string(value)); err != nil {
		return nil, fmt.Errorf("campaign for leadership: %w", err)
	}

	since := time.Now().UTC()
	value, _ = json.Marshal(Leader{Node: e.node, Since: since})
	if err := election.Proclaim(ctx, string(value)); err != nil {
		return nil, fmt.Errorf("announce leadership: %w", err)
	}
	return e.startTerm(ctx, session, election, since)
}

// startTerm records the term won by election, renews its lease once to
// date the renewal that liveness checks start from, and starts watching
// it.
func (e *Elector) startTerm(ctx context.Context, session *concurrency.Session, election *concurrency.Election, since time.Time) (*Term, error) {
	term := &Term{
		Fence:   Fence{Key: election.Key(), Rev: election.Rev()},
		Since:   since,
		session: session,
		client:  e.client,
		keys:    e.keys,
		node:    e.node,
		window:  stopAfter(e.ttl),
		base:    time.Now(),
		lost:    make(chan struct{}),
		log:     e.log,
	}
	handover, err := recordTerm(ctx, e.client, e.keys, term.Fence, e.node, since)
	if err != nil {
		return nil, err
	}
	term.Handover = handover
	sent := time.Now()
	if _, err := e.client.KeepAliveOnce(ctx, session.Lease()); err != nil {
		return nil, fmt.Errorf("renew etcd lease: %w", err)
	}
	term.renewed(sent)
	watchCtx, stop := context.WithCancel(context.Background())
	term.stop = stop
	go term.watch(watchCtx, e.ttl/3)
	return term, nil
}

// Term is one won election. Lost closes when the leadership may be gone,
// and the holder must stop its work then.
type Term struct {
	Fence
	Since time.Time
	// Handover is the end of the previous term: its leader, its number and
	// whether it resigned.
	Handover Handover

	session *concurrency.Session
	client  *clientv3.Client
	keys    keys
	node    string
	log     *slog.Logger
	stop    context.CancelFunc

	// window is how long after the send of the last successful lease
	// renewal the term counts as live: stopAfter(ttl).
	window time.Duration
	// base is a monotonic reading that renewal stamps count from.
	base time.Time
	// lastRenewal is when the last successful renewal was sent, in
	// nanoseconds since base.
	lastRenewal atomic.Int64

	lost     chan struct{}
	lostOnce sync.Once
	mu       sync.Mutex
	reason   string
}

// Lost returns a channel closed when leadership is lost or may be: the
// session ended, no keepalive response came for stopAfter(ttl), or the
// election key was deleted.
func (t *Term) Lost() <-chan struct{} { return t.lost }

// Reason returns why Lost closed, or "" while it is open.
func (t *Term) Reason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reason
}

func (t *Term) lose(reason string) {
	t.lostOnce.Do(func() {
		t.mu.Lock()
		t.reason = reason
		t.mu.Unlock()
		t.log.Warn("cluster leadership lost", "term", t.Rev, "err", reason)
		close(t.lost)
	})
}

// renewed stamps a successful lease renewal that was sent at sent.
// Stamps only move forward, since renewals can finish out of order.
func (t *Term) renewed(sent time.Time) {
	stamp := int64(sent.Sub(t.base))
	for {
		last := t.lastRenewal.Load()
		if stamp <= last || t.lastRenewal.CompareAndSwap(last, stamp) {
			return
		}
	}
}

// CheckLive returns nil while the term is live: it was not lost, and its
// lease was last renewed by a request sent less than the safe window ago.
// It reads only the monotonic clock, so it costs no round trip, and it
// is right at once after the process was paused, before the watch loop
// gets to run. Listeners call it before every outbound action.
//
// The stamp is the time the renewal request was sent, which is before
// etcd renewed the lease, so the term can only look shorter than it is.
// NOTE: Go's monotonic clock is CLOCK_MONOTONIC on Linux, which stops
// while the whole machine is suspended. After a resume the term still
// looks live until the watch loop detects the failed renewal.
func (t *Term) CheckLive() error {
	select {
	case <-t.lost:
		return fmt.Errorf("%w: term %d was lost: %s", ErrNotLeader, t.Rev, t.Reason())
	default:
	}
	age := time.Since(t.base) - time.Duration(t.lastRenewal.Load())
	if age >= t.window {
		return fmt.Errorf("%w: the lease of term %d was last renewed %s ago, over the safe window of %s", ErrNotLeader, t.Rev, age.Round(time.Millisecond), t.window)
	}
	return nil
}

// checkInterval is how often the watch loop checks the term's liveness,
// and pauseGap how much later than due a check may run before the loop
// logs that the process was paused, as SIGSTOP or a stalled VM does.
const (
	checkInterval = 250 * time.Millisecond
	pauseGap      = time.Second
)

// watch closes lost on the first sign that the lease may expire before
// this node hears about it.
func (t *Term) watch(ctx context.Context, renewEvery time.Duration) {
	// Opening a watch and renewing wait for etcd, so they run apart from
	// the ticker, which must fire even when etcd cannot be reached.
	go t.watchKey(ctx)
	go t.renew(ctx, renewEvery)
	ticker := time.NewTicker(checkInterval)
	defer ticker.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.session.Done():
			t.lose("the etcd session ended")
			return
		case <-ticker.C:
			// The tick's own value is the time it was due, not the time
			// it fired, so it cannot show a pause.
			now := time.Now()
			paused := now.Sub(last) - checkInterval
			last = now
			err := t.CheckLive()
			if err != nil && paused > pauseGap {
				t.lose(fmt.Sprintf("the process was paused for %s, and no etcd lease keepalive response came for %s", paused.Round(time.Millisecond), t.window))
				return
			}
			if err != nil {
				t.lose(fmt.Sprintf("no etcd lease keepalive response for %s", t.window))
				return
			}
		}
	}
}

// renew renews the term's lease every interval and stamps each success
// with the time its request was sent. The session renews the same lease
// too, but its client stamps responses on arrival, and a response that
// waited in the socket while the process was paused would make a lost
// term look live.
func (t *Term) renew(ctx context.Context, interval time.Duration) {
	for {
		sent := time.Now()
		reqCtx, cancel := context.WithTimeout(ctx, interval)
		_, err := t.client.KeepAliveOnce(reqCtx, t.session.Lease())
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			t.lose("the etcd lease expired")
			return
		case err == nil:
			t.renewed(sent)
		}
		sleep := time.NewTimer(time.Until(sent.Add(interval)))
		select {
		case <-ctx.Done():
			sleep.Stop()
			return
		case <-sleep.C:
		}
	}
}

// watchKey closes lost when the election key is deleted, as a revoked
// lease or an operator's etcdctl del does.
func (t *Term) watchKey(ctx context.Context) {
	for resp := range t.client.Watch(ctx, t.Key, clientv3.WithRev(t.Rev+1)) {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				t.lose("the election key was deleted")
				return
			}
		}
	}
}

// Resign gives up leadership and closes the session, so that another
// node can win at once instead of after the lease TTL. It records the
// resign, which lets the next leader start listeners without waiting,
// so the caller must have stopped its listeners first.
func (t *Term) Resign(ctx context.Context) error {
	t.stop()
	err := resignTerm(ctx, t.client, t.keys, t.Fence, t.node, t.Since)
	closeSession(t.session)
	t.lose("resigned")
	if err != nil {
		return fmt.Errorf("resign leadership: %w", err)
	}
	return nil
}

// Close ends the term after it was lost, revoking the lease if etcd is
// still reachable.
func (t *Term) Close() {
	t.stop()
	closeSession(t.session)
	t.lose("closed")
}

// closeSession revokes the session's lease, waiting at most the TTL as
// concurrency.Session.Close does, and gives up quietly when etcd cannot
// be reached, since the lease then expires by itself.
func closeSession(session *concurrency.Session) {
	_ = session.Close()
}

// Leader returns the current leader, and false when there is none.
func (e *Elector) Leader(ctx context.Context) (Leader, bool, error) {
	resp, err := e.client.Get(ctx, e.keys.election()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, false, fmt.Errorf("read cluster leader: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, false, nil
	}
	kv := resp.Kvs[0]
	var leader Leader
	if err := json.Unmarshal(kv.Value, &leader); err != nil {
		return Leader{}, false, fmt.Errorf("decode cluster leader %s: %w", kv.Key, err)
	}
	leader.Term, leader.Lease = kv.CreateRevision, clientv3.LeaseID(kv.Lease)
	return leader, true, nil
}

// Observe sends the leader each time it changes, and the zero Leader
// while there is none, until ctx ends.
func (e *Elector) Observe(ctx context.Context) <-chan Leader {
	out := make(chan Leader, 1)
	go func() {
		defer close(out)
		events := e.client.Watch(ctx, e.keys.election()+"/", clientv3.WithPrefix())
		last := Leader{Term: -1}
		for {
			leader, _, err := e.Leader(ctx)
			if err == nil && leader != last {
				last = leader
				select {
				case out <- leader:
				case <-ctx.Done():
					return
				}
			}
			select {
			case _, ok := <-events:
				if !ok {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// Members returns the nodes whose sessions are alive, sorted by name.
func (e *Elector) Members(ctx context.Context) ([]Member, error) {
	resp, err := e.client.Get(ctx, e.keys.nodes(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read cluster members: %w", err)
	}
	members := make([]Member, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var m Member
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return nil, fmt.Errorf("decode cluster member %s: %w", kv.Key, err)
		}
		members = append(members, m)
	}
	return members, nil
}

// LeaseLeft returns how long the lease has before etcd expires it
// without another keepalive, and its granted TTL.
func (e *Elector) LeaseLeft(ctx context.Context, lease clientv3.LeaseID) (left, granted time.Duration, err error) {
	resp, err := e.client.TimeToLive(ctx, lease)
	if err != nil {
		return 0, 0, fmt.Errorf("read lease %x: %w", int64(lease), err)
	}
	if resp.TTL < 0 {
		return 0, 0, errors.New("lease expired")
	}
	return time.Duration(resp.TTL) * time.Second, time.Duration(resp.GrantedTTL) * time.Second, nil
}
