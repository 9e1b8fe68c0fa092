package state

import (
	"errors"
	"testing"
	"time"
)

func TestResetPositionSurvivesReopen(t *testing.T) {
	path := tempStorePath(t)
	store := openTestStore(t, path, Options{})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ahead := now.Add(365 * 24 * time.Hour)
	if _, err := store.EnsureJob("job", ahead); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Claim(Run{Job: "job", Trigger: TriggerSchedule, Slot: ahead, Start: ahead}, ahead.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	run, err := store.ResetPosition("job", now, now, "moved back", now, now.Add(time.Hour))
	if err != nil {
		t.Fatalf("ResetPosition: %v", err)
	}
	if run.Result != ResultSkipped || run.Trigger != TriggerReset || run.ID == "" {
		t.Errorf("reset record = %+v, want a skipped record with trigger %q and an ID", run, TriggerReset)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	store = openTestStore(t, path, Options{})
	st, _, err := store.Job("job")
	if err != nil {
		t.Fatal(err)
	}
	if !st.LastSlot.Equal(now) || !st.FirstSeen.Equal(now) || !st.NextRun.Equal(now.Add(time.Hour)) {
		t.Errorf("state after reopen = %+v, want last slot and first seen %s and next run an hour later", st, now)
	}
	if _, err := store.Claim(Run{Job: "job", Trigger: TriggerSchedule, Slot: now, Start: now}, now); !errors.Is(err, ErrSlotClaimed) {
		t.Errorf("claim of the reset slot itself = %v, want ErrSlotClaimed", err)
	}
}

func TestResetPositionRejectsBadInput(t *testing.T) {
	store := openTestStore(t, tempStorePath(t), Options{})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := store.ResetPosition("missing", now, now, "", now, now); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("reset of a job the store lacks = %v, want ErrJobNotFound", err)
	}
	if _, err := store.EnsureJob("job", now); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ResetPosition("job", now, now.Add(time.Second), "", now, now); err == nil {
		t.Error("reset with first seen after the slot succeeded, want an error")
	}
}
