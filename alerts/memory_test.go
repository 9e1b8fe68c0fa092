package alerts

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// sentinels numbers the sentinels of runWithMemory, since a sentinel
// repeated across starts would fall within its own cooldown.
var sentinels atomic.Int32

// runWithMemory runs a dispatcher of one recording sink named "fake" with
// the memory file at path, notifies each of notify and then a sentinel,
// and stops the dispatcher once the sentinel arrives. It returns the
// alerts the sink got before the sentinel.
func runWithMemory(t *testing.T, path string, notify ...Alert) []Alert {
	t.Helper()
	log, _ := newTestLogger()
	sink := newRecordingSink("fake")
	d := newTestDispatcher([]SinkConfigured{{Sink: sink, Config: SinkConfig{Cooldown: time.Hour}}}, log)
	d.Remember(OpenMemory(path, log))
	stop := startDispatcher(t, d)
	for _, a := range notify {
		d.Notify(a)
	}
	last := sentinel(int(sentinels.Add(1)))
	d.Notify(last)
	var got []Alert
	for a := sink.next(t); a.Key != last.Key; a = sink.next(t) {
		got = append(got, a)
	}
	stop()
	return got
}

func TestMemoryCooldownAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	first := runWithMemory(t, path, failedAlert("digest", base))
	if len(first) != 1 {
		t.Fatalf("first start: got %d alerts, want the failure", len(first))
	}

	second := runWithMemory(t, path, failedAlert("digest", base.Add(10*time.Minute)))
	if len(second) != 0 {
		t.Errorf("second start: got %+v, want the repeat within the cooldown suppressed", second)
	}

	third := runWithMemory(t, path, failedAlert("digest", base.Add(61*time.Minute)))
	if len(third) != 1 {
		t.Fatalf("third start: got %d alerts, want the failure after the cooldown", len(third))
	}
	expectAlert(t, third[0], "job:digest", EventFailed, 1)
}

func TestMemoryRecoveryAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	runWithMemory(t, path, failedAlert("digest", base))

	recovered := failedAlert("digest", base.Add(time.Minute))
	recovered.Event = EventRecovered
	got := runWithMemory(t, path, recovered)
	if len(got) != 1 {
		t.Fatalf("after restart: got %d alerts, want the recovery of the failure alerted before", len(got))
	}
	expectAlert(t, got[0], "job:digest", EventRecovered, 0)

	log, _ := newTestLogger()
	if alerted := OpenMemory(path, log).Alerted(); alerted["job:digest"] {
		t.Errorf("alerted keys after the recovery: got %v, want job:digest cleared", alerted)
	}
}

func TestMemoryDamagedFileStartsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"sinks":{"fake":`), 0o600); err != nil {
		t.Fatal(err)
	}
	log, buf := newTestLogger()
	memory := OpenMemory(path, log)
	if alerted := memory.Alerted(); len(alerted) != 0 {
		t.Errorf("alerted keys: got %v, want none from a damaged file", alerted)
	}
	if want := "read alert memory failed"; !strings.Contains(buf.String(), want) {
		t.Errorf("log: got %q, want it to contain %q", buf.String(), want)
	}

	// The first change replaces the damaged file.
	got := runWithMemory(t, path, failedAlert("digest", base))
	if len(got) != 1 {
		t.Fatalf("got %d alerts, want the failure", len(got))
	}
	if alerted := OpenMemory(path, log).Alerted(); !alerted["job:digest"] {
		t.Errorf("alerted keys after a failure: got %v, want job:digest", alerted)
	}
}

func TestMemoryDropsRemovedSink(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	runWithMemory(t, path, failedAlert("digest", base))

	log, _ := newTestLogger()
	d := newTestDispatcher([]SinkConfigured{{Sink: newRecordingSink("other")}}, log)
	memory := OpenMemory(path, log)
	d.Remember(memory)
	memory.Flush()
	if alerted := OpenMemory(path, log).Alerted(); len(alerted) != 0 {
		t.Errorf("alerted keys: got %v, want none once sink fake is gone", alerted)
	}
}

func TestMemoryRemovesLeftoverTempFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	leftover := path + tmpSuffix + "123"
	if err := os.WriteFile(leftover, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	log, _ := newTestLogger()
	OpenMemory(path, log)
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("stat of the leftover temporary file: got %v, want it removed", err)
	}
}

// TestMemoryFlushRetriesFailedWrite fails the timer's write of the memory
// file, then lets writes work again. The Flush at the end of Run still
// writes the change, so a restart keeps it.
func TestMemoryFlushRetriesFailedWrite(t *testing.T) {
	folder := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(folder, "alerts.json")
	log, _ := newTestLogger()
	memory := OpenMemory(path, log)
	memory.update("fake", "job:digest", &keyState{alerted: true, events: map[string]*eventState{}})

	// The folder is missing, so this write fails.
	memory.Flush()
	if err := os.Mkdir(folder, 0o700); err != nil {
		t.Fatal(err)
	}
	memory.Flush()

	if alerted := OpenMemory(path, log).Alerted(); !alerted["job:digest"] {
		t.Errorf("memory file after a failed write and a final Flush has alerted keys %v, want job:digest", alerted)
	}
}

func TestMemoryForgetDropsRejectedKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.json")
	runWithMemory(t, path, failedAlert("digest", base), failedAlert("gone", base))

	log, _ := newTestLogger()
	memory := OpenMemory(path, log)
	memory.Forget(func(key string) bool { return key != "job:gone" })
	memory.Flush()
	alerted := OpenMemory(path, log).Alerted()
	if !alerted["job:digest"] {
		t.Errorf("alerted keys %v, want job:digest kept", alerted)
	}
	if alerted["job:gone"] {
		t.Errorf("alerted keys %v, want job:gone forgotten", alerted)
	}
}
