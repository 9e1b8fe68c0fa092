package state

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// childClaimDeletedLog claims a slot, deletes the claim log, and claims
// two more slots, with the commit timer held off. It prints each claimed
// run's ID, then "ready", the number of bbolt commits and of claim log
// syncs since Open, and waits for its standard input to close.
func childClaimDeletedLog(path string) int {
	store, err := Open(path, Options{LockTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	store.writer.delay = time.Hour
	syncs := store.writer.claims.syncs
	for i := 1; i <= 3; i++ {
		if i == 2 {
			if err := os.Remove(path + claimLogSuffix); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		run, err := store.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(i), Start: testStart}, slotAt(i+1))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(run.ID)
	}
	fmt.Println("ready", store.writer.commits, store.writer.claims.syncs-syncs)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestDeletedClaimLogSurvivesKill kills a child that deleted its claim
// log between claims, and checks that a reopened store has every claim,
// so that no slot can be claimed twice.
func TestDeletedClaimLogSurvivesKill(t *testing.T) {
	path := tempStorePath(t)
	child := startChild(t, "claim-deleted-log", path)
	var ids []string
	var ready string
	for ready == "" {
		line := child.waitLine(t)
		if rest, ok := strings.CutPrefix(line, "ready "); ok {
			ready = rest
		} else {
			ids = append(ids, line)
		}
	}
	killChild(t, child)
	if len(ids) != 3 {
		t.Fatalf("child claimed runs %v, want 3", ids)
	}
	// The first claim is synced to the old log. The second finds it gone
	// and commits bbolt, and the third is synced to the new log.
	if ready != "1 2" {
		t.Errorf("child made bbolt commits and claim log syncs %q, want 1 and 2", ready)
	}
	if info, err := os.Stat(path + claimLogSuffix); err != nil || info.Size() != claimLogSize {
		t.Errorf("claim log after the kill %v, %v, want a file of %d bytes", info, err, claimLogSize)
	}

	store := openTestStore(t, path, Options{})
	if job := mustJob(t, store, "alpha"); !job.LastSlot.Equal(slotAt(3)) {
		t.Errorf("LastSlot after the kill %v, want %v", job.LastSlot, slotAt(3))
	}
	for i, id := range ids {
		if run := mustRun(t, store, "alpha", id); !run.Slot.Equal(slotAt(i + 1)) {
			t.Errorf("run %s slot %v, want %v", id, run.Slot, slotAt(i+1))
		}
		_, err := store.Claim(Run{Job: "alpha", Trigger: TriggerSchedule, Slot: slotAt(i + 1), Start: testStart}, time.Time{})
		if !errors.Is(err, ErrSlotClaimed) {
			t.Errorf("Claim of slot %v again: err = %v, want ErrSlotClaimed", slotAt(i+1), err)
		}
	}
	if next := claimSlot(t, store, "alpha", slotAt(4)); next.ID != "4" {
		t.Errorf("next run ID %s, want 4", next.ID)
	}
}

func TestMovedClaimLogRecreated(t *testing.T) {
	cases := map[string]func(t *testing.T, logPath string){
		"deleted": func(t *testing.T, logPath string) {
			if err := os.Remove(logPath); err != nil {
				t.Fatal(err)
			}
		},
		"renamed": func(t *testing.T, logPath string) {
			if err := os.Rename(logPath, filepath.Join(t.TempDir(), "renamed")); err != nil {
				t.Fatal(err)
			}
		},
		"replaced": func(t *testing.T, logPath string) {
			other := logPath + ".other"
			if err := os.WriteFile(other, []byte("not a claim log"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, logPath); err != nil {
				t.Fatal(err)
			}
		},
		"hard-linked": func(t *testing.T, logPath string) {
			if err := os.Link(logPath, filepath.Join(filepath.Dir(logPath), "backup-link")); err != nil {
				t.Fatal(err)
			}
		},
		"symlink": func(t *testing.T, logPath string) {
			if err := os.Remove(logPath); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(t.TempDir(), "outside"), logPath); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, move := range cases {
		t.Run(name, func(t *testing.T) {
			path := tempStorePath(t)
			recorder, logger := newLogRecorder()
			store := openHeldStore(t, path, Options{Logger: logger})
			claimSlot(t, store, "alpha", slotAt(1))
			move(t, path+claimLogSuffix)
			checkRecreatedLog(t, store, recorder)

			// A crash now leaves the store file and the new log.
			reopened := openTestStore(t, copyStore(t, path), Options{})
			if job := mustJob(t, reopened, "alpha"); !job.LastSlot.Equal(slotAt(3)) {
				t.Errorf("LastSlot of a copy %v, want %v", job.LastSlot, slotAt(3))
			}
		})
	}
}

// checkRecreatedLog claims slots 2 and 3 after the claim log was moved,
// and checks that the first claim commits bbolt and recreates the log,
// with one warning, and the second is synced to the new log alone.
func checkRecreatedLog(t *testing.T, store *Store, recorder *logRecorder) {
	t.Helper()
	commits, syncs := store.writer.commits, store.writer.claims.syncs
	claimSlot(t, store, "alpha", slotAt(2))
	if got := store.writer.commits - commits; got != 1 {
		t.Errorf("bbolt committed %d times for the claim after the move, want 1", got)
	}
	claimSlot(t, store, "alpha", slotAt(3))
	if got := store.writer.claims.syncs - syncs; got != 1 {
		t.Errorf("claim log synced %d times for the claim after it was recreated, want 1", got)
	}
	if got := store.writer.commits - commits; got != 1 {
		t.Errorf("bbolt committed %d times for both claims, want 1", got)
	}

	logPath := store.path + claimLogSuffix
	info, err := os.Lstat(logPath)
	if err != nil || !info.Mode().IsRegular() || info.Size() != claimLogSize {
		t.Fatalf("recreated claim log %v, %v, want a regular file of %d bytes", info, err, claimLogSize)
	}
	if !os.SameFile(info, store.writer.claims.info) {
		t.Error("the store writes a claim log other than the one at its path")
	}
	if n := recorder.count(slog.LevelWarn, "claim log was deleted or replaced"); n != 1 {
		t.Errorf("logged the recreation %d times, want 1", n)
	}
	if warning, ok := recorder.find(slog.LevelWarn); !ok || warning["path"] != logPath {
		t.Errorf("WARN %v, want path %s", warning, logPath)
	}
}

// TestClaimLogRecreateFailureLoggedOnce deletes the state folder, so no
// claim log can be created, and checks that claims commit bbolt with one
// ERROR until the folder is back and the log is recreated.
func TestClaimLogRecreateFailureLoggedOnce(t *testing.T) {
	path := tempStorePath(t)
	recorder, logger := newLogRecorder()
	store := openHeldStore(t, path, Options{Logger: logger})
	claimSlot(t, store, "alpha", slotAt(1))
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}

	commits := store.writer.commits
	for i := 2; i <= 3; i++ {
		claimSlot(t, store, "alpha", slotAt(i))
	}
	if got := store.writer.commits - commits; got != 2 {
		t.Errorf("bbolt committed %d times for 2 claims without a claim log, want 2", got)
	}
	if n := recorder.count(slog.LevelError, "recreate claim log failed"); n != 1 {
		t.Errorf("logged the failure %d times, want 1", n)
	}

	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	claimSlot(t, store, "alpha", slotAt(4))
	if _, err := os.Stat(path + claimLogSuffix); err != nil {
		t.Errorf("claim log not recreated once its folder was back: %v", err)
	}
	if n := recorder.count(slog.LevelWarn, "claim log was deleted or replaced"); n != 1 {
		t.Errorf("logged the recreation %d times, want 1", n)
	}
	syncs := store.writer.claims.syncs
	claimSlot(t, store, "alpha", slotAt(5))
	if got := store.writer.claims.syncs - syncs; got != 1 {
		t.Errorf("claim log synced %d times for a claim after it was recreated, want 1", got)
	}
}
