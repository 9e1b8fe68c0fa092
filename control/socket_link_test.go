package control

import (
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"syscall"
	"testing"
)

func TestListenKeepsLinkTargetMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change a file's group")
	}
	group, err := user.LookupGroupId("65534")
	if err != nil {
		t.Skipf("no group 65534: %v", err)
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "control.sock")
	// A user who may write the socket's folder puts a link in place of
	// the socket right after the bind.
	socketBound = func(path string) {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
		if err := os.Symlink(target, path); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { socketBound = func(string) {} })

	srv, err := Listen(socket, group.Name, stubHandler{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		srv.Close()
	}
	info, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("link target mode = %v, want 0600", info.Mode().Perm())
	}
	if gid := info.Sys().(*syscall.Stat_t).Gid; gid != 0 {
		t.Errorf("link target group = %d, want 0", gid)
	}
}

func TestListenSetsGroupMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change a file's group")
	}
	group, err := user.LookupGroupId("65534")
	if err != nil {
		t.Skipf("no group 65534: %v", err)
	}
	socket := filepath.Join(t.TempDir(), "control.sock")
	srv, err := Listen(socket, group.Name, stubHandler{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	info, err := os.Lstat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, want 0660", info.Mode().Perm())
	}
	if gid := info.Sys().(*syscall.Stat_t).Gid; gid != 65534 {
		t.Errorf("socket group = %d, want 65534", gid)
	}
}
