package state

import (
	"bytes"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// damageRecords overwrites in place the first byte of every record in
// the store file that starts with prefix, as a flipped bit would, leaving
// bbolt's pages valid.
func damageRecords(t *testing.T, path string, prefix string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for i := bytes.Index(data, []byte(prefix)); i >= 0; {
		data[i] = 'X'
		count++
		next := bytes.Index(data[i:], []byte(prefix))
		if next < 0 {
			break
		}
		i += next
	}
	if count == 0 {
		t.Fatalf("no record starts with %s in %s", prefix, path)
	}
	writeFile(t, path, data)
}

func TestOpenReplacesDamagedJobRecord(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"damaged", "kept"} {
		claimFinished(t, store, name, slotAt(1), ResultOK)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	damageRecords(t, path, `{"name":"damaged"`)

	recorder, logger := newLogRecorder()
	store = openTestStore(t, path, Options{Logger: logger})
	if _, err := store.RecoverInterrupted(time.Now(), nil); err != nil {
		t.Fatalf("RecoverInterrupted after the repair: %v", err)
	}
	jobs, err := store.Jobs()
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	var names []string
	for _, job := range jobs {
		names = append(names, job.Name)
		if job.Name == "damaged" && !job.LastSlot.IsZero() {
			t.Errorf("the replaced record kept last slot %v, want a new job's state", job.LastSlot)
		}
	}
	if !slices.Equal(names, []string{"damaged", "kept"}) {
		t.Errorf("jobs after the repair %v, want [damaged kept]", names)
	}
	if runs, err := store.Runs("damaged", 0); err != nil || len(runs) != 1 {
		t.Errorf("history of the replaced job = %v, %v, want its one run", runs, err)
	}

	attrs, ok := recorder.find(slog.LevelError)
	if !ok || attrs["job"] != "damaged" {
		t.Fatalf("error log %v, want one naming job damaged", attrs)
	}
	copies := corruptCopies(t, path)
	if len(copies) != 1 || attrs["copy"] != copies[0] {
		t.Fatalf("copies %v, logged copy %q, want the one copy logged", copies, attrs["copy"])
	}
	checkCopyHasJob(t, copies[0], "damaged")
}

// checkCopyHasJob checks that the copy saved before a repair still holds
// the damaged record of job name.
func checkCopyHasJob(t *testing.T, path, name string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJobs).Get([]byte(name)) == nil {
			t.Errorf("the copy lacks the record of job %s", name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenKeepsIntactStore(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	claimFinished(t, store, "kept", slotAt(1), ResultOK)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	openTestStore(t, path, Options{})
	if copies := corruptCopies(t, path); len(copies) != 0 {
		t.Errorf("an intact store was copied: %v", copies)
	}
}

func TestRunsSkipsDamagedRecord(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		claimFinished(t, store, "backup", slotAt(i+1), ResultOK)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	damageRecords(t, path, `{"id":"2",`)

	store = openTestStore(t, path, Options{})
	runs, err := store.Runs("backup", 0)
	if err != nil {
		t.Fatalf("Runs with one damaged record: %v", err)
	}
	var ids []string
	for _, run := range runs {
		ids = append(ids, run.ID)
	}
	if !slices.Equal(ids, []string{"3", "1"}) {
		t.Errorf("run IDs %v, want [3 1]", ids)
	}
	if _, _, err := store.Run("backup", "2"); err == nil {
		t.Error("Run of the damaged record gave no error")
	}
}

func TestRepairKeepsRunningRunRecoverable(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	run := claim(t, store, "damaged", slotAt(1))
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	damageRecords(t, path, `{"name":"damaged"`)

	store = openTestStore(t, path, Options{})
	running, err := store.RunningRuns()
	if err != nil || len(running) != 1 || running[0].ID != run.ID {
		t.Fatalf("RunningRuns after the repair = %v, %v, want run %s", running, err, run.ID)
	}
	recovered, err := store.RecoverInterrupted(time.Now(), nil)
	if err != nil || len(recovered) != 1 {
		t.Fatalf("RecoverInterrupted after the repair = %v, %v, want run %s", recovered, err, run.ID)
	}
	if got, _, _ := store.Run("damaged", run.ID); got.Result != ResultInterrupted {
		t.Errorf("run %s after recovery is %q, want %q", run.ID, got.Result, ResultInterrupted)
	}
}

func TestDamagedRunningRunIsRecovered(t *testing.T) {
	path := tempStorePath(t)
	store, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	run := claim(t, store, "backup", slotAt(1))
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	damageRecords(t, path, `{"id":"`+run.ID+`",`)

	store = openTestStore(t, path, Options{})
	running, err := store.RunningRuns()
	if err != nil || len(running) != 1 || running[0].ID != run.ID || running[0].Job != "backup" {
		t.Fatalf("RunningRuns with the run's record damaged = %v, %v, want run %s of backup", running, err, run.ID)
	}
	if _, err := store.RecoverInterrupted(time.Now(), nil); err != nil {
		t.Fatalf("RecoverInterrupted: %v", err)
	}
	got, ok, err := store.Run("backup", run.ID)
	if err != nil || !ok {
		t.Fatalf("Run after recovery = %v, %v, want the rewritten record", ok, err)
	}
	if got.Result != ResultInterrupted || !strings.Contains(got.Error, "damaged") {
		t.Errorf("run after recovery: %q, %q, want interrupted and the damage named", got.Result, got.Error)
	}
}

// A read-only Open replaces a damaged job record in its copy in memory
// before it redoes the claim log, as a read-write Open does, so the
// job's pending claim shows. Nothing is saved or written beside the
// store.
func TestReadOnlyReplacesDamagedJobInCopy(t *testing.T) {
	path := tempStorePath(t)
	store := openTestStore(t, path, Options{})
	claimFinished(t, store, "damaged", slotAt(1), ResultOK)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	held := openHeldStore(t, path, Options{})
	pending := claimSlot(t, held, "damaged", slotAt(2))
	crashed := copyStore(t, path)
	damageRecords(t, crashed, `{"name":"damaged"`)

	readOnly, err := Open(crashed, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	defer readOnly.Close()
	job := mustJob(t, readOnly, "damaged")
	if !job.LastSlot.Equal(slotAt(2)) {
		t.Errorf("LastSlot %v, want %v from the claim log", job.LastSlot, slotAt(2))
	}
	if !job.Running {
		t.Error("job not running, want running from the pending claim")
	}
	if run := mustRun(t, readOnly, "damaged", pending.ID); run.Result != ResultRunning {
		t.Errorf("pending run result %q, want running", run.Result)
	}
	if copies := corruptCopies(t, crashed); len(copies) != 0 {
		t.Errorf("read-only Open saved copies %v, want none", copies)
	}
}
