package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agent-runner/agent-runner/config"
)

// These tests check the harness's own arithmetic and generated files.
// None of them measures or asserts a time.

func TestPercentileNearestRank(t *testing.T) {
	samples := make([]time.Duration, 0, 100)
	for i := 100; i >= 1; i-- {
		samples = append(samples, time.Duration(i))
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{
		{50, 50},
		{99, 99},
		{100, 100},
		{0.1, 1},
	}
	for _, c := range cases {
		if got := Percentile(samples, c.p); got != c.want {
			t.Errorf("Percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if samples[0] != 100 {
		t.Errorf("Percentile reordered its input: first sample is %v, want 100", samples[0])
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil, 50) = %v, want 0", got)
	}
}

func TestSpreadOfEvenCount(t *testing.T) {
	s := SpreadOf([]float64{4, 1, 3, 2})
	if s.Median != 2.5 {
		t.Errorf("median = %v, want 2.5", s.Median)
	}
	if s.Min != 1 || s.Max != 4 {
		t.Errorf("min–max = %v–%v, want 1–4", s.Min, s.Max)
	}
	if s.Count != 4 {
		t.Errorf("count = %d, want 4", s.Count)
	}
}

func TestParseStraceSummary(t *testing.T) {
	text := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 97.52    0.021633         106       204           fdatasync
  2.48    0.000551         137         4         1 fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.022184         106       208         1 total
`
	counts, err := ParseStraceSummary(text)
	if err != nil {
		t.Fatal(err)
	}
	if counts["fdatasync"] != 204 {
		t.Errorf("fdatasync = %d, want 204", counts["fdatasync"])
	}
	if counts["fsync"] != 4 {
		t.Errorf("fsync = %d, want 4", counts["fsync"])
	}
	if _, ok := counts["total"]; ok {
		t.Error("the total line was counted as a system call")
	}
	if _, err := ParseStraceSummary("no table here"); err == nil {
		t.Error("a text without a header parsed without error")
	}
}

func TestPlanSlotsListsEverySlot(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 55, 300_000_000, time.UTC)
	window, expr, err := planSlots(now, DispatchOptions{Jobs: 10, Period: 4 * time.Second, Slots: 2, Warmup: true})
	if err != nil {
		t.Fatal(err)
	}
	// The first slot is the whole second after now+slotLead: 12:00:58,
	// the warm-up; then 12:01:02 and 12:01:06 are measured.
	if want := "2,6,58 * * * * *"; expr != want {
		t.Errorf("cron expression = %q, want %q", expr, want)
	}
	if want := time.Date(2026, 1, 1, 12, 1, 2, 0, time.UTC); !window.first.Equal(want) {
		t.Errorf("first measured slot = %v, want %v", window.first, want)
	}
	if !window.contains(time.Date(2026, 1, 1, 12, 1, 6, 0, time.UTC)) {
		t.Error("the last measured slot is outside the window")
	}
	if window.contains(time.Date(2026, 1, 1, 12, 0, 58, 0, time.UTC)) {
		t.Error("the warm-up slot is inside the window")
	}
	warmupRun := time.Date(2026, 1, 1, 12, 0, 59, 0, time.UTC)
	if got, want := window.slotBefore(warmupRun), time.Date(2026, 1, 1, 12, 0, 58, 0, time.UTC); !got.Equal(want) {
		t.Errorf("slotBefore(%v) = %v, want the warm-up slot %v", warmupRun, got, want)
	}
	if _, _, err := planSlots(now, DispatchOptions{Jobs: 1, Period: 30 * time.Second, Slots: 2, Warmup: true}); err == nil {
		t.Error("a plan of 90 seconds was accepted")
	}
}

func TestGeneratedConfigsLoad(t *testing.T) {
	scale, err := WriteScaleConfig(t.TempDir(), 10)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := WriteIdleConfig(t.TempDir(), 25, IdlePeers{
		IRCAddr: "127.0.0.1:6667", DiscordAPI: "http://127.0.0.1:8080/api/v10/", DiscordGateway: "ws://127.0.0.1:8080/gateway",
		DiscordToken: "token", PDSURL: "http://127.0.0.1:8081", PDSPassword: "password",
	})
	if err != nil {
		t.Fatal(err)
	}
	storm, err := WriteStormConfig(t.TempDir(), StormOptions{Jobs: 5, Spread: 30 * time.Second, MaxConcurrent: 8, Sleep: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	chat, err := WriteChatConfig(t.TempDir(), "127.0.0.1:6667", "127.0.0.1:9090")
	if err != nil {
		t.Fatal(err)
	}
	// The test runs in bench/, so the repository root is its parent.
	shipped, err := CopyShippedConfig("..", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A count of -1 is not checked: the shipped config changes with the
	// project.
	for _, c := range []struct {
		path      string
		jobs      int
		listeners int
	}{
		{scale, 10, 0},
		{idle, 25, 3},
		{storm, 5, 0},
		{chat, 0, 1},
		{shipped, -1, -1},
	} {
		cfg, err := config.Load(c.path)
		if err != nil {
			t.Errorf("load %s: %v", c.path, err)
			continue
		}
		for _, problem := range cfg.Problems() {
			t.Errorf("%s: %v", c.path, problem)
		}
		if c.jobs >= 0 && len(cfg.Jobs) != c.jobs {
			t.Errorf("%s has %d jobs, want %d", c.path, len(cfg.Jobs), c.jobs)
		}
		if c.listeners >= 0 && len(cfg.Listeners) != c.listeners {
			t.Errorf("%s has %d listeners, want %d", c.path, len(cfg.Listeners), c.listeners)
		}
	}
}

func TestListenerEventsReadsCounts(t *testing.T) {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# HELP agent_runner_listener_events_total Events the listener handled.
agent_runner_listener_events_total{listener="chat"} 1.2345e+06
agent_runner_listener_events_total{listener="chat2"} 7
agent_runner_listener_events_dropped_total{listener="chat"} 3
`)
	}))
	defer server.Close()

	handled, dropped, err := ListenerEvents(server.Client(), server.URL, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if handled != 1234500 {
		t.Errorf("handled = %d, want 1234500", handled)
	}
	if dropped != 3 {
		t.Errorf("dropped = %d, want 3", dropped)
	}
	if _, _, err := ListenerEvents(server.Client(), server.URL, "missing"); err == nil {
		t.Error("a listener without counts was read as zero events")
	}
}

