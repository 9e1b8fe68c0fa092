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
	// The link stands for one that the job's user put in a folder of its
	// own in place of its env file.
	link := filepath.Join(dir, "job.env")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}

	env, err := Environment(Settings{EnvFile: link, Identity: nobody}, nil)
	if err == nil {
		t.Fatalf("env file of root only read for uid 65534: %q", env)
	}
	if !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "nobody") {
		t.Errorf("error = %v, want permission denied for user nobody", err)
	}

	env, err = Environment(Settings{EnvFile: public, Identity: nobody}, nil)
	if err != nil {
		t.Fatalf("env file readable by uid 65534: %v", err)
	}
	if !containsEntry(env, "PUBLIC=value") {
		t.Errorf("env = %q, want PUBLIC=value", env)
	}

	env, err = Environment(Settings{EnvFile: private}, nil)
	if err != nil {
		t.Fatalf("env file of a child that runs as root: %v", err)
	}
	if !containsEntry(env, "ROOT_SECRET=root-only-value") {
		t.Errorf("env = %q, want ROOT_SECRET for a child of the daemon's user", env)
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
		_, _ = Environment(Settings{EnvFile: path, Identity: nobody}, nil)
		if _, err := Environment(Settings{EnvFile: path}, nil); err != nil {
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
