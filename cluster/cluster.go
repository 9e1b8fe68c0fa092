// Package cluster lets several agent-runner nodes share one etcd
// cluster: they elect one leader, which alone runs the scheduler and the
// listeners, and keep job state and run history in etcd, where every
// write is fenced on the writer's leadership.
package cluster

import (
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/agent-runner/agent-runner/config"
)

// dialTimeout bounds the first connection to etcd.
const dialTimeout = 5 * time.Second

// ErrNotLeader means a write was rejected because this node does not hold
// the leadership the write was fenced on, or holds none.
var ErrNotLeader = errors.New("this node is not the cluster leader")

// Connect opens an etcd client for the [cluster] table. The client logs
// nothing itself, since its errors reach the caller.
func Connect(cfg *config.Cluster) (*clientv3.Client, error) {
	clientCfg := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
		Username:    cfg.Username,
	}
	if cfg.Password != nil {
		clientCfg.Password = cfg.Password.Reveal()
	}
	if cfg.CAFile != "" || cfg.CertFile != "" {
		info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
		tlsCfg, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("load etcd TLS files: %w", err)
		}
		clientCfg.TLS = tlsCfg
	}
	client, err := clientv3.New(clientCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	return client, nil
}

// keys lays out everything agent-runner writes under one prefix.
type keys struct{ prefix string }

func (k keys) election() string          { return k.prefix + "leader" }
func (k keys) term() string              { return k.prefix + "term" }
func (k keys) node(name string) string   { return k.prefix + "nodes/" + name }
func (k keys) nodes() string             { return k.prefix + "nodes/" }
func (k keys) sequence() string          { return k.prefix + "run-sequence" }
func (k keys) job(name string) string    { return k.prefix + "jobs/" + name }
func (k keys) jobs() string              { return k.prefix + "jobs/" }
func (k keys) runs(job string) string    { return k.prefix + "runs/" + job + "/" }
func (k keys) running(job string) string { return k.prefix + "running/" + job + "/" }
func (k keys) allRunning() string        { return k.prefix + "running/" }
func (k keys) listener(name string) string {
	return k.prefix + "listeners/" + name + "/"
}

// runKey formats a run ID with leading zeros, so that etcd's byte order
// of keys is the numeric order of IDs.
func runKey(seq uint64) string { return fmt.Sprintf("%020d", seq) }
