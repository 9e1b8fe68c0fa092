package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDoctorReadOnlyStateDirNamesRemount checks the advice for a state
// folder on a read-only file system, where a chown fails as well.
func TestDoctorReadOnlyStateDirNamesRemount(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounts a tmpfs, which needs root")
	}
	mount := t.TempDir()
	if err := unix.Mount("tmpfs", mount, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mount, unix.MNT_DETACH) })
	if err := os.Mkdir(filepath.Join(mount, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", mount, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []string{filepath.Join(mount, "state"), filepath.Join(mount, "missing")} {
		var out strings.Builder
		d := &doctor{out: &out}
		d.checkStateDir(dir)
		if d.problems != 1 {
			t.Errorf("%s: %d problems, want 1:\n%s", dir, d.problems, out.String())
		}
		if !strings.Contains(out.String(), "read-only file system") {
			t.Errorf("%s: the problem does not name the read-only file system:\n%s", dir, out.String())
		}
		if !strings.Contains(out.String(), "remount it read-write") {
			t.Errorf("%s: the problem does not say to remount:\n%s", dir, out.String())
		}
	}
}