func TestCountJSONLinesAcrossReads(t *testing.T) {
	text := strings.Repeat("{\"id\":1}\n", 100000) + "{\"partial\":"
	got, err := CountJSONLines(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got != 100000 {
		t.Errorf("CountJSONLines = %d, want 100000", got)
	}
}

// TestRuntimeSinceNoticesExitedThread ends a thread between two schedstat
// snapshots of this process: a goroutine that exits while locked to its
// thread takes the thread with it, unless that is the main thread. Two
// goroutines lock two threads, so one of them is not the main thread.
func TestRuntimeSinceNoticesExitedThread(t *testing.T) {
	var tids [2]int
	var locked sync.WaitGroup
	release := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	for i := range release {
		locked.Add(1)
		go func() {
			runtime.LockOSThread()
			tids[i] = syscall.Gettid()
			locked.Done()
			<-release[i]
		}()
	}
	locked.Wait()
	tid, exits, stays := tids[0], release[0], release[1]
	if tid == os.Getpid() {
		tid, exits, stays = tids[1], release[1], release[0]
	}
	defer close(stays)
	before, err := ReadRuntime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ReadRuntime(os.Getpid()); err != nil {
		t.Fatal(err)
	} else if _, err := again.Since(before); err != nil {
		t.Fatalf("Since with every thread alive: %v", err)
	}

	close(exits)
	threadDir := fmt.Sprintf("/proc/self/task/%d", tid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(threadDir); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still exists 10 s after its locked goroutine ended", tid)
		}
	}
	after, err := ReadRuntime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := after.Since(before); err == nil || !strings.Contains(err.Error(), fmt.Sprint(tid)) {
		t.Errorf("Since after thread %d exited = %v, want an error naming it", tid, err)
	}
}
