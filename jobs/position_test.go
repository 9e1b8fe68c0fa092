package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/state"
)

// seedAhead stores a position for job that a clock a day ahead of t0
// left: first seen then, and a slot of that day skipped.
func seedAhead(t *testing.T, store *state.Store, name string) time.Time {
	t.Helper()
	ahead := t0.Add(24 * time.Hour)
	if _, err := store.EnsureJob(name, ahead); err != nil {
		t.Fatal(err)
	}
	slot := ahead.Add(time.Minute).Truncate(time.Minute)
	if err := store.Skip(name, slot, state.TriggerSchedule, "clock ahead", ahead, slot.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return slot
}

func TestSchedulerResetReplansAtOnce(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("minutely", "* * * * *"))
	slot := seedAhead(t, h.store, "minutely")
	h.start()
	defer h.stop()
	if next, _ := h.sched.Next("minutely"); !next.After(slot) {
		t.Fatalf("next slot before the reset = %s, want after the stored %s", next, slot)
	}

	result, err := h.sched.Reset(h.cfg.Jobs[0], false)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if !result.To.Equal(t0) || !result.From.Equal(slot) {
		t.Errorf("Reset moved the position from %s to %s, want from %s to %s", result.From, result.To, slot, t0)
	}
	wantNext := t0.Truncate(time.Minute).Add(time.Minute)
	if next, _ := h.sched.Next("minutely"); !next.Equal(wantNext) {
		t.Errorf("next slot after the reset = %s, want %s", next, wantNext)
	}
	h.expectNoRun()

	h.advance(30*time.Second, 10*time.Second)
	run := h.expectRuns(1)[0]
	if !run.Slot.Equal(wantNext) || run.Trigger != state.TriggerSchedule {
		t.Errorf("run after the reset has slot %s and trigger %q, want %s and %q", run.Slot, run.Trigger, wantNext, state.TriggerSchedule)
	}
	h.expectNoRun()
}

func TestSchedulerResetKeepsPosition(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("minutely", "* * * * *"))
	h.start()
	defer h.stop()

	result, err := h.sched.Reset(h.cfg.Jobs[0], false)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if !result.To.IsZero() || !strings.Contains(result.Unchanged, "not ahead") {
		t.Errorf("Reset of a position not ahead = %+v, want it unchanged as not ahead", result)
	}
	runs, err := h.store.Runs("minutely", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 0 {
		t.Errorf("Reset of a position not ahead stored %d records, want none", len(runs))
	}
}

