package config

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// wholeDecode is what decodeDocument must match.
func wholeDecode(data []byte) (map[string]any, error) {
	var values map[string]any
	err := toml.Unmarshal(data, &values)
	return values, err
}

// checkSameDecode fails t when decoding doc in parts of batch sections
// gives another result or error than one decode of the whole document.
func checkSameDecode(t *testing.T, doc string, batch int) {
	t.Helper()
	want, wantErr := wholeDecode([]byte(doc))
	got, err := decodeSections([]byte(doc), batch)
	switch {
	case wantErr != nil && err == nil:
		t.Fatalf("batch %d decoded a document that go-toml rejects (%v):\n%s\ngot %v", batch, wantErr, doc, got)
	case wantErr == nil && err != nil:
		t.Fatalf("batch %d rejected a document that go-toml decodes: %v\n%s", batch, err, doc)
	case wantErr != nil && err.Error() != wantErr.Error():
		t.Fatalf("batch %d error = %v, want go-toml's %v\n%s", batch, err, wantErr, doc)
	case !reflect.DeepEqual(got, want):
		t.Fatalf("batch %d decoded\n%s\nas %v, want %v", batch, doc, got, want)
	}
}

func TestDecodeInPartsMatchesWholeDecode(t *testing.T) {
	docs := []string{
		// Jobs as config files have them.
		"[runner]\nstate_dir = \"s\"\n[jobs.a]\nevery = \"1m\"\n[jobs.b]\nevery = \"2m\"\n[jobs.c]\nenv = { A = \"1\" }\n[jobs.d]\n",
		// A table defined twice, in different parts.
		"[jobs.a]\n[jobs.b]\n[jobs.c]\n[jobs.a]\n",
		// A super-table defined after its sub-tables.
		"[a.b.c]\n[a.b.d]\n[x]\n[a]\nk = 1\n[a.e]\n",
		// Dotted keys and headers that extend the same table.
		"[x]\ny.z = 1\n[p]\n[q]\n[x.y.w]\n",
		"[x.y.w]\n[p]\n[q]\n[x]\ny.k = 1\n",
		// Inline tables cannot be extended.
		"[a]\nb = { c = 1 }\n[p]\n[q]\n[a.b.d]\n",
		// Arrays of tables across parts.
		"[[a]]\nx = 1\n[[a]]\nx = 2\n[[a]]\nx = 3\n[a.b]\ny = 1\n[[a.c]]\n",
		"[[a]]\n[a.b]\n[[a]]\n[p]\n[a.b]\n",
		"a = [1]\n[p]\n[q]\n[r]\n[[a]]\n",
		"[a]\n[p]\n[q]\n[[a]]\n",
		"[[a]]\n[p]\n[q]\n[a]\n",
		// A key set twice through a header.
		"[a]\nb = 1\n[p]\n[q]\n[a.b]\n",
		// Syntax errors in a later part.
		"[a]\n[b]\n[c]\n[d]\nx = \n",
		// Headers indented, after comments, and inside strings.
		"x = \"\"\"\n[jobs.a]\n\"\"\"\n  [jobs.b]\n# [jobs.c]\n[jobs.c]\n\t[jobs.d]\n",
		"[jobs.\"a b\"]\n[jobs.'c']\n[ jobs . d ]\n[jobs.e]\r\nk = 1\r\n",
	}
	for _, doc := range docs {
		for _, batch := range []int{1, 2} {
			checkSameDecode(t, doc, batch)
		}
	}
}

// TestDecodeInPartsMatchesRandomDocuments compares the decode in parts
// with go-toml's whole decode on random documents built from headers,
// dotted keys, inline tables and arrays over a few names, so that tables
// collide across parts in every way these allow.
func TestDecodeInPartsMatchesRandomDocuments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		doc := randomDocument(rng)
		for _, batch := range []int{1, 2} {
			checkSameDecode(t, doc, batch)
		}
	}
}

func randomDocument(rng *rand.Rand) string {
	names := []string{"a", "b", "c"}
	path := func() string {
		parts := make([]string, 1+rng.IntN(3))
		for i := range parts {
			parts[i] = names[rng.IntN(len(names))]
		}
		return strings.Join(parts, ".")
	}
	var b strings.Builder
	for range 1 + rng.IntN(10) {
		switch rng.IntN(7) {
		case 0, 1:
			fmt.Fprintf(&b, "[%s]\n", path())
		case 2:
			fmt.Fprintf(&b, "[[%s]]\n", path())
		case 3:
			fmt.Fprintf(&b, "%s = %d\n", path(), rng.IntN(9))
		case 4:
			fmt.Fprintf(&b, "%s = { %s = 1 }\n", path(), names[rng.IntN(len(names))])
		case 5:
			fmt.Fprintf(&b, "%s = [1, 2]\n", path())
		default:
			fmt.Fprintf(&b, "%s = [{ %s = 1 }]\n", path(), names[rng.IntN(len(names))])
		}
	}
	return b.String()
}

func FuzzDecodeInParts(f *testing.F) {
	f.Add("[a]\n[b]\n[c]\n[a.d]\n")
	f.Add("[[a]]\n[a.b]\n[[a]]\n[a.b]\n")
	f.Add("[x]\ny.z = 1\n[p]\n[x.y.w]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		checkSameDecode(t, doc, 1)
	})
}

// TestDecodeInPartsTakesManyJobs checks that a config of many jobs is
// decoded in parts rather than falling back to the whole decode.
func TestDecodeInPartsTakesManyJobs(t *testing.T) {
	var b strings.Builder
	b.WriteString("[runner]\nstate_dir = \"state\"\n\n[defaults]\ntimeout = \"1m\"\n\n")
	for i := range 3 * sectionBatch {
		fmt.Fprintf(&b, "[jobs.job-%04d]\ncommand = [\"true\"]\nevery = \"1m\"\nenv = { N = \"%d\" }\n\n", i, i)
	}
	data := []byte(b.String())
	got, ok := scanDocument(data).decodeInParts(sectionBatch)
	if !ok {
		t.Fatal("a config of many jobs fell back to the whole decode")
	}
	want, err := wholeDecode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("the decode in parts differs from the whole decode")
	}
}

// TestLoadManyJobsReportsDuplicateTable checks that a config of many
// jobs, decoded in parts, still names both lines of a table defined
// twice.
func TestLoadManyJobsReportsDuplicateTable(t *testing.T) {
	var b strings.Builder
	for i := range 3 * sectionBatch {
		fmt.Fprintf(&b, "[jobs.job-%04d]\ncommand = [\"true\"]\nevery = \"1m\"\n\n", i)
	}
	b.WriteString("[jobs.job-0001]\ncommand = [\"true\"]\n")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.toml": b.String()})
	_, err := Load(filepath.Join(dir, "config.toml"))
	want := fmt.Sprintf("config.toml:%d: jobs.job-0001: duplicate table: [jobs.job-0001] is already defined on line 5", 4*3*sectionBatch+1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("load error = %v, want one that contains %q", err, want)
	}
}
