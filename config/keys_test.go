package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// deepKeyParts is the number of parts of the dotted table header in
// deepHeaderFile: 100,000 bytes of TOML.
const deepKeyParts = 50000

// deepHeaderFile writes an included file whose one table header has
// deepKeyParts parts and returns the main config file that includes it.
func deepHeaderFile(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	header := "[jobs." + strings.Repeat("a.", deepKeyParts-1) + "a]\n"
	writeFiles(t, dir, map[string]string{
		"config.toml":        "include = [\"conf.d/*.toml\"]\n",
		"conf.d/deep.toml":   header,
		"conf.d/normal.toml": "[jobs.normal]\ncommand = [\"true\"]\nevery = \"1h\"\n",
	})
	return filepath.Join(dir, "config.toml")
}

// allocatedBytes returns the bytes that run allocates on the heap.
func allocatedBytes(run func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	run()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDeepKeyMemory loads a 100 KB file with a 50,000-part table header.
// Indexing the line of every prefix as a joined string allocated about
// 2.5 GB for it, which is quadratic in the number of parts.
func TestDeepKeyMemory(t *testing.T) {
	file := deepHeaderFile(t)
	var err error
	allocated := allocatedBytes(func() { _, err = Load(file) })
	if err == nil || !strings.Contains(err.Error(), "jobs.a.a: unknown key") {
		t.Errorf("got error %v, want the unknown key a in job a", err)
	}
	// go-toml alone allocates about 30 MB to decode the file into maps,
	// and Load about 62 MB in all (go-toml v2.4.3, amd64). The bound
	// leaves room for that and fails long before quadratic growth.
	const bound = 128 << 20
	if allocated > bound {
		t.Errorf("Load allocated %d MB, want at most %d MB", allocated>>20, bound>>20)
	}
}

func BenchmarkLoadDeepKey(b *testing.B) {
	file := deepHeaderFile(b)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Load(file)
	}
}

func TestHeaderIndexMatchesKeyIndex(t *testing.T) {
	files := []string{"../config.toml"}
	err := filepath.WalkDir("testdata", func(path string, _ fs.DirEntry, err error) error {
		if strings.HasSuffix(path, ".toml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		keys := indexKeyLines(data)
		for id, line := range indexHeaders(data) {
			path := keyPath(strings.Split(id, "\x00"))
			if want := keys.line(path); line != want {
				t.Errorf("%s: header [%s] on line %d, key index says %d", file, path, line, want)
			}
		}
	}
}

func TestHeaderIndexTrickyDocument(t *testing.T) {
	data := []byte("# [jobs.comment]\r\n[jobs.\"quoted name\"]\r\ncommand = ['''\n[jobs.inside]\n''']\n\n" +
		"[[alerts.list]]\nx = 1\n[[alerts.list]]\n[ jobs . 'spaced' ]\n")
	want := map[string]int{
		pathID(keyPath{"jobs", "quoted name"}): 2,
		pathID(keyPath{"alerts", "list"}):      7,
		pathID(keyPath{"jobs", "spaced"}):      10,
	}
	got := indexHeaders(data)
	if len(got) != len(want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	keys := indexKeyLines(data)
	for id, line := range want {
		if got[id] != line {
			t.Errorf("header %q on line %d, want %d", id, got[id], line)
		}
		if fromKeys := keys.line(keyPath(strings.Split(id, "\x00"))); fromKeys != line {
			t.Errorf("key index puts %q on line %d, want %d", id, fromKeys, line)
		}
	}
}