func TestResetPositionOffline(t *testing.T) {
	store := openStore(t, t.TempDir())
	job := cronJob("minutely", "* * * * *")
	slot := seedAhead(t, store, "minutely")

	result, st, err := ResetPosition(store, job, t0, false)
	if err != nil {
		t.Fatalf("ResetPosition: %v", err)
	}
	if !result.To.Equal(t0) || result.Ahead <= MaxPositionAhead {
		t.Errorf("ResetPosition = %+v, want the position moved to %s from more than %s ahead", result, t0, MaxPositionAhead)
	}
	stored, _, err := store.Job("minutely")
	if err != nil {
		t.Fatal(err)
	}
	if !stored.LastSlot.Equal(t0) || stored.FirstSeen.After(t0) {
		t.Errorf("stored state after the reset has last slot %s and first seen %s, want %s and not after it", stored.LastSlot, stored.FirstSeen, t0)
	}
	if !st.LastSlot.Equal(stored.LastSlot) {
		t.Errorf("ResetPosition returned last slot %s, store has %s", st.LastSlot, stored.LastSlot)
	}
	runs, err := store.Runs("minutely", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Trigger != state.TriggerReset || runs[0].Result != state.ResultSkipped || runs[0].ID != result.RunID {
		t.Errorf("newest record after the reset = %+v, want the skipped reset record %s", runs, result.RunID)
	}
	if !strings.Contains(runs[0].Error, slot.Format(time.RFC3339)) {
		t.Errorf("reset record's message %q does not name the old position %s", runs[0].Error, slot.Format(time.RFC3339))
	}

	// The next slot after the clock claims, and the old position no
	// longer holds it back.
	next := t0.Truncate(time.Minute).Add(time.Minute)
	if _, err := store.Claim(state.Run{Job: "minutely", Trigger: state.TriggerSchedule, Slot: next, Start: next}, next.Add(time.Minute)); err != nil {
		t.Errorf("claim of the next slot after the reset: %v", err)
	}
	if _, err := store.Claim(state.Run{Job: "minutely", Trigger: state.TriggerSchedule, Slot: next, Start: next}, next.Add(time.Minute)); !errors.Is(err, state.ErrSlotClaimed) {
		t.Errorf("second claim of slot %s = %v, want ErrSlotClaimed", next, err)
	}
}

func TestResetNeedsForceWithinHour(t *testing.T) {
	store := openStore(t, t.TempDir())
	job := cronJob("minutely", "* * * * *")
	if _, err := store.EnsureJob("minutely", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	// An NTP step back of 10 minutes leaves the position that far ahead.
	slot := t0.Add(10 * time.Minute).Truncate(time.Minute)
	if err := store.Skip("minutely", slot, state.TriggerSchedule, "ran before the step", t0, slot.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	result, _, err := ResetPosition(store, job, t0, false)
	if err != nil {
		t.Fatal(err)
	}
	if !result.To.IsZero() || !strings.Contains(result.Unchanged, "heals by itself") {
		t.Errorf("ResetPosition without force = %+v, want it unchanged within the hour", result)
	}
	result, _, err = ResetPosition(store, job, t0, true)
	if err != nil {
		t.Fatal(err)
	}
	if !result.To.Equal(t0) {
		t.Errorf("ResetPosition with force moved the position to %s, want %s", result.To, t0)
	}
}

// A timer claims a slot up to earlyTolerance before it, so a position
// that close to the clock may be a slot that ran, and force must not
// move it back.
func TestResetForceKeepsEarlyClaim(t *testing.T) {
	store := openStore(t, t.TempDir())
	job := cronJob("secondly", "* * * * * *")
	if _, err := store.EnsureJob("secondly", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	slot := t0.Add(time.Second)
	now := t0.Add(100 * time.Millisecond)
	if _, err := store.Claim(state.Run{Job: "secondly", Trigger: state.TriggerSchedule, Slot: slot, Start: now, Result: state.ResultRunning}, slot.Add(time.Second)); err != nil {
		t.Fatal(err)
	}

	result, st, err := ResetPosition(store, job, now, true)
	if err != nil {
		t.Fatal(err)
	}
	if !result.To.IsZero() {
		t.Errorf("ResetPosition with force moved the position to %s, want the early claim of %s kept", result.To, slot)
	}
	if !st.LastSlot.Equal(slot) {
		t.Errorf("stored position = %s, want %s", st.LastSlot, slot)
	}
	if strings.Contains(result.Unchanged, "--force") {
		t.Errorf("Unchanged = %q, want no --force hint, since force does not move it", result.Unchanged)
	}
}

func TestResetPositionKeepsEveryGrid(t *testing.T) {
	store := openStore(t, t.TempDir())
	job := shellJob("every", "true")
	job.Every = 7 * time.Minute
	// The store first saw the job when the clock read a day and 30 s
	// ahead, so every slot lies ahead.
	firstSeen := t0.Add(24*time.Hour + 30*time.Second)
	if _, err := store.EnsureJob("every", firstSeen); err != nil {
		t.Fatal(err)
	}
	st, _, _ := store.Job("every")
	if PositionAhead(job, st, t0) == 0 {
		t.Fatal("PositionAhead of a first sighting a day ahead is zero")
	}

	result, reset, err := ResetPosition(store, job, t0, false)
	if err != nil {
		t.Fatal(err)
	}
	if reset.FirstSeen.After(t0) {
		t.Errorf("first seen after the reset is %s, after the clock %s", reset.FirstSeen, t0)
	}
	if offset := firstSeen.Sub(reset.FirstSeen) % job.Every; offset != 0 {
		t.Errorf("first seen moved by %s, not by whole intervals of %s", firstSeen.Sub(reset.FirstSeen), job.Every)
	}
	if wait := result.Next.Sub(t0); wait <= 0 || wait > job.Every {
		t.Errorf("next slot after the reset is %s, want within %s after %s", result.Next, job.Every, t0)
	}
	if offset := firstSeen.Sub(result.Next) % job.Every; offset != 0 {
		t.Errorf("next slot %s is off the grid of %s every %s", result.Next, firstSeen, job.Every)
	}
}

func TestStatusShowsPositionAhead(t *testing.T) {
	store := openStore(t, t.TempDir())
	job := cronJob("minutely", "* * * * *")
	seedAhead(t, store, "minutely")
	st, _, _ := store.Job("minutely")

	status := StatusOf(job, st, false, time.Time{}, t0)
	if status.PositionAhead <= MaxPositionAhead || !status.Stale {
		t.Errorf("status of a position a day ahead has position_ahead %s and stale %v, want more than %s and stale", status.PositionAhead, status.Stale, MaxPositionAhead)
	}
	if !strings.Contains(status.StaleReason, "agent-runner reset minutely") {
		t.Errorf("stale reason %q lacks the reset command", status.StaleReason)
	}
	disabled := *job
	disabled.Enabled = false
	if status := StatusOf(&disabled, st, false, time.Time{}, t0); status.PositionAhead != 0 {
		t.Errorf("status of a disabled job has position_ahead %s, want 0", status.PositionAhead)
	}
}

// A reload applies the new schedule to the scheduler before the daemon's
// config changes, so a reset in between gets the job of the old config.
// The reset must still decide and plan by the schedule the scheduler
// runs, or the next slot it reports and stores is not the one that runs.
func TestSchedulerResetUsesReloadedSchedule(t *testing.T) {
	h := newSchedHarness(t, t0, cronJob("minutely", "* * * * *"))
	seedAhead(t, h.store, "minutely")
	h.start()
	defer h.stop()
	old := h.cfg.Jobs[0]
	h.applyCron(old, "0 * * * *")

	result, err := h.sched.Reset(old, false)
	if err != nil {
		t.Fatalf("Reset: %v", err)
	}
	wantNext := t0.Truncate(time.Hour).Add(time.Hour)
	if next, _ := h.sched.Next("minutely"); !next.Equal(wantNext) {
		t.Errorf("scheduler's next slot after the reset = %s, want %s", next, wantNext)
	}
	if !result.Next.Equal(wantNext) {
		t.Errorf("reset reported next slot %s, want %s of the reloaded schedule", result.Next, wantNext)
	}
	stored, _, err := h.store.Job("minutely")
	if err != nil {
		t.Fatal(err)
	}
	if !stored.NextRun.Equal(wantNext) {
		t.Errorf("stored next run after the reset = %s, want %s", stored.NextRun, wantNext)
	}
}

// A cluster node rejects reset, so its reason must not name the command.
func TestClusterAheadReasonNamesNoReset(t *testing.T) {
	st := state.JobState{Name: "tick", LastSlot: t0.Add(365 * 24 * time.Hour)}
	reason := ClusterAheadReason(st, 365*24*time.Hour)
	if strings.Contains(reason, "agent-runner reset") || !strings.Contains(reason, "365d ahead") {
		t.Errorf("ClusterAheadReason = %q, want the lead and no reset command", reason)
	}
}

// A clock more than about 292 years ahead saturates time.Time.Sub, and
// the reset of an every job must still bring its first sighting back to
// the clock.
func TestResetPositionCenturiesAhead(t *testing.T) {
	store := openStore(t, t.TempDir())
	job := shellJob("every", "true")
	job.Every = time.Minute
	if _, err := store.EnsureJob("every", t0.AddDate(300, 0, 0)); err != nil {
		t.Fatal(err)
	}

	result, reset, err := ResetPosition(store, job, t0, false)
	if err != nil {
		t.Fatalf("ResetPosition of a position 300 years ahead: %v", err)
	}
	if reset.FirstSeen.After(t0) || t0.Sub(reset.FirstSeen) >= job.Every {
		t.Errorf("first seen after the reset is %s, want within %s before %s", reset.FirstSeen, job.Every, t0)
	}
	if wait := result.Next.Sub(t0); wait <= 0 || wait > job.Every {
		t.Errorf("next slot after the reset is %s, want within %s after %s", result.Next, job.Every, t0)
	}
}

// An at job whose one slot ran while the clock was ahead holds back no
// slot: a reset would run it again.
func TestAtJobThatRanIsNotAhead(t *testing.T) {
	store := openStore(t, t.TempDir())
	job := shellJob("once", "true")
	job.At = t0.Add(2 * time.Hour)
	if _, err := store.EnsureJob("once", t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := store.Skip("once", job.At, state.TriggerSchedule, "ran while the clock was ahead", job.At, time.Time{}); err != nil {
		t.Fatal(err)
	}
	st, _, _ := store.Job("once")
	if status := StatusOf(job, st, false, time.Time{}, t0); status.PositionAhead != 0 || status.Stale {
		t.Errorf("status of an at job that ran has position_ahead %s and stale %v (%s), want 0 and not stale",
			status.PositionAhead, status.Stale, status.StaleReason)
	}

	result, _, err := ResetPosition(store, job, t0, false)
	if err != nil {
		t.Fatal(err)
	}
	if !result.To.IsZero() || !strings.Contains(result.Unchanged, "holds back no slot") {
		t.Errorf("ResetPosition of an at job that ran = %+v, want it unchanged as holding back no slot", result)
	}

	// Before its slot is claimed, a first sighting ahead does hold it.
	if _, err := store.EnsureJob("later", t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	later := shellJob("later", "true")
	later.At = t0.Add(2 * time.Hour)
	st, _, _ = store.Job("later")
	if PositionAhead(later, st, t0) == 0 {
		t.Error("PositionAhead of an unclaimed at job first seen after its slot is zero")
	}
}
