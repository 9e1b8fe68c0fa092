package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// readStoredVersion reads the schema version of a closed store with bbolt.
func readStoredVersion(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	defer db.Close()
	var version uint64
	err = db.View(func(tx *bolt.Tx) error {
		var err error
		version, err = readSchemaVersion(tx)
		return err
	})
	if err != nil {
		t.Fatalf("read schema version: %v", err)
	}
	return version
}

func hasBucket(t *testing.T, path, name string) bool {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("bolt.Open: %v", err)
	}
	defer db.Close()
	found := false
	err = db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket([]byte(name)) != nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func writeVersion(t *testing.T, path string, version uint64) {
	t.Helper()
	writeBolt(t, path, func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return meta.Put(keySchemaVersion, binary.BigEndian.AppendUint64(nil, version))
	})
}

// replaceMigrations swaps the migration list for the test's duration.
func replaceMigrations(t *testing.T, list []migration) {
	t.Helper()
	saved := migrations
	migrations = list
	t.Cleanup(func() { migrations = saved })
}

func TestOpenMigratesVersionZero(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"bbolt file without buckets", func(t *testing.T, path string) {
			writeBolt(t, path, func(*bolt.Tx) error { return nil })
		}},
		{"meta bucket recording version 0", func(t *testing.T, path string) {
			writeVersion(t, path, 0)
		}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			path := tempStorePath(t)
			test.write(t, path)

			recorder, logger := newLogRecorder()
			store, err := Open(path, Options{Logger: logger})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := store.Recovered(); got != "" {
				t.Errorf("Recovered() = %q, want empty", got)
			}
			if _, err := store.EnsureJob("backup", time.Now()); err != nil {
				t.Errorf("EnsureJob after migration: %v", err)
			}
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}

			if got := readStoredVersion(t, path); got != supportedVersion() {
				t.Errorf("schema version %d, want %d", got, supportedVersion())
			}
			attrs, ok := recorder.find(slog.LevelInfo)
			if !ok {
				t.Fatal("no INFO record logged for the new store")
			}
			if want := fmt.Sprint(supportedVersion()); attrs["msg"] != "created state store" || attrs["schema"] != want {
				t.Errorf("INFO record %q schema=%s, want \"created state store\" schema=%s", attrs["msg"], attrs["schema"], want)
			}
			if recorder.has(slog.LevelInfo, "migrated") {
				t.Errorf("a new store logged its migration steps")
			}
		})
	}
}

func TestOpenAppliesMigrationsInOrder(t *testing.T) {
	path := tempStorePath(t)
	replaceMigrations(t, migrations[:1])
	store := openTestStore(t, path, Options{})
	if _, err := store.EnsureJob("backup", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	var applied []string
	replaceMigrations(t, []migration{
		func(tx *bolt.Tx) error { applied = append(applied, "0→1"); return createBuckets(tx) },
		func(tx *bolt.Tx) error { applied = append(applied, "1→2"); return createListenersBucket(tx) },
		func(tx *bolt.Tx) error {
			applied = append(applied, "2→3")
			_, err := tx.CreateBucket([]byte("added"))
			return err
		},
	})

	recorder, logger := newLogRecorder()
	store = openTestStore(t, path, Options{Logger: logger})
	if attrs, ok := recorder.find(slog.LevelInfo); !ok || attrs["msg"] != "migrated state store schema" || attrs["from"] != "1" {
		t.Errorf("first INFO record %v, want the migration from version 1", attrs)
	}
	if _, ok, err := store.Job("backup"); err != nil || !ok {
		t.Errorf("Job after migration = %v, %v, want the job", ok, err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1→2", "2→3"}; !slices.Equal(applied, want) {
		t.Errorf("applied %v, want %v", applied, want)
	}
	if got := readStoredVersion(t, path); got != 3 {
		t.Errorf("schema version %d, want 3", got)
	}

	applied = nil
	openTestStore(t, path, Options{})
	if len(applied) != 0 {
		t.Errorf("reopening applied %v again", applied)
	}
}

func TestOpenFailedMigrationKeepsVersion(t *testing.T) {
	path := tempStorePath(t)
	store := openTestStore(t, path, Options{})
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	failure := errors.New("migration failed")
	replaceMigrations(t, []migration{
		createBuckets,
		createListenersBucket,
		func(tx *bolt.Tx) error {
			if _, err := tx.CreateBucket([]byte("half-done")); err != nil {
				return err
			}
			return failure
		},
	})

	_, err := Open(path, Options{})
	if !errors.Is(err, failure) {
		t.Fatalf("got %v, want the migration's error", err)
	}
	if got := readStoredVersion(t, path); got != 2 {
		t.Errorf("schema version %d, want 2", got)
	}
	if hasBucket(t, path, "half-done") {
		t.Error("bucket created by the failed migration was kept")
	}
	if copies := corruptCopies(t, path); len(copies) != 0 {
		t.Errorf("store was moved aside to %v", copies)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	path := tempStorePath(t)
	writeVersion(t, path, 3)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	want := "state store " + path + " has schema version 3, newer than this agent-runner supports (2): " +
		"upgrade agent-runner, or move the file aside to start afresh"
	for _, readOnly := range []bool{false, true} {
		_, err := Open(path, Options{ReadOnly: readOnly})
		if !errors.Is(err, ErrNewerSchema) {
			t.Errorf("ReadOnly=%t: got %v, want an error wrapping ErrNewerSchema", readOnly, err)
			continue
		}
		if err.Error() != want {
			t.Errorf("ReadOnly=%t: got %q, want %q", readOnly, err, want)
		}
	}
	checkUntouched(t, path, original)
}

func TestOpenReadOnlyRejectsOlderSchema(t *testing.T) {
	path := tempStorePath(t)
	writeVersion(t, path, 0)
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	_, err = Open(path, Options{ReadOnly: true})
	if !errors.Is(err, ErrOlderSchema) {
		t.Errorf("got %v, want an error wrapping ErrOlderSchema", err)
	}
	checkUntouched(t, path, original)
}
