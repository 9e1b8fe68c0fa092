package jobs

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestJobLocksLeaveDescriptors runs many more jobs, one after another,
// than the open-file limit has room for. Each job's lock file used to
// stay open after its run. With 10,000 jobs and a limit of 4,096, the
// lock files took every descriptor, and runs failed with "too many open
// files" on their lock or their pipes.
func TestJobLocksLeaveDescriptors(t *testing.T) {
	dir := t.TempDir()
	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	probe, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(probe)
	low := limit
	low.Cur = uint64(probe) + 64
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
			t.Fatal(err)
		}
	}()

	var locks jobLocks
	for i := range 500 {
		name := fmt.Sprintf("job-%03d", i)
		held, err := locks.tryLock(dir, name)
		if err != nil {
			t.Fatalf("lock %s: %v", name, err)
		}
		if held == nil {
			t.Fatalf("lock %s: busy, want it taken", name)
		}
		// A second run of the job finds it busy, also past the capacity.
		if again, err := locks.tryLock(dir, name); err != nil || again != nil {
			t.Fatalf("lock %s again: %v, %v, want busy", name, again, err)
		}
		if err := held.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatalf("create pipe after 500 runs: %v", err)
	}
	unix.Close(fds[0])
	unix.Close(fds[1])
}
