package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestClusterAbsentIsNil(t *testing.T) {
	config, err := Load(writeConfig(t, "[jobs.a]\ncommand = [\"true\"]\nevery = \"1m\"\n"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if config.Cluster != nil {
		t.Errorf("got cluster %+v, want nil without [cluster]", config.Cluster)
	}
}

func TestClusterDefaults(t *testing.T) {
	config, err := Load(writeConfig(t, "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	c := config.Cluster
	host, err := os.Hostname()
	if err != nil {
		t.Fatalf("hostname: %v", err)
	}
	if c.Node != host {
		t.Errorf("node: got %q, want the host name %q", c.Node, host)
	}
	if c.LeaseTTL != 10*time.Second {
		t.Errorf("lease_ttl: got %s, want 10s", c.LeaseTTL)
	}
	if c.ListenerHandover != 90*time.Second {
		t.Errorf("listener_handover: got %s, want 90s", c.ListenerHandover)
	}
	if c.Prefix != "/agent-runner/" {
		t.Errorf("prefix: got %q, want /agent-runner/", c.Prefix)
	}
	if c.Password != nil || c.Username != "" {
		t.Errorf("auth: got user %q and a password, want neither", c.Username)
	}
}

func TestClusterAllKeys(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"ca.pem", "client.pem", "client-key.pem", "etcd-password"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("s3cret\n"), 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	path := filepath.Join(dir, "config.toml")
	text := `[cluster]
etcd = ["https://10.0.0.1:2379", "https://10.0.0.2:2379/"]
node = "web-1"
lease_ttl = "4s"
listener_handover = "0s"
prefix = "/prod/agent-runner/"
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client-key.pem"
username = "agent-runner"
password = { file = "etcd-password" }
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	config, err := Load(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	c := config.Cluster
	if want := []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379/"}; !slices.Equal(c.Endpoints, want) {
		t.Errorf("etcd: got %q, want %q", c.Endpoints, want)
	}
	if c.Node != "web-1" || c.LeaseTTL != 4*time.Second || c.Prefix != "/prod/agent-runner/" {
		t.Errorf("got node %q, lease_ttl %s, prefix %q", c.Node, c.LeaseTTL, c.Prefix)
	}
	if c.ListenerHandover != 0 {
		t.Errorf("listener_handover: got %s, want 0s", c.ListenerHandover)
	}
	if c.CAFile != filepath.Join(dir, "ca.pem") || c.KeyFile != filepath.Join(dir, "client-key.pem") {
		t.Errorf("got ca_file %q and key_file %q, want paths in %s", c.CAFile, c.KeyFile, dir)
	}
	if c.Password == nil || c.Password.Reveal() != "s3cret" {
		t.Fatalf("password: got %v, want the file's content without its newline", c.Password)
	}
	if c.Username != "agent-runner" {
		t.Errorf("username: got %q", c.Username)
	}
}
