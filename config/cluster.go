package config

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Cluster holds the [cluster] table: the etcd cluster that elects one
// leader among several agent-runner nodes and keeps their shared state.
type Cluster struct {
	// Endpoints are the etcd client URLs, such as http://127.0.0.1:2379.
	Endpoints []string
	// Node is the name of this agent-runner in the election and in
	// status. It defaults to the host name.
	Node string
	// LeaseTTL is the TTL of the node's etcd lease. A leader that cannot
	// renew it stops its work after half of it, and another node takes
	// over once etcd expires it.
	LeaseTTL time.Duration
	// ListenerHandover is how long a new leader waits before it starts
	// listeners when the previous leader did not resign, since that
	// leader may be frozen with its platform connections still open.
	ListenerHandover time.Duration
	// Prefix starts every etcd key agent-runner writes, so several
	// deployments can share one etcd cluster.
	Prefix string
	// CAFile, CertFile and KeyFile are absolute paths for TLS, or "".
	CAFile   string
	CertFile string
	KeyFile  string
	// Username and Password authenticate to etcd. Both or neither are set.
	Username string
	Password *Secret
}

// Defaults and limits of [cluster].
const (
	defaultLeaseTTL = 10 * time.Second
	// minLeaseTTL is the shortest TTL that leaves a leader a second to
	// stop its work after a missed keepalive response, before etcd can
	// expire its lease.
	minLeaseTTL = 3 * time.Second
	maxLeaseTTL = time.Hour
	// defaultListenerHandover starts after the lease expired and is more
	// than two of Discord's 41.25 s gateway heartbeat intervals, but
	// shorter than Twitch's five-minute PING interval. The README's
	// cluster section lists what it covers for each platform.
	defaultListenerHandover = 90 * time.Second
	maxListenerHandover     = time.Hour
	defaultPrefix           = "/agent-runner/"
	clusterEndpoint         = `["http://127.0.0.1:2379"]`
)

var clusterKeys = []string{
	"ca_file", "cert_file", "etcd", "key_file", "lease_ttl", "listener_handover", "node", "password", "prefix", "username",
}

// decodeCluster returns the [cluster] table, or nil when the file has
// none.
func (l *loader) decodeCluster(root table) *Cluster {
	t, ok := l.subTable(root, "cluster", `{ etcd = ["http://127.0.0.1:2379"] }`)
	if !ok {
		return nil
	}
	l.checkKeys(t, "in [cluster]", clusterKeys, nil)
	cluster := &Cluster{LeaseTTL: defaultLeaseTTL, ListenerHandover: defaultListenerHandover, Prefix: defaultPrefix}
	cluster.Endpoints = l.clusterEndpoints(t)
	cluster.Node = l.clusterNode(t)
	if d, ok := l.durationValue(t, "lease_ttl", minLeaseTTL); ok {
		cluster.LeaseTTL = l.leaseTTL(t.key("lease_ttl"), d)
	}
	if d, ok := l.durationValue(t, "listener_handover", 0); ok {
		cluster.ListenerHandover = l.listenerHandover(t.key("listener_handover"), d)
	}
	if prefix, ok := l.nonEmptyString(t, "prefix", `"/agent-runner/"`); ok {
		cluster.Prefix = l.clusterPrefix(t.key("prefix"), prefix)
	}
	l.decodeClusterTLS(t, cluster)
	l.decodeClusterAuth(t, cluster)
	return cluster
}

// clusterEndpoints returns the etcd client URLs, which must be http or
// https with a host and a port and nothing after it.
func (l *loader) clusterEndpoints(t table) []string {
	if _, ok := t.values["etcd"]; !ok {
		l.report(t.path, "missing etcd: list the etcd client URLs, such as etcd = %s", clusterEndpoint)
		return nil
	}
	endpoints, ok := l.stringList(t, "etcd", clusterEndpoint)
	if !ok {
		return nil
	}
	if len(endpoints) == 0 {
		l.report(t.key("etcd"), "must list at least one etcd client URL, such as %s", clusterEndpoint)
	}
	for i, endpoint := range endpoints {
		if err := checkEndpoint(endpoint); err != nil {
			l.reportEntry(t.key("etcd"), i, "invalid etcd URL %q: %v", endpoint, err)
		}
	}
	return endpoints
}

func checkEndpoint(endpoint string) error {
	parsed, err := url.Parse(endpoint)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
		return errors.New(`write an http or https URL such as "http://127.0.0.1:2379"`)
	}
	if parsed.Path != "" && parsed.Path != "/" || parsed.RawQuery != "" || parsed.Fragment != "" || parsed.User != nil {
		return errors.New("write only the scheme, host and port, because the etcd client adds the paths itself")
	}
	_, port, err := net.SplitHostPort(parsed.Host)
	if err != nil {
		return errors.New("add the port, such as :2379")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("use a port from 1 to 65535")
	}
	return nil
}

