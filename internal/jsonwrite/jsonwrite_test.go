package jsonwrite

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var stringSeeds = []string{
	"",
	"plain ascii",
	"quote \" backslash \\ slash /",
	"<script>&amp;</script>",
	"\x00\x01\b\f\n\r\t\x1f\x7f",
	"emoji 😀 and accents é ñ",
	"line\u2028and\u2029paragraph",
	"invalid \xff\xfe utf-8 \xc3",
	"truncated \xe2\x82",
	"\xed\xa0\x80 surrogate half",
	strings.Repeat("a", 300) + "\n",
}

func TestStringMatchesMarshal(t *testing.T) {
	for _, s := range stringSeeds {
		checkString(t, s)
	}
	for c := range 256 {
		checkString(t, "x"+string(rune(c))+"y")
		checkString(t, "x"+string([]byte{byte(c)})+"y")
	}
}

func FuzzStringMatchesMarshal(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add(s)
	}
	f.Fuzz(checkString)
}

func checkString(t *testing.T, s string) {
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := String([]byte("prefix "), s); string(got) != "prefix "+string(want) {
		t.Fatalf("String(%q) = %s, want %s", s, got[len("prefix "):], want)
	}
}

func TestTimeMatchesMarshalJSON(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	times := []time.Time{
		{},
		time.Date(2026, 12, 5, 9, 30, 0, 0, time.UTC),
		time.Date(2026, 12, 5, 9, 30, 0, 123456789, time.UTC),
		time.Date(2026, 12, 5, 9, 30, 0, 120000000, berlin),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	for _, ts := range times {
		want, err := ts.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Time(nil, ts)
		if err != nil {
			t.Errorf("Time(%v): %v", ts, err)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("Time(%v) = %s, want %s", ts, got, want)
		}
	}
}

func TestTimeRejectsWhatMarshalJSONRejects(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if _, err := ts.MarshalJSON(); err == nil {
			t.Fatalf("MarshalJSON accepted %v; this test needs a time it rejects", ts)
		}
		if got, err := Time(nil, ts); err == nil {
			t.Errorf("Time(%v) = %s, want MarshalJSON's error", ts, got)
		}
	}
}
