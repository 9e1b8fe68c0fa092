package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/agent-runner/agent-runner/cluster"
	"github.com/agent-runner/agent-runner/config"
)

// doctorEtcdTimeout bounds the etcd requests of doctor.
const doctorEtcdTimeout = 5 * time.Second

// checkCluster reports whether etcd responds with the [cluster] settings,
// and which node leads.
func (d *doctor) checkCluster(cfg *config.Config) {
	if cfg.Cluster == nil {
		return
	}
	client, err := cluster.Connect(cfg.Cluster)
	if err != nil {
		d.problem("%v: check the etcd URLs and TLS files in [cluster]", err)
		return
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), doctorEtcdTimeout)
	defer cancel()
	elector := cluster.NewElector(client, cfg.Cluster.Prefix, cfg.Cluster.Node, cfg.Cluster.LeaseTTL, slog.New(slog.DiscardHandler))
	leader, ok, err := elector.Leader(ctx)
	switch {
	case err != nil:
		d.problem("etcd %v does not respond: %v: check that etcd runs and the URLs, TLS files, username and password in [cluster]", cfg.Cluster.Endpoints, err)
	case !ok:
		d.note("etcd %v responds, but no node leads under %s: start agent-runner on a node", cfg.Cluster.Endpoints, cfg.Cluster.Prefix)
	case leader.Node == cfg.Cluster.Node:
		d.ok("etcd %v responds; this node (%s) leads, term %d", cfg.Cluster.Endpoints, leader.Node, leader.Term)
	default:
		d.ok("etcd %v responds; node %s leads, term %d, and this node (%s) stands by", cfg.Cluster.Endpoints, leader.Node, leader.Term, cfg.Cluster.Node)
	}
}
