package state

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkClaimFinish measures one Claim and one Finish, two fsynced
// bbolt commits, on a store in a temporary folder.
func BenchmarkClaimFinish(b *testing.B) {
	store, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if _, err := store.EnsureJob("bench", testStart); err != nil {
		b.Fatal(err)
	}

	slot := slotAt(0)
	for b.Loop() {
		slot = slot.Add(time.Minute)
		run, err := store.Claim(Run{Job: "bench", Trigger: TriggerSchedule, Slot: slot, Start: time.Now()}, slot.Add(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		run.Result = ResultOK
		run.Finish = time.Now()
		run.Duration = run.Finish.Sub(run.Start)
		run.Output = "done\n"
		if err := store.Finish(run); err != nil {
			b.Fatal(err)
		}
	}
}
