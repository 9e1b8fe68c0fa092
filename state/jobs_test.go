package state

import (
	"testing"
	"time"
)

func TestEnsureJobKeepsFirstSeen(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	first := time.Date(2030, 1, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))

	created, err := store.EnsureJob("backup", first)
	if err != nil {
		t.Fatalf("EnsureJob: %v", err)
	}
	if !created.FirstSeen.Equal(first) {
		t.Errorf("FirstSeen %v, want %v", created.FirstSeen, first)
	}
	if created.FirstSeen.Location() != time.UTC {
		t.Errorf("FirstSeen location %v, want UTC", created.FirstSeen.Location())
	}
	if created.Name != "backup" {
		t.Errorf("Name %q, want backup", created.Name)
	}

	again, err := store.EnsureJob("backup", first.Add(time.Hour))
	if err != nil {
		t.Fatalf("second EnsureJob: %v", err)
	}
	if !again.FirstSeen.Equal(first) {
		t.Errorf("second EnsureJob FirstSeen %v, want %v", again.FirstSeen, first)
	}
}

func TestEnsureJobRejectsEmptyName(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	if _, err := store.EnsureJob("", time.Now()); err == nil {
		t.Error("EnsureJob with an empty name succeeded")
	}
}

func TestJobMissing(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	job, ok, err := store.Job("absent")
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	if ok {
		t.Errorf("Job(absent) = %+v, true, want false", job)
	}
}

func TestJobsSortedByName(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	for _, name := range []string{"zeta", "alpha", "Mixed", "beta"} {
		if _, err := store.EnsureJob(name, time.Now()); err != nil {
			t.Fatalf("EnsureJob(%s): %v", name, err)
		}
	}
	jobs, err := store.Jobs()
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	var names []string
	for _, job := range jobs {
		names = append(names, job.Name)
	}
	want := []string{"Mixed", "alpha", "beta", "zeta"}
	if len(names) != len(want) {
		t.Fatalf("got %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("got %v, want %v", names, want)
			break
		}
	}
}

func TestForgetJobDropsStateAndHistory(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	claimFinished(t, store, "backup", slotAt(1), ResultOK)
	claimFinished(t, store, "other", slotAt(1), ResultOK)

	if err := store.ForgetJob("backup"); err != nil {
		t.Fatalf("ForgetJob: %v", err)
	}
	if _, ok, err := store.Job("backup"); err != nil || ok {
		t.Errorf("Job after ForgetJob = %v, %v, want false, nil", ok, err)
	}
	runs, err := store.Runs("backup", 0)
	if err != nil {
		t.Fatalf("Runs: %v", err)
	}
	if len(runs) != 0 {
		t.Errorf("Runs after ForgetJob = %v, want none", runs)
	}
	if other, err := store.Runs("other", 0); err != nil || len(other) != 1 {
		t.Errorf("Runs(other) = %d runs, %v, want 1", len(other), err)
	}
	if err := store.ForgetJob("absent"); err != nil {
		t.Errorf("ForgetJob(absent): %v", err)
	}

	// A job added again starts afresh, and run IDs keep increasing.
	state, err := store.EnsureJob("backup", time.Now())
	if err != nil {
		t.Fatalf("EnsureJob: %v", err)
	}
	if !state.LastSlot.IsZero() {
		t.Errorf("LastSlot %v after ForgetJob, want zero", state.LastSlot)
	}
	run := claimFinished(t, store, "backup", slotAt(1), ResultOK)
	if run.ID != "3" {
		t.Errorf("ID %s, want 3", run.ID)
	}
}
