package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// writeFilledStore writes a store with several jobs and enough run output
// to span many pages, and returns the file's bytes and its high-water mark.
func writeFilledStore(t *testing.T, path string) ([]byte, int64) {
	t.Helper()
	store, err := Open(path, Options{HistoryLimit: 1000})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for j := range 4 {
		name := fmt.Sprintf("job-%d", j)
		if _, err := store.EnsureJob(name, start); err != nil {
			t.Fatalf("EnsureJob: %v", err)
		}
		for i := range 30 {
			run, err := store.Claim(Run{Job: name, Trigger: TriggerSchedule, Slot: slotAt(i), Start: start}, time.Time{})
			if err != nil {
				t.Fatalf("Claim: %v", err)
			}
			run.Result, run.Finish = ResultOK, start.Add(time.Second)
			run.Output = strings.Repeat(fmt.Sprintf("line %d of run %s\n", i, run.ID), 100)
			if err := store.Finish(run); err != nil {
				t.Fatalf("Finish: %v", err)
			}
		}
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	defer db.Close()
	var highWater int64
	if err := db.View(func(tx *bolt.Tx) error { highWater = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, highWater
}

// findPage returns the ID of the last page of the given bbolt page type
// ("leaf", "branch", "freelist") in the store at path. The store must use
// 4096-byte pages.
func findPage(t *testing.T, path, pageType string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	defer db.Close()
	if db.Info().PageSize != 4096 {
		t.Skipf("store uses %d-byte pages, want 4096", db.Info().PageSize)
	}
	found := -1
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			info, err := tx.Page(id)
			if err != nil || info == nil {
				return err
			}
			if info.Type == pageType {
				found = id
			}
		}
	})
	if err != nil {
		t.Fatalf("read pages: %v", err)
	}
	if found < 0 {
		t.Fatalf("store has no %s page", pageType)
	}
	return found
}

// writeBolt writes a bbolt file whose contents fill sets up.
func writeBolt(t *testing.T, path string, fill func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	if err := db.Update(fill); err != nil {
		t.Fatalf("fill bbolt file: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenMovesCorruptStoreAside(t *testing.T) {
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}

	tests := []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"garbage bytes", func(t *testing.T, path string) {
			writeFile(t, path, garbage)
		}},
		{"truncated to one page", func(t *testing.T, path string) {
			data, _ := writeFilledStore(t, path)
			writeFile(t, path, data[:4096])
		}},
		{"truncated below two pages", func(t *testing.T, path string) {
			data, _ := writeFilledStore(t, path)
			writeFile(t, path, data[:5000])
		}},
		{"truncated to half its pages", func(t *testing.T, path string) {
			data, highWater := writeFilledStore(t, path)
			writeFile(t, path, data[:highWater/2])
		}},
		{"truncated by one page", func(t *testing.T, path string) {
			data, highWater := writeFilledStore(t, path)
			writeFile(t, path, data[:highWater-4096])
		}},
		{"damaged pages", func(t *testing.T, path string) {
			data, highWater := writeFilledStore(t, path)
			for i := 2 * 4096; i < int(highWater); i += 4096 * 3 {
				copy(data[i:i+4096], garbage)
			}
			writeFile(t, path, data)
		}},
		{"damaged leaf page", func(t *testing.T, path string) {
			data, _ := writeFilledStore(t, path)
			id := findPage(t, path, "leaf")
			copy(data[id*4096:(id+1)*4096], garbage)
			writeFile(t, path, data)
		}},
		{"leaf page zeroed", func(t *testing.T, path string) {
			data, _ := writeFilledStore(t, path)
			id := findPage(t, path, "leaf")
			clear(data[id*4096 : (id+1)*4096])
			writeFile(t, path, data)
		}},
		{"damaged freelist page", func(t *testing.T, path string) {
			data, _ := writeFilledStore(t, path)
			id := findPage(t, path, "freelist")
			copy(data[id*4096:(id+1)*4096], garbage)
			writeFile(t, path, data)
		}},
		{"meta bucket missing", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket(bucketJobs)
				return err
			})
		}},
		{"schema version garbage", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error {
				meta, err := tx.CreateBucket(bucketMeta)
				if err != nil {
					return err
				}
				return meta.Put(keySchemaVersion, []byte("one"))
			})
		}},
		{"jobs bucket missing", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error {
				meta, err := tx.CreateBucket(bucketMeta)
				if err != nil {
					return err
				}
				return meta.Put(keySchemaVersion, runKey(1))
			})
		}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			path := tempStorePath(t)
			test.write(t, path)
			original, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			recorder, logger := newLogRecorder()
			store := openTestStore(t, path, Options{Logger: logger})
			checkMovedAside(t, store, original)
			checkRecoveryLogged(t, recorder, path, store.Recovered())
			checkFreshStore(t, store)
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkMovedAside checks that Open moved the original bytes to
// PATH.corrupt-<UTC time>.
func checkMovedAside(t *testing.T, store *Store, original []byte) {
	t.Helper()
	moved := store.Recovered()
	prefix := store.Path() + ".corrupt-"
	if !strings.HasPrefix(moved, prefix) {
		t.Fatalf("Recovered() = %q, want a path starting with %q", moved, prefix)
	}
	stamp, err := time.Parse(corruptSuffixLayout, strings.TrimPrefix(moved, prefix))
	if err != nil {
		t.Errorf("Recovered() = %q: timestamp does not parse: %v", moved, err)
	}
	if age := time.Since(stamp); age < -time.Second || age > time.Minute {
		t.Errorf("Recovered() = %q: timestamp is %v from now, want the time of Open", moved, age)
	}
	data, err := os.ReadFile(moved)
	if err != nil {
		t.Fatalf("read moved file: %v", err)
	}
	if !bytes.Equal(data, original) {
		t.Errorf("moved file has %d bytes that differ from the original %d", len(data), len(original))
	}
}

