// Package etcdtest starts real etcd members inside a test process, on
// 127.0.0.1 ports that were free, with data in the test's temporary
// folder. Only tests import it, so the etcd server stays out of the
// agent-runner binary.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// startTimeout bounds how long members take to elect an etcd leader.
const startTimeout = 60 * time.Second

// Cluster is a set of etcd members that form one cluster.
type Cluster struct {
	Members []*Member
	t       testing.TB
}

// Member is one embedded etcd server.
type Member struct {
	Name      string
	ClientURL string
	cfg       *embed.Config
	mu        sync.Mutex
	etcd      *embed.Etcd
}

// Start starts n members and waits until they elected a leader. The
// members stop when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	return start(t, n, nil)
}

// StartTLS is Start with client URLs that serve TLS with certs and
// require a client certificate signed by their CA.
func StartTLS(t testing.TB, n int, certs Certs) *Cluster {
	t.Helper()
	return start(t, n, &certs)
}

// bindAttempts is how often start picks new ports when a member could
// not bind one: a port found free may be taken by another test process
// before the member listens on it.
const bindAttempts = 3

func start(t testing.TB, n int, certs *Certs) *Cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := tryStart(t, n, certs)
		if err == nil {
			t.Cleanup(c.stopAll)
			return c
		}
		if attempt == bindAttempts || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("start etcd: %v", err)
		}
		t.Logf("start etcd: %v; trying other ports", err)
	}
}

// tryStart starts n members on new ports and stops them all again when
// one fails.
func tryStart(t testing.TB, n int, certs *Certs) (*Cluster, error) {
	t.Helper()
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		peer, client := localURL(t), localURL(t)
		if certs != nil {
			client.Scheme = "https"
		}
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = t.TempDir()
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenMetricsUrls = nil
		cfg.InitialClusterToken = "agent-runner-test"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// etcd hashes and checks passwords with bcrypt. At the default
		// cost of 10, one login under the race detector on a loaded 2-core
		// machine outlasted the 5 s dial timeout of cluster.Connect.
		cfg.BcryptCost = uint(bcrypt.MinCost)
		if certs != nil {
			cfg.ClientTLSInfo = transport.TLSInfo{
				CertFile: certs.ServerCert, KeyFile: certs.ServerKey,
				TrustedCAFile: certs.CA, ClientCertAuth: true,
			}
		}
		initial = append(initial, name+"="+peer.String())
		c.Members = append(c.Members, &Member{Name: name, ClientURL: client.String(), cfg: cfg})
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, m := range c.Members {
		wg.Go(func() { errs[i] = m.start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.stopAll()
		return nil, err
	}
	return c, nil
}

func (m *Member) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("start member %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(startTimeout):
		e.Close()
		return fmt.Errorf("member %s not ready after %s", m.Name, startTimeout)
	}
	m.mu.Lock()
	m.etcd = e
	m.mu.Unlock()
	return nil
}

// Stop stops member i, as a crash of its machine would.
func (c *Cluster) Stop(i int) {
	m := c.Members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
	}
}

func (c *Cluster) stopAll() {
	for i := range c.Members {
		c.Stop(i)
	}
}

// Endpoints returns the client URLs of all members.
func (c *Cluster) Endpoints() []string {
	urls := make([]string, len(c.Members))
	for i, m := range c.Members {
		urls[i] = m.ClientURL
	}
	return urls
}

// Client returns a client of all members, closed when the test ends.
func (c *Cluster) Client(endpoints ...string) *clientv3.Client {
	c.t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	client, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatalf("connect to etcd: %v", err)
	}
	c.t.Cleanup(func() { _ = client.Close() })
	return client
}

// localURL returns an http URL on 127.0.0.1 with a port that was free a
// moment ago.
func localURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return url.URL{Scheme: "http", Host: addr}
}
