package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeFiles writes each name → content pair below dir, creating folders.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIncludeMergesTables(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// "*.toml" matches the main file too, which is skipped.
		"config.toml": `include = ["conf.d/*.toml", "absent/*.toml", "*.toml", "extra.toml"]

[defaults]
timeout = "7m"

[jobs.main]
command = ["true"]
every = "1h"
on_success = ["b-job"]
`,
		"conf.d/20-b.toml":  "[jobs.b-job]\ncommand = [\"true\"]\nevery = \"1h\"\nworking_dir = \"work\"\n",
		"conf.d/10-a.toml":  "[listeners.a-listener]\nkind = \"exec\"\ncommand = [\"true\"]\n\n[alerts.a-sink]\nkind = \"exec\"\ncommand = [\"true\"]\n",
		"conf.d/notes.txt":  "not matched",
		"conf.d/sub.toml/x": "a folder that the pattern matches is skipped",
		"extra.toml":        "[jobs.extra]\ncommand = [\"true\"]\nevery = \"2h\"\n",
		"work/.keep":        "",
	})
	file := filepath.Join(dir, "config.toml")
	cfg, err := Load(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	wantFiles := []string{file, filepath.Join(dir, "conf.d/10-a.toml"), filepath.Join(dir, "conf.d/20-b.toml"), filepath.Join(dir, "extra.toml")}
	if !slices.Equal(cfg.Files, wantFiles) {
		t.Errorf("files = %q, want %q", cfg.Files, wantFiles)
	}
	var jobs []string
	for _, job := range cfg.Jobs {
		jobs = append(jobs, job.Name)
	}
	if want := []string{"b-job", "extra", "main"}; !slices.Equal(jobs, want) {
		t.Errorf("jobs = %q, want %q", jobs, want)
	}
	job := cfg.Job("b-job")
	if job.Timeout.String() != "7m0s" {
		t.Errorf("included job timeout = %s, want 7m0s from [defaults] of the main file", job.Timeout)
	}
	if want := filepath.Join(dir, "work"); job.WorkingDir != want {
		t.Errorf("included job working_dir = %s, want %s, relative to the main file", job.WorkingDir, want)
	}
	if job.Line != 1 {
		t.Errorf("included job line = %d, want 1", job.Line)
	}
	if cfg.Listener("a-listener") == nil {
		t.Errorf("the included listener is missing")
	}
	if len(cfg.Alerts) != 1 || cfg.Alerts[0].Name != "a-sink" {
		t.Errorf("alerts = %v, want the included a-sink", cfg.Alerts)
	}
}

func TestIncludeHash(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	main := "include = [\"conf.d/*.toml\"]\n\n[jobs.main]\ncommand = [\"true\"]\nevery = \"1h\"\n"
	writeFiles(t, dir, map[string]string{"config.toml": main})

	load := func() string {
		t.Helper()
		cfg, err := Load(file)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		fingerprint, err := Fingerprint(file)
		if err != nil {
			t.Fatalf("fingerprint: %v", err)
		}
		if fingerprint != cfg.Hash {
			t.Errorf("fingerprint %s differs from the loaded hash %s", fingerprint, cfg.Hash)
		}
		return cfg.Hash
	}
	alone := load()
	sum := sha256.Sum256([]byte(main))
	if want := hex.EncodeToString(sum[:]); alone != want {
		t.Errorf("hash without included files = %s, want the file's SHA-256 %s", alone, want)
	}
	writeFiles(t, dir, map[string]string{"conf.d/a.toml": "[jobs.a]\ncommand = [\"true\"]\nevery = \"1h\"\n"})
	added := load()
	if added == alone {
		t.Errorf("adding an included file kept the hash")
	}
	writeFiles(t, dir, map[string]string{"conf.d/a.toml": "[jobs.a]\ncommand = [\"true\"]\nevery = \"2h\"\n"})
	if load() == added {
		t.Errorf("editing an included file kept the hash")
	}
	if err := os.Remove(filepath.Join(dir, "conf.d/a.toml")); err != nil {
		t.Fatal(err)
	}
	if load() != alone {
		t.Errorf("removing the included file did not restore the first hash")
	}
}

func TestIncludeMachineProblemNamesFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"config.toml":     "include = [\"conf.d/*.toml\"]\n",
		"conf.d/bad.toml": "\n[jobs.gone]\ncommand = [\"./missing.sh\"]\nevery = \"1h\"\n",
	})
	cfg, err := Load(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	problems := cfg.Problems()
	if len(problems) != 1 {
		t.Fatalf("problems = %v, want one", problems)
	}
	want := filepath.Join(dir, "conf.d/bad.toml") + ":3: jobs.gone.command: command"
	if got := problems[0].Error(); !strings.HasPrefix(got, want) {
		t.Errorf("problem = %q, want it to start with %q", got, want)
	}
}

func TestIncludeProblemsSortMainFirst(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// "conf.d" sorts before "config.toml" by name, but the main file's
		// problems come first.
		"config.toml":   "include = [\"conf.d/*.toml\"]\n\n[jobs.main]\ncommand = [\"true\"]\nevery = \"x\"\n",
		"conf.d/a.toml": "[jobs.a]\ncommand = [\"true\"]\nevery = \"y\"\n",
	})
	_, err := Load(filepath.Join(dir, "config.toml"))
	if err == nil {
		t.Fatal("load succeeded, want problems")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 {
		t.Fatalf("problems = %q, want two", lines)
	}
	if !strings.Contains(lines[0], "config.toml:5: jobs.main.every") {
		t.Errorf("first problem = %q, want the main file's", lines[0])
	}
	if !strings.Contains(lines[1], "a.toml:3: jobs.a.every") {
		t.Errorf("second problem = %q, want the included file's", lines[1])
	}
}

func TestIncludeUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.toml": "include = [\n  \"conf.d/*.toml\",\n]\n"})
	// A dangling link fails to read even for root, which ignores modes.
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(dir, "conf.d", "gone.toml")
	if err := os.Symlink(filepath.Join(dir, "nowhere.toml"), gone); err != nil {
		t.Fatal(err)
	}
	_, err := Load(filepath.Join(dir, "config.toml"))
	want := filepath.Join(dir, "config.toml") + ":2: include: read included file: " + gone + ": no such file or directory"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("load error = %v, want it to start with %q", err, want)
	}
}

func TestIncludeSkipsHiddenAndBackups(t *testing.T) {
	dir := t.TempDir()
	job := func(name string) string { return "[jobs." + name + "]\ncommand = [\"true\"]\nevery = \"1h\"\n" }
	writeFiles(t, dir, map[string]string{
		"config.toml":        `include = ["conf.d/*.toml*", "extra/.*.toml"]` + "\n",
		"conf.d/20-x.toml":   job("x"),
		"conf.d/.20-x.toml":  job("x"),
		"conf.d/20-x.toml~":  job("x"),
		"extra/.dotted.toml": job("dotted"),
	})
	file := filepath.Join(dir, "config.toml")
	hashBefore, err := Fingerprint(file)
	if err != nil {
		t.Fatal(err)
	}
	// Emacs keeps this dangling link beside a file it edits.
	if err := os.Symlink("user@host.12345:1733300000", filepath.Join(dir, "conf.d/.#20-x.toml")); err != nil {
		t.Fatal(err)
	}

	cfg, err := Load(file)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	want := []string{file, filepath.Join(dir, "conf.d/20-x.toml"), filepath.Join(dir, "extra/.dotted.toml")}
	if !slices.Equal(cfg.Files, want) {
		t.Errorf("files = %q, want %q", cfg.Files, want)
	}
	if hash, err := Fingerprint(file); err != nil || hash != hashBefore {
		t.Errorf("Fingerprint after the lock link appeared = %q, %v, want %q", hash, err, hashBefore)
	}
}

func TestIncludeAfterTableHinted(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"config.toml": "[jobs.sleeper]\ncommand = [\"true\"]\nevery = \"1h\"\ninclude = [\"conf.d/*.toml\"]\n",
	})
	_, err := Load(filepath.Join(dir, "config.toml"))
	want := filepath.Join(dir, "config.toml") + ":4: jobs.sleeper.include: unknown key: include is a top-level key: move it above the first table"
	if err == nil || err.Error() != want {
		t.Errorf("got error %v, want %q", err, want)
	}
}

