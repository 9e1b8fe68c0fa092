package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/agent-runner/agent-runner/cluster/etcdtest"
	"github.com/agent-runner/agent-runner/config"
)

// TestConnectWithPassword turns on etcd's authentication and checks that
// Connect logs in with the [cluster] user and that a wrong password is
// rejected.
func TestConnectWithPassword(t *testing.T) {
	c := etcdtest.Start(t, 1)
	admin := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.UserAdd(ctx, "agent-runner", "s3cret"); return err },
		func() error { _, err := admin.RoleAdd(ctx, "agent-runner"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "agent-runner", "/ar/", "/ar0", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserGrantRole(ctx, "agent-runner", "agent-runner"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("set up etcd authentication: %v", err)
		}
	}

	password := config.NewSecret("s3cret", "inline")
	cfg := &config.Cluster{Endpoints: c.Endpoints(), Username: "agent-runner", Password: &password, Prefix: "/ar/"}
	client, err := Connect(cfg)
	if err != nil {
		t.Fatalf("connect with a password: %v", err)
	}
	defer client.Close()
	store := NewEtcd(client, "/ar/", 10)
	if _, err := store.Jobs(); err != nil {
		t.Errorf("read jobs as agent-runner: %v", err)
	}

	wrong := config.NewSecret("wrong", "inline")
	cfg.Password = &wrong
	bad, err := Connect(cfg)
	if err == nil {
		defer bad.Close()
		_, err = NewEtcd(bad, "/ar/", 10).Jobs()
	}
	if !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Errorf("wrong password: got %v, want %v", err, rpctypes.ErrAuthFailed)
	}
}

// TestConnectWithTLS checks that Connect uses the CA and the client
// certificate of [cluster], and that etcd rejects a client without the
// certificate.
func TestConnectWithTLS(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	c := etcdtest.StartTLS(t, 1, certs)
	cfg := &config.Cluster{
		Endpoints: c.Endpoints(), Prefix: "/ar/",
		CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey,
	}
	client, err := Connect(cfg)
	if err != nil {
		t.Fatalf("connect with TLS: %v", err)
	}
	defer client.Close()
	if _, err := NewEtcd(client, "/ar/", 10).Jobs(); err != nil {
		t.Errorf("read jobs over TLS: %v", err)
	}

	cfg.CertFile, cfg.KeyFile = "", ""
	anonymous, err := Connect(cfg)
	if err == nil {
		defer anonymous.Close()
		_, err = NewEtcd(anonymous, "/ar/", 10).Jobs()
	}
	if err == nil {
		t.Error("read jobs without a client certificate: got no error")
	}
}