func checkRecoveryLogged(t *testing.T, recorder *logRecorder, path, moved string) {
	t.Helper()
	attrs, ok := recorder.find(slog.LevelError)
	if !ok {
		t.Fatal("no ERROR record logged")
	}
	if attrs["path"] != path {
		t.Errorf("ERROR record path %q, want %q", attrs["path"], path)
	}
	if attrs["moved_to"] != moved {
		t.Errorf("ERROR record moved_to %q, want %q", attrs["moved_to"], moved)
	}
	if attrs["err"] == "" {
		t.Error("ERROR record has no err attribute")
	}
}

// checkFreshStore checks that the store is empty and writable.
func checkFreshStore(t *testing.T, store *Store) {
	t.Helper()
	jobs, err := store.Jobs()
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if len(jobs) != 0 {
		t.Errorf("fresh store has jobs %v", jobs)
	}
	if _, err := store.EnsureJob("backup", time.Now()); err != nil {
		t.Errorf("EnsureJob on fresh store: %v", err)
	}
}

func TestOpenInitializesEmptyFile(t *testing.T) {
	path := tempStorePath(t)
	writeFile(t, path, nil)

	recorder, logger := newLogRecorder()
	store := openTestStore(t, path, Options{Logger: logger})
	if got := store.Recovered(); got != "" {
		t.Errorf("Recovered() = %q, want empty because an empty file has nothing to keep", got)
	}
	if copies := corruptCopies(t, path); len(copies) != 0 {
		t.Errorf("empty file was moved aside to %v", copies)
	}
	attrs, ok := recorder.find(slog.LevelWarn)
	if !ok {
		t.Error("no WARN record logged for the empty file")
	} else if attrs["path"] != path {
		t.Errorf("WARN record path %q, want %q", attrs["path"], path)
	}
	checkFreshStore(t, store)
}

// TestOpenUnreadableFile checks that a permission error is returned and
// never taken for corruption. Root ignores mode bits, so as root the test
// runs Open in a child process under the nobody user (uid 65534).
func TestOpenUnreadableFile(t *testing.T) {
	dir, err := os.MkdirTemp("", "state-permission-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "state.db")
	writeFilledStore(t, path)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	if os.Geteuid() == 0 {
		output := openAsNobody(t, dir, path)
		if !strings.HasPrefix(output, "permission=true ") || !strings.Contains(output, path) {
			t.Errorf("child Open printed %q, want a permission error naming %s", output, path)
		}
	} else {
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path, Options{})
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("got %v, want an error wrapping fs.ErrPermission", err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	checkUntouched(t, path, original)
}

// openAsNobody runs Open on path in a copy of the test binary under uid
// 65534, and returns what the child printed.
func openAsNobody(t *testing.T, dir, path string) string {
	t.Helper()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(dir, "state.test")
	copyExecutable(t, os.Args[0], binary)

	cmd := exec.Command(binary, "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"=open", childPathEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = dir
	output, err := cmd.Output()
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("cannot start a process as uid 65534: %v", err)
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	return strings.TrimSpace(string(output))
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	source, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer source.Close()
	target, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(target, source); err != nil {
		t.Fatal(err)
	}
	if err := target.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkUntouched checks that the file at path still has its original bytes
// and was not moved aside.
func checkUntouched(t *testing.T, path string, original []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read store: %v", err)
	}
	if !bytes.Equal(data, original) {
		t.Error("store file changed")
	}
	if copies := corruptCopies(t, path); len(copies) != 0 {
		t.Errorf("store was moved aside to %v", copies)
	}
}

// TestOpenFolderAtPath checks that a path that cannot be opened as a file
// is reported and left alone. Unlike mode bits, this fails for root too.
func TestOpenFolderAtPath(t *testing.T) {
	path := tempStorePath(t)
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{})
	if err == nil {
		t.Fatal("Open of a folder succeeded")
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("got %v, want an error that does not wrap ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	info, err := os.Stat(path)
	if err != nil || !info.IsDir() {
		t.Errorf("folder at path is gone: stat returned %v", err)
	}
	if copies := corruptCopies(t, path); len(copies) != 0 {
		t.Errorf("folder was moved aside to %v", copies)
	}
}

// TestOpenLockedCorruptFile checks that a held lock wins over corruption:
// Open cannot look at the contents, so it must not move the file.
func TestOpenLockedCorruptFile(t *testing.T) {
	path := tempStorePath(t)
	garbage := bytes.Repeat([]byte("not a bbolt file "), 1000)
	writeFile(t, path, garbage)
	holder, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := unix.Flock(int(holder.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	_, err = Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Errorf("got %v, want an error wrapping ErrLocked", err)
	}
	checkUntouched(t, path, garbage)
}

func TestOpenReadOnlyReportsCorruption(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"garbage bytes", func(t *testing.T, path string) {
			writeFile(t, path, bytes.Repeat([]byte("not a bbolt file "), 1000))
		}},
		{"truncated to half its pages", func(t *testing.T, path string) {
			data, highWater := writeFilledStore(t, path)
			writeFile(t, path, data[:highWater/2])
		}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			path := tempStorePath(t)
			test.write(t, path)
			original, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			_, err = Open(path, Options{ReadOnly: true})
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("got %v, want an error wrapping ErrCorrupt", err)
			}
			checkUntouched(t, path, original)
		})
	}
}

func TestUnusedCorruptPathAddsCounter(t *testing.T) {
	path := tempStorePath(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	first := path + ".corrupt-20300102T030405Z"
	writeFile(t, first, nil)

	got, err := unusedCorruptPath(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := first + "-2"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