// TestIncludeUnreadableFolder checks that a folder that an include
// pattern cannot list is an error and changes the fingerprint, where
// filepath.Glob alone would match nothing in it and drop its jobs. A
// symbolic link to itself makes the folder unreadable for root too, and
// a folder of mode 0 does so for other users.
func TestIncludeUnreadableFolder(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
		spoil   func(t *testing.T, folder string) error
	}{
		{"link loop", "conf.d/*.toml", func(t *testing.T, folder string) error { return os.Symlink(folder, folder) }},
		{"link loop under a wildcard", "*.d/*.toml", func(t *testing.T, folder string) error { return os.Symlink(folder, folder) }},
		{"link loop above a file", "conf.d/a.toml", func(t *testing.T, folder string) error { return os.Symlink(folder, folder) }},
		{"mode 0", "conf.d/*.toml", func(t *testing.T, folder string) error {
			if os.Geteuid() == 0 {
				t.Skip("root reads a folder of mode 0")
			}
			if err := os.Mkdir(folder, 0o700); err != nil {
				return err
			}
			return os.Chmod(folder, 0)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "config.toml")
			writeFiles(t, dir, map[string]string{
				"config.toml": "include = [\"" + c.pattern + "\"]\n\n[jobs.main]\ncommand = [\"true\"]\nevery = \"1h\"\n",
			})
			withoutFolder, err := Fingerprint(file)
			if err != nil {
				t.Fatal(err)
			}
			folder := filepath.Join(dir, "conf.d")
			if err := c.spoil(t, folder); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(folder, 0o700) })

			_, err = Load(file)
			if err == nil || !strings.Contains(err.Error(), "read included folder: "+folder) {
				t.Errorf("load = %v, want an error that names the folder %s", err, folder)
			}
			hash, err := Fingerprint(file)
			if err != nil {
				t.Fatal(err)
			}
			if hash == withoutFolder {
				t.Errorf("fingerprint with the unreadable folder is that of a config without it")
			}
		})
	}
}

func TestDocumentHead(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"no header", "include = [\"a\"]\nx = 1\n", "include = [\"a\"]\nx = 1\n"},
		{"header first", "[jobs.a]\ncommand = [\"true\"]\n", ""},
		{"keys then header", "include = [\"a\"]\n\n[jobs.a]\nx = 1\n", "include = [\"a\"]\n\n"},
		{"indented header", "x = 1\n  [jobs.a]\n", "x = 1\n"},
		{"array table", "x = 1\n[[jobs]]\n", "x = 1\n"},
		{"header inside a string", "x = \"\"\"\n[jobs.a]\n\"\"\"\n[runner]\n", "x = \"\"\"\n[jobs.a]\n\"\"\"\n"},
		{"header after a comment", "# [jobs.a]\nx = 1 # [b]\n[c]\n", "# [jobs.a]\nx = 1 # [b]\n"},
		{"syntax error first", "x = \n[jobs.a]\n", "x = \n[jobs.a]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(documentHead([]byte(tt.doc))); got != tt.want {
				t.Errorf("documentHead(%q) = %q, want %q", tt.doc, got, tt.want)
			}
		})
	}
}

// TestFingerprintReadsOnlyTopLevelKeys checks that a mistake after the
// top-level keys does not hide the included files from the fingerprint:
// Fingerprint decodes only the keys before the first table header.
func TestFingerprintReadsOnlyTopLevelKeys(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	writeFiles(t, dir, map[string]string{
		"config.toml":   "include = [\"conf.d/*.toml\"]\n\n[jobs.a]\nevery = \"1h\"\n\n[jobs.a]\nevery = \"2h\"\n",
		"conf.d/b.toml": "[jobs.b]\ncommand = [\"true\"]\nevery = \"1h\"\n",
	})
	before, err := Fingerprint(file)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"conf.d/b.toml": "[jobs.b]\ncommand = [\"true\"]\nevery = \"2h\"\n"})
	after, err := Fingerprint(file)
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Errorf("editing an included file kept the fingerprint of a main file with a duplicate table")
	}
}
