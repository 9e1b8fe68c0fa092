package state

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// encodeStrings covers what encoding/json escapes: quotes, backslashes,
// control characters, HTML characters, line and paragraph separators and
// invalid UTF-8.
var encodeStrings = []string{
	"", "nightly-report", "manual", "exit status 1",
	`say "hi"`, `C:\path`, "line one\nline two\ttab\r", "\x00\x1f\x7f",
	"<b>&amp;</b>", "héllo wörld ✓", "\u2028\u2029", "bad \xff\xfe utf-8",
	"emoji 🙂 and \U0010FFFF",
}

func encodeTimes(r *rand.Rand) []time.Time {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.FixedZone("CET", 3600)
	}
	base := time.Date(2026, 12, 5, 2, 30, 0, 0, time.UTC)
	return []time.Time{
		{},
		base,
		base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))),
		base.Add(123456789 * time.Nanosecond),
		base.Add(100 * time.Millisecond),
		base.In(berlin),
		base.In(time.FixedZone("odd", 5*3600+30*60)),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Now(), // carries a monotonic reading and the local zone
	}
}

// recordMaker builds run and job records from a mix of the strings and
// times above.
type recordMaker struct {
	r     *rand.Rand
	times []time.Time
}

func newRecordMaker(seed uint64) recordMaker {
	r := rand.New(rand.NewPCG(seed, seed+1))
	return recordMaker{r: r, times: encodeTimes(r)}
}

func (m recordMaker) str() string     { return encodeStrings[m.r.IntN(len(encodeStrings))] }
func (m recordMaker) time() time.Time { return m.times[m.r.IntN(len(m.times))] }

func (m recordMaker) run() Run {
	return Run{
		ID: m.str(), Job: m.str(), Trigger: m.str(), Slot: m.time(), Start: m.time(), Finish: m.time(),
		Result: m.str(), ExitCode: m.r.IntN(512) - 256, Duration: time.Duration(m.r.Int64() - m.r.Int64()),
		Error: m.str(), Output: m.str(),
	}
}

func (m recordMaker) job() JobState {
	return JobState{
		Name: m.str(), FirstSeen: m.time(), LastSlot: m.time(), Running: m.r.IntN(2) == 0,
		LastStart: m.time(), LastFinish: m.time(), LastResult: m.str(), LastExitCode: m.r.IntN(256),
		LastDuration: time.Duration(m.r.Int64N(1e12)), LastError: m.str(), LastSuccess: m.time(),
		ConsecutiveFailures: m.r.IntN(10), NextRun: m.time(),
	}
}

func TestEncodersMatchEncodingJSON(t *testing.T) {
	m := newRecordMaker(1)
	for range 2000 {
		run := m.run()
		sameJSON(t, run, encodeRun)
		sameJSON(t, m.job(), encodeJob)
		op := entryClaim
		if m.r.IntN(2) == 0 {
			op = entryFinish
		}
		sameJSON(t, logEntry{Op: op, Run: run, Next: m.time()}, encodeEntry)
	}
}

func TestEncodersRefuseWhatEncodingJSONRefuses(t *testing.T) {
	bad := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := encodeRun(Run{ID: "1", Start: bad}); err == nil {
		t.Error("encodeRun accepted year 10000")
	}
	if _, err := encodeJob(JobState{Name: "a", NextRun: bad}); err == nil {
		t.Error("encodeJob accepted year 10000")
	}
	if _, err := encodeEntry(logEntry{Op: entryClaim, Next: bad}); err == nil {
		t.Error("encodeEntry accepted year 10000")
	}
}

func sameJSON[T any](t *testing.T, value T, encode func(T) ([]byte, error)) {
	t.Helper()
	want, wantErr := json.Marshal(value)
	got, err := encode(value)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("encode %+v: error %v, json.Marshal error %v", value, err, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encode %+v:\n got %s\nwant %s", value, got, want)
	}
}

