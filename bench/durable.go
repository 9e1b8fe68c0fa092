package bench

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agent-runner/agent-runner/state"
)

// CommitResult holds one duration per run for each store commit of a
// run, and for a bare fdatasync in the same folder.
type CommitResult struct {
	// Claim and Finish are the two commits of one run, and Run is their
	// sum.
	Claim  []time.Duration `json:"claim"`
	Finish []time.Duration `json:"finish"`
	Run    []time.Duration `json:"run"`
	// Fdatasync is a pwrite of one 4 KiB page followed by fdatasync, on a
	// file beside the store.
	Fdatasync []time.Duration `json:"fdatasync"`
	// SyncAfterChild is the same write and sync right after a /bin/true
	// child exited, as a claim's sync follows the previous run in the run
	// boundary. The disk may complete it more slowly than a sync that
	// follows another.
	SyncAfterChild []time.Duration `json:"sync_after_child"`
}

// MeasureCommits claims and finishes runs scheduled runs of one job in
// a store in dir, and after each run writes and syncs one 4 KiB page of
// another file in dir. Then it times that write and sync runs more times,
// each right after a child.
func MeasureCommits(dir string, runs int) (CommitResult, error) {
	store, err := state.Open(filepath.Join(dir, "state.db"), state.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return CommitResult{}, err
	}
	defer store.Close()
	page, err := os.OpenFile(filepath.Join(dir, "page"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return CommitResult{}, err
	}
	defer page.Close()
	buf := make([]byte, 4096)

	start := time.Now()
	if _, err := store.EnsureJob("bench", start); err != nil {
		return CommitResult{}, err
	}
	slot := start.Truncate(time.Minute)
	var result CommitResult
	for i := range runs {
		slot = slot.Add(time.Minute)
		t0 := time.Now()
		run, err := store.Claim(state.Run{Job: "bench", Trigger: state.TriggerSchedule, Slot: slot, Start: t0}, slot.Add(time.Minute))
		if err != nil {
			return result, err
		}
		t1 := time.Now()
		run.Result = state.ResultOK
		run.Finish = t1
		run.Duration = t1.Sub(t0)
		if err := store.Finish(run); err != nil {
			return result, err
		}
		t2 := time.Now()
		buf[0] = byte(i)
		if _, err := page.WriteAt(buf, 0); err != nil {
			return result, err
		}
		if err := unix.Fdatasync(int(page.Fd())); err != nil {
			return result, fmt.Errorf("fdatasync %s: %w", page.Name(), err)
		}
		t3 := time.Now()
		result.Claim = append(result.Claim, t1.Sub(t0))
		result.Finish = append(result.Finish, t2.Sub(t1))
		result.Run = append(result.Run, t2.Sub(t0))
		result.Fdatasync = append(result.Fdatasync, t3.Sub(t2))
	}
	// In a loop of its own, so that no child runs between the syncs above.
	for range runs {
		took, err := syncAfterChild(page, buf)
		if err != nil {
			return result, err
		}
		result.SyncAfterChild = append(result.SyncAfterChild, took)
	}
	return result, nil
}

// syncAfterChild runs TruePath to its exit, then times a write of buf to
// page and its fdatasync.
func syncAfterChild(page *os.File, buf []byte) (time.Duration, error) {
	if err := exec.Command(TruePath).Run(); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := page.WriteAt(buf, 0); err != nil {
		return 0, err
	}
	if err := unix.Fdatasync(int(page.Fd())); err != nil {
		return 0, fmt.Errorf("fdatasync %s: %w", page.Name(), err)
	}
	return time.Since(start), nil
}

// SyncCalls are the system calls counted as durable writes.
var SyncCalls = []string{"fsync", "fdatasync", "sync_file_range", "msync", "syncfs", "sync"}

// ParseStraceSummary returns the call count per system call from the
// table that strace -c writes, such as
//
//	% time     seconds  usecs/call     calls    errors syscall
//	 98.00    0.001000          10       100           fdatasync
func ParseStraceSummary(text string) (map[string]int, error) {
	counts := make(map[string]int)
	scanner := bufio.NewScanner(strings.NewReader(text))
	header := false
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) > 0 && fields[0] == "%" {
			header = true
			continue
		}
		if !header || len(fields) < 5 || strings.HasPrefix(fields[0], "-") {
			continue
		}
		name := fields[len(fields)-1]
		if name == "total" {
			continue
		}
		calls, err := strconv.Atoi(fields[3])
		if err != nil {
			return nil, fmt.Errorf("invalid strace summary line %q: calls column is not a number", scanner.Text())
		}
		counts[name] += calls
	}
	if !header {
		return nil, fmt.Errorf("strace summary has no header line starting with %%")
	}
	return counts, scanner.Err()
}