// clusterNode returns the node name, by default the host name. The name
// is a value in etcd, not a key, but "/" would make status confusing
// next to key paths, so it is rejected with spaces and control
// characters.
func (l *loader) clusterNode(t table) string {
	node, ok := l.nonEmptyString(t, "node", `"web-1"`)
	if !ok {
		host, err := os.Hostname()
		if err != nil || host == "" {
			l.report(t.path, "the host name is unknown (%v): set node to a name for this agent-runner, such as node = \"web-1\"", err)
			return ""
		}
		return host
	}
	if strings.ContainsFunc(node, func(r rune) bool { return r == '/' || r <= ' ' || r == 0x7f }) {
		l.report(t.key("node"), `invalid node name %q: use letters, digits, ".", "-" and "_", without "/" or spaces`, node)
	}
	return node
}

// leaseTTL checks that d is whole seconds within range, since etcd grants
// leases in seconds.
func (l *loader) leaseTTL(path keyPath, d time.Duration) time.Duration {
	switch {
	case d > maxLeaseTTL:
		l.report(path, "lease_ttl %s is longer than the maximum of %s: a dead leader would block the jobs that long, so pick something like \"10s\"", d, maxLeaseTTL)
	case d%time.Second != 0:
		l.report(path, "lease_ttl %s is not a whole number of seconds, which etcd leases need: write something like \"10s\"", d)
	default:
		return d
	}
	return defaultLeaseTTL
}

func (l *loader) listenerHandover(path keyPath, d time.Duration) time.Duration {
	if d > maxListenerHandover {
		l.report(path, "listener_handover %s is longer than the maximum of %s: listeners would stay down that long after a failover, so pick something like \"90s\"", d, maxListenerHandover)
		return defaultListenerHandover
	}
	return d
}

func (l *loader) clusterPrefix(path keyPath, prefix string) string {
	if !strings.HasPrefix(prefix, "/") || !strings.HasSuffix(prefix, "/") || len(prefix) < 2 {
		l.report(path, `invalid prefix %q: start and end it with "/", such as "/agent-runner/", so that it cannot overlap another prefix`, prefix)
		return defaultPrefix
	}
	return prefix
}

// decodeClusterTLS sets the TLS files, which must exist. A client
// certificate needs its key.
func (l *loader) decodeClusterTLS(t table, cluster *Cluster) {
	files := []struct {
		name, example string
		target        *string
	}{
		{"ca_file", `"/etc/etcd/ca.pem"`, &cluster.CAFile},
		{"cert_file", `"/etc/etcd/client.pem"`, &cluster.CertFile},
		{"key_file", `"/etc/etcd/client-key.pem"`, &cluster.KeyFile},
	}
	for _, file := range files {
		path, ok := l.nonEmptyString(t, file.name, file.example)
		if !ok {
			continue
		}
		path = l.resolve(path)
		if info, err := os.Stat(path); err != nil || info.IsDir() {
			l.report(t.key(file.name), "%s %s is not a readable file: fix the path or create the file", file.name, path)
			continue
		}
		*file.target = path
	}
	if (cluster.CertFile == "") != (cluster.KeyFile == "") {
		if cluster.CertFile == "" {
			l.reportPair(t, "key_file", "cert_file")
		} else {
			l.reportPair(t, "cert_file", "key_file")
		}
	}
	if cluster.CAFile != "" || cluster.CertFile != "" {
		for i, endpoint := range cluster.Endpoints {
			if strings.HasPrefix(endpoint, "http://") {
				l.reportEntry(t.key("etcd"), i, "etcd URL %q uses http, but TLS files are set: write https:// or remove the TLS files", endpoint)
			}
		}
	}
}

// reportPair reports the key set as lacking its partner missing. When
// missing is written but failed its own check, that problem is reported
// already, so nothing is added.
func (l *loader) reportPair(t table, set, missing string) {
	if _, written := t.values[missing]; written {
		return
	}
	l.report(t.key(set), "%s is set but %s is not: set both, or neither", set, missing)
}

// decodeClusterAuth sets the etcd user and reads its password.
func (l *loader) decodeClusterAuth(t table, cluster *Cluster) {
	if user, ok := l.nonEmptyString(t, "username", `"agent-runner"`); ok {
		cluster.Username = user
	}
	ref, ok := l.decodeSecretKey(t, "password", `{ file = "secrets/etcd-password" }`)
	if ok {
		secret, err := ref.resolve()
		if err != nil {
			l.report(t.key("password"), "%v", err)
		} else {
			cluster.Password = &secret
		}
	}
	_, hasUser := t.values["username"]
	_, hasPassword := t.values["password"]
	switch {
	case hasUser && !hasPassword:
		l.reportPair(t, "username", "password")
	case hasPassword && !hasUser:
		l.reportPair(t, "password", "username")
	}
}
