package process

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestEnvFileReadAsJobUser(t *testing.T) {
	requireRoot(t)
	nobody := nobody(t)
	// t.TempDir makes a folder and one inside it, both 0700.
	dir := t.TempDir()
	for _, folder := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(folder, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	private := filepath.Join(dir, "root-only.env")
	if err := os.WriteFile(private, []byte("ROOT_SECRET=root-only-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	public := filepath.Join(dir, "public.env")
	if err := os.WriteFile(public, []byte("PUBLIC=value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The job's user owns this folder and put a link to the root-only
	// file in place of its env file.
	own := filepath.Join(dir, "nobody")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(own, int(nobody.UID), int(nobody.GID)); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(own, "job.env")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}

	env, _, err := Environment(Settings{EnvFile: link, Identity: nobody}, nil)
	if err == nil {
		t.Fatalf("root-only file read through a link of uid %d: %q", nobody.UID, env)
	}
	if !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "may change "+own) {
		t.Errorf("error = %v, want permission denied naming %s", err, own)
	}

	env, _, err = Environment(Settings{EnvFile: public, Identity: nobody}, nil)
	if err != nil {
		t.Fatalf("env file readable by the job's user: %v", err)
	}
	if !containsEntry(env, "PUBLIC=value") {
		t.Errorf("env = %q, want PUBLIC=value", env)
	}

	// A root-only file in folders the user may not change is read as
	// root, as systemd reads EnvironmentFile=.
	env, _, err = Environment(Settings{EnvFile: private, Identity: nobody}, nil)
	if err != nil {
		t.Fatalf("root-only env file in a root-owned folder: %v", err)
	}
	if !containsEntry(env, "ROOT_SECRET=root-only-value") {
		t.Errorf("env = %q, want ROOT_SECRET", env)
	}
}

func TestEnvFileReadKeepsDaemonRoot(t *testing.T) {
	requireRoot(t)
	nobody := nobody(t)
	path := filepath.Join(t.TempDir(), "job.env")
	if err := os.WriteFile(path, []byte("A=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	groups, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	// Many reads as another user must leave no thread of this process
	// with that user's IDs: every later read as root still works.
	for range 50 {
		_, _, _ = Environment(Settings{EnvFile: path, Identity: nobody}, nil)
		if _, _, err := Environment(Settings{EnvFile: path}, nil); err != nil {
			t.Fatalf("read as the daemon after a read as uid 65534: %v", err)
		}
	}
	after, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(groups) {
		t.Errorf("supplementary groups = %v, want %v", after, groups)
	}
}

func containsEntry(env []string, entry string) bool {
	for _, e := range env {
		if e == entry {
			return true
		}
	}
	return false
}
