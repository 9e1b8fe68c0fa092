package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/agent-runner/agent-runner/cluster/etcdtest"
	"github.com/agent-runner/agent-runner/state"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	code := m.Run()
	shared.release()
	os.Exit(code)
}

// shared is one etcd member that the store tests share, each under its
// own prefix, because starting etcd costs about a second.
var shared sharedMember

type sharedMember struct {
	once    sync.Once
	cluster *etcdtest.Cluster
	client  *clientv3.Client
	next    atomic.Int64

	// cleanups are the member's own cleanups, which TestMain runs once
	// every test is done. Its data folder alone contains about 120 MB
	// of preallocated write-ahead log.
	mu       sync.Mutex
	cleanups []func()
}

func (s *sharedMember) addCleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// release runs the cleanups, the last registered first, as testing
// does for a test's own.
func (s *sharedMember) release() {
	s.mu.Lock()
	cleanups := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
}

// sharedClient starts the shared member on first use. It lives until
// the process ends, so it is started from the first test with a
// t-independent lifetime.
func sharedClient(t testing.TB) *clientv3.Client {
	t.Helper()
	shared.once.Do(func() {
		shared.cluster = etcdtest.Start(processTB{t}, 1)
		shared.client = shared.cluster.Client()
	})
	if shared.client == nil {
		t.Fatal("the shared etcd member failed to start")
	}
	return shared.client
}

// processTB is a testing.TB whose cleanups and temporary folders outlive
// the test that created them, for the member shared by all tests.
// TestMain releases them.
type processTB struct{ testing.TB }

func (p processTB) TempDir() string {
	dir, err := os.MkdirTemp("", "agent-runner-etcd-")
	if err != nil {
		p.Fatalf("create temporary folder: %v", err)
	}
	shared.addCleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func (p processTB) Cleanup(f func()) { shared.addCleanup(f) }

// newPrefix returns a prefix no other test uses.
func newPrefix() string {
	return fmt.Sprintf("/test-%d/", shared.next.Add(1))
}

// leaderStore returns an etcd store with a fence from a won election.
func leaderStore(t testing.TB, history int) *Etcd {
	t.Helper()
	client := sharedClient(t)
	prefix := newPrefix()
	term := campaign(t, NewElector(client, prefix, "node-a", 5*time.Second, slog.Default()))
	store := NewEtcd(client, prefix, history)
	store.SetFence(term.Fence)
	return store
}

func campaign(t testing.TB, e *Elector) *Term {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	term, err := e.Campaign(ctx)
	if err != nil {
		t.Fatalf("campaign of %s: %v", e.Node(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = term.Resign(ctx)
	})
	return term
}

// stores returns the two implementations of Store, so that each
// contract test runs against both.
func stores() map[string]func(t testing.TB, history int) Store {
	return map[string]func(t testing.TB, history int) Store{
		"bbolt": func(t testing.TB, history int) Store {
			s, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{HistoryLimit: history})
			if err != nil {
				t.Fatalf("open bbolt store: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return Local{s}
		},
		"etcd": func(t testing.TB, history int) Store { return leaderStore(t, history) },
	}
}
