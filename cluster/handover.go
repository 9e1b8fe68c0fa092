package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// termRecord is the last term won under a prefix, kept without a lease so
// that it outlives its leader. The winner of each term replaces it, and a
// leader that resigns marks it resigned in the same transaction that
// deletes its election key.
type termRecord struct {
	Node     string    `json:"node"`
	Term     int64     `json:"term"`
	Since    time.Time `json:"since"`
	Resigned time.Time `json:"resigned,omitzero"`
}

// Handover describes how the term before a won one ended.
type Handover struct {
	// Previous is the node that led the term before, and "" when etcd
	// records no earlier term under the prefix.
	Previous     string
	PreviousTerm int64
	// Resigned is true when the previous leader resigned, and so stopped
	// its listeners before its election key went away.
	Resigned bool
}

// Clean reports whether the previous leader's listeners are known to be
// stopped: it resigned, no term came before, or the previous term is
// one that this process ran and stopped itself, as ranTerm reports.
func (h Handover) Clean(ranTerm func(term int64) bool) bool {
	return h.Previous == "" || h.Resigned || (ranTerm != nil && ranTerm(h.PreviousTerm))
}

// ListenerDelay returns how long the winner of a term waits before it
// starts listeners: 0 after a clean handover, and wait otherwise, since a
// previous leader that is frozen rather than dead may still hold its
// platform connections open.
func (h Handover) ListenerDelay(wait time.Duration, ranTerm func(term int64) bool) time.Duration {
	if h.Clean(ranTerm) {
		return 0
	}
	return wait
}

// recordTerm reads the previous term's record and replaces it with the
// new term's, fenced on the new term's election key.
func recordTerm(ctx context.Context, client *clientv3.Client, k keys, fence Fence, node string, since time.Time) (Handover, error) {
	value, err := json.Marshal(termRecord{Node: node, Term: fence.Rev, Since: since})
	if err != nil {
		return Handover{}, fmt.Errorf("encode term record: %w", err)
	}
	resp, err := client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Rev)).
		Then(clientv3.OpGet(k.term()), clientv3.OpPut(k.term(), string(value))).
		Commit()
	if err != nil {
		return Handover{}, fmt.Errorf("record term %d: %w", fence.Rev, err)
	}
	if !resp.Succeeded {
		return Handover{}, fmt.Errorf("record term %d: %w", fence.Rev, ErrNotLeader)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return Handover{}, nil
	}
	var previous termRecord
	if err := json.Unmarshal(kvs[0].Value, &previous); err != nil {
		return Handover{}, fmt.Errorf("decode term record %s: %w", kvs[0].Key, err)
	}
	return Handover{Previous: previous.Node, PreviousTerm: previous.Term, Resigned: !previous.Resigned.IsZero()}, nil
}

// resignTerm deletes the term's election key and marks the term record
// resigned in one transaction, fenced on the key, so that the record
// shows resigned only when this resign deleted the key.
func resignTerm(ctx context.Context, client *clientv3.Client, k keys, fence Fence, node string, since time.Time) error {
	value, err := json.Marshal(termRecord{Node: node, Term: fence.Rev, Since: since, Resigned: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode term record: %w", err)
	}
	resp, err := client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Rev)).
		Then(clientv3.OpDelete(fence.Key), clientv3.OpPut(k.term(), string(value))).
		Commit()
	if err != nil {
		return fmt.Errorf("resign term %d: %w", fence.Rev, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("resign term %d: %w", fence.Rev, ErrNotLeader)
	}
	return nil
}
