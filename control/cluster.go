package control

import "time"

// ClusterStatus is this node's view of the cluster it belongs to.
type ClusterStatus struct {
	Node string `json:"node"`
	// Role is "leader" or "standby".
	Role string `json:"role"`
	// Leader is the node that leads, or "" while none does.
	Leader      string    `json:"leader,omitempty"`
	LeaderSince time.Time `json:"leader_since,omitzero"`
	// Term is the etcd revision at which the leader won its election.
	Term int64 `json:"term,omitempty"`
	// LeaseTTL is the leader's lease TTL, and LeaseAge how long ago its
	// last keepalive reached etcd, at one-second resolution.
	LeaseTTL time.Duration `json:"lease_ttl"`
	LeaseAge time.Duration `json:"lease_age"`
	// ListenersWaitUntil is when a new leader starts its listeners after
	// a handover from a leader that did not resign, and zero otherwise.
	ListenersWaitUntil time.Time `json:"listeners_wait_until,omitzero"`
	// Members are the nodes with a live etcd session.
	Members []ClusterMember `json:"members"`
	// Error is the reason etcd could not be read, or "" when it was.
	Error string `json:"error,omitempty"`
}

// ClusterMember is one node with a live etcd session.
type ClusterMember struct {
	Node    string    `json:"node"`
	Started time.Time `json:"started"`
}
