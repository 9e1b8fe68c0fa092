package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
	return e.startTerm(session, election, since)
}

// startTerm returns the term won by election and starts watching it.
func (e *Elector) startTerm(session *concurrency.Session, election *concurrency.Election, since time.Time) (*Term, error) {
	term := &Term{
		Fence:    Fence{Key: election.Key(), Rev: election.Rev()},
		Since:    since,
		session:  session,
		election: election,
		lost:     make(chan struct{}),
		log:      e.log,
	}
	watchCtx, stop := context.WithCancel(context.Background())
	term.stop = stop
	keepalive, err := e.client.KeepAlive(watchCtx, session.Lease())
	if err != nil {
		stop()
		return nil, fmt.Errorf("watch lease keepalives: %w", err)
	}
	go term.watch(watchCtx, e.client, keepalive, stopAfter(e.ttl))
	return term, nil
}

// Term is one won election. Lost closes when the leadership may be gone,
// and the holder must stop its work then.
type Term struct {
	Fence
	Since time.Time

	session  *concurrency.Session
	election *concurrency.Election
	log      *slog.Logger
	stop     context.CancelFunc

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

// watch closes lost on the first sign that the lease may expire before
// this node hears about it.
func (t *Term) watch(ctx context.Context, client *clientv3.Client, keepalive <-chan *clientv3.LeaseKeepAliveResponse, limit time.Duration) {
	// Opening a watch waits for etcd, so it runs apart from the timer,
	// which must fire even when etcd cannot be reached at all.
	go t.watchKey(ctx, client)
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.session.Done():
			t.lose("the etcd session ended")
			return
		case _, ok := <-keepalive:
			if !ok {
				t.lose("the etcd lease keepalive stopped")
				return
			}
			timer.Reset(limit)
		case <-timer.C:
			t.lose(fmt.Sprintf("no etcd lease keepalive response for %s", limit))
			return
		}
	}
}

// watchKey closes lost when the election key is deleted, as a revoked
// lease or an operator's etcdctl del does.
func (t *Term) watchKey(ctx context.Context, client *clientv3.Client) {
	for resp := range client.Watch(ctx, t.Key, clientv3.WithRev(t.Rev+1)) {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				t.lose("the election key was deleted")
				return
			}
		}
	}
}

// Resign gives up leadership and closes the session, so that another
// node can win at once instead of after the lease TTL.
func (t *Term) Resign(ctx context.Context) error {
	t.stop()
	err := t.election.Resign(ctx)
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