func TestDecodersMatchEncodingJSON(t *testing.T) {
	m := newRecordMaker(3)
	for range 2000 {
		if data, err := encodeRun(m.run().inUTC()); err == nil {
			sameDecoding(t, data, unmarshalRun)
			sameDecoding(t, mutate(m.r, data), unmarshalRun)
		}
		if data, err := encodeJob(m.job().inUTC()); err == nil {
			sameDecoding(t, data, unmarshalJob)
			sameDecoding(t, mutate(m.r, data), unmarshalJob)
		}
	}
	for _, data := range []string{
		`{}`, `{"id":"1"}`, `{"ID":"1"}`, `{"id":"1","id":"2"}`, `{"id":null}`, `{"exit_code":-0}`,
		`{"exit_code":01}`, `{"exit_code":1e3}`, `{"exit_code":99999999999999999999}`, `{"duration":-5}`,
		`{"start":"2026-02-30T00:00:00Z"}`, `{"start":"2026-01-01T24:00:00Z"}`, `{"start":"2026-01-01T00:00:00.Z"}`,
		`{"start":"2026-01-01T00:00:00.1234567890Z"}`, `{"start":"2026-01-01T00:00:00+01:00"}`, `{"start":""}`,
		`{"id":"1"} `, ` {"id":"1"}`, `{"id":"1",}`, `{"id" :"1"}`, `{"extra":{"a":1}}`, `{"running":true}`,
		`{"running":"true"}`, `{"name":"a","running":nope}`, `{"name":"\u0041"}`, `{"`,
	} {
		sameDecoding(t, []byte(data), unmarshalRun)
		sameDecoding(t, []byte(data), unmarshalJob)
	}
}

// mutate returns a copy of data with one byte replaced by one that is
// likely to matter to a JSON reader.
func mutate(r *rand.Rand, data []byte) []byte {
	out := bytes.Clone(data)
	out[r.IntN(len(out))] = `"\:,{}0123456789-eZT. x`[r.IntN(23)]
	return out
}

func sameDecoding[T any](t *testing.T, data []byte, decode func([]byte, *T) error) {
	t.Helper()
	var want, got T
	wantErr := json.Unmarshal(data, &want)
	err := decode(data, &got)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decode %s: error %v, json.Unmarshal error %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decode %s:\n got %+v\nwant %+v", data, got, want)
	}
}

func TestPlainRecordsTakeTheDirectPath(t *testing.T) {
	at := time.Date(2026, 12, 5, 2, 30, 0, 123000000, time.UTC)
	run := Run{ID: "42", Job: "nightly-report", Trigger: "schedule", Slot: at, Start: at, Finish: at.Add(time.Second),
		Result: ResultFailed, ExitCode: -1, Duration: time.Second, Error: "exit status 1", Output: "done"}
	job := JobState{Name: "nightly-report", FirstSeen: at, LastSlot: at, Running: true, LastStart: at,
		LastFinish: at, LastResult: ResultOK, LastExitCode: 3, LastDuration: time.Minute, LastError: "x",
		LastSuccess: at, ConsecutiveFailures: 2, NextRun: at.Add(time.Hour)}
	runData, _ := encodeRun(run)
	if got, ok := decodeRunFast(runData); !ok || !reflect.DeepEqual(got, run) {
		t.Errorf("decodeRunFast(%s) = %+v, %v; want %+v, true", runData, got, ok, run)
	}
	jobData, _ := encodeJob(job)
	if got, ok := decodeJobFast(jobData); !ok || !reflect.DeepEqual(got, job) {
		t.Errorf("decodeJobFast(%s) = %+v, %v; want %+v, true", jobData, got, ok, job)
	}
}

func TestIsRunningReadsResultNotOutput(t *testing.T) {
	tricky := `"result":"running"` + "\n" + `{"result":"ok"}`
	for _, result := range []string{ResultRunning, ResultOK, ResultFailed, ResultInterrupted} {
		for _, output := range []string{"", "plain", tricky} {
			run := Run{ID: "7", Job: "j", Trigger: TriggerManual, Start: time.Unix(0, 0).UTC(), Result: result, Output: output, Error: output}
			data, err := encodeRun(run)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := isRunning(data), result == ResultRunning; got != want {
				t.Errorf("isRunning(%s) = %t, want %t", data, got, want)
			}
		}
	}
	for _, data := range []string{`{"result": "running"}`, `{"Result":"running"}`} {
		if !isRunning([]byte(data)) {
			t.Errorf("isRunning(%s) = false, want true from encoding/json", data)
		}
	}
	if isRunning([]byte(`{"result":"running"`)) {
		t.Error("isRunning of a truncated record = true, want false")
	}
}
