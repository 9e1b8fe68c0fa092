package cluster

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fence identifies one term of leadership: the election key this node
// created and the revision that created it. A write compares the key's
// create revision with Rev, so it fails once the key is gone or belongs
// to a later campaign.
type Fence struct {
	Key string
	Rev int64
}

// maxConflicts bounds how often a write is retried when a key it read
// changed before it committed, which only writes of the same node race
// for, since other nodes are fenced out.
const maxConflicts = 20

// errConflict means a key read by a transaction changed before commit.
var errConflict = errors.New("a key changed during the transaction")

// txn is one optimistic etcd transaction: reads at one revision, writes
// that commit only if the fence holds and no key read has changed since.
type txn struct {
	ctx    context.Context
	kv     clientv3.KV
	rev    int64
	checks []clientv3.Cmp
	// writes holds one operation per key, because etcd rejects a
	// transaction that names a key twice. A later write replaces an
	// earlier one, as it would if they ran in sequence.
	writes map[string]clientv3.Op
	order  []string
}

// get reads key at the transaction's revision and makes the commit depend
// on it not changing.
func (t *txn) get(key string) ([]byte, bool, error) {
	resp, err := t.kv.Get(t.ctx, key, t.revision()...)
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	t.pin(resp.Header.Revision)
	if len(resp.Kvs) == 0 {
		t.checks = append(t.checks, clientv3.Compare(clientv3.ModRevision(key), "=", 0))
		return nil, false, nil
	}
	kv := resp.Kvs[0]
	t.checks = append(t.checks, clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision))
	return kv.Value, true, nil
}

// list reads the keys under prefix in key order at the transaction's
// revision, without making the commit depend on them.
func (t *txn) list(prefix string, opts ...clientv3.OpOption) ([]string, error) {
	opts = append(opts, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	resp, err := t.kv.Get(t.ctx, prefix, append(opts, t.revision()...)...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	t.pin(resp.Header.Revision)
	names := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		names[i] = string(kv.Key)
	}
	return names, nil
}

func (t *txn) revision() []clientv3.OpOption {
	if t.rev == 0 {
		return nil
	}
	return []clientv3.OpOption{clientv3.WithRev(t.rev)}
}

func (t *txn) pin(rev int64) {
	if t.rev == 0 {
		t.rev = rev
	}
}

func (t *txn) put(key string, value []byte) {
	t.write(key, clientv3.OpPut(key, string(value)))
}

func (t *txn) delete(key string, opts ...clientv3.OpOption) {
	t.write(key, clientv3.OpDelete(key, opts...))
}

func (t *txn) write(key string, op clientv3.Op) {
	if t.writes == nil {
		t.writes = make(map[string]clientv3.Op)
	}
	if _, ok := t.writes[key]; !ok {
		t.order = append(t.order, key)
	}
	t.writes[key] = op
}

// commit writes the transaction if fence still holds and no key read has
// changed. It returns ErrNotLeader when the fence failed, and errConflict
// when only a read key changed.
func (t *txn) commit(fence Fence) error {
	if len(t.order) == 0 {
		return nil
	}
	ops := make([]clientv3.Op, len(t.order))
	for i, key := range t.order {
		ops[i] = t.writes[key]
	}
	checks := append([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Rev)}, t.checks...)
	resp, err := t.kv.Txn(t.ctx).If(checks...).Then(ops...).Else(clientv3.OpGet(fence.Key)).Commit()
	if err != nil {
		return fmt.Errorf("commit to etcd: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	held := resp.Responses[0].GetResponseRange().Kvs
	if len(held) == 0 || held[0].CreateRevision != fence.Rev {
		return fmt.Errorf("write fenced on %s at revision %d: %w", fence.Key, fence.Rev, ErrNotLeader)
	}
	return errConflict
}
