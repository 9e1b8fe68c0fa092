package process

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNewOutputFailureClosesOnlyItsPipes makes the pipes of a run fail
// for want of descriptors, as in a daemon with thousands of jobs under a
// low open-file limit. The cleanup must close only what newOutput made:
// the descriptor number 0 belongs to someone else, and once closed the
// number goes to the next file opened, which a later cleanup closes in
// turn under its owner.
func TestNewOutputFailureClosesOnlyItsPipes(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	saved, err := unix.Dup(0)
	if err != nil {
		t.Skipf("descriptor 0 is not open: %v", err)
	}
	defer func() {
		_ = unix.Dup2(saved, 0)
		unix.Close(saved)
	}()
	if err := unix.Dup2(int(null.Fd()), 0); err != nil {
		t.Fatal(err)
	}

	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	// The lowest free descriptor as the limit makes the next pipe fail.
	probe, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(probe)
	low := limit
	low.Cur = uint64(probe)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	_, err = newOutput(func(Line) {})
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("newOutput succeeded without free descriptors")
	}
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Errorf("descriptor 0 after a failed newOutput: %v, want it left open", err)
	}
}
