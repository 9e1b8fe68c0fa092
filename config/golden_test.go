package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden .err files in testdata from the current output")

// copyFixtures copies testdata/name into a temporary folder. Messages then
// contain paths that do not depend on where the repository is checked out,
// and default socket paths stay well below the 108-byte limit.
func copyFixtures(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", name))); err != nil {
		t.Fatalf("copy fixtures: %v", err)
	}
	return dir
}

// fixtures returns the *.toml files in dir, failing when there are none so
// that a misplaced fixture folder cannot make a test pass vacuously.
func fixtures(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		t.Fatalf("list fixtures: %v", err)
	}
	if len(files) == 0 {
		t.Fatalf("no *.toml fixtures in %s", dir)
	}
	return files
}

// relative strips dir from every path in text.
func relative(text, dir string) string {
	return strings.ReplaceAll(text, dir+string(filepath.Separator), "")
}

// compareGolden compares got with the golden file, or rewrites the golden
// file when -update is set.
func compareGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatalf("write golden file: %v", err)
		}
		return
	}
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file: %v (run go test -update to create it)", err)
	}
	gotLines := strings.Split(got, "\n")
	wantLines := strings.Split(string(data), "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		var gotLine, wantLine string
		if i < len(gotLines) {
			gotLine = gotLines[i]
		}
		if i < len(wantLines) {
			wantLine = wantLines[i]
		}
		if gotLine != wantLine {
			t.Errorf("%s line %d:\ngot  %q\nwant %q", filepath.Base(golden), i+1, gotLine, wantLine)
		}
	}
}

// TestLoadInvalid loads each testdata/invalid/NAME.toml and compares the
// problems with NAME.err.
func TestLoadInvalid(t *testing.T) {
	dir := copyFixtures(t, "invalid")
	for _, file := range fixtures(t, dir) {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			config, err := Load(file)
			if config != nil {
				t.Errorf("got a config, want nil")
			}
			var loadErr *Error
			if !errors.As(err, &loadErr) {
				t.Fatalf("got error %v, want *Error", err)
			}
			for _, problem := range loadErr.Problems {
				if problem.File != file {
					t.Errorf("problem %q: got file %q, want %q", problem.Message, problem.File, file)
				}
				if problem.Line < 1 {
					t.Errorf("problem %q: got line %d, want a line in the file", problem.Message, problem.Line)
				}
			}
			golden := filepath.Join("testdata", "invalid", name+".err")
			compareGolden(t, golden, relative(err.Error(), dir)+"\n")
		})
	}
}

// TestLoadUnrunnable loads each testdata/unrunnable/NAME.toml, which is
// valid but names things this machine lacks, and compares the jobs'
// problems with NAME.err.
func TestLoadUnrunnable(t *testing.T) {
	dir := copyFixtures(t, "unrunnable")
	unsetEnv(t, "CREDENTIALS_DIRECTORY")
	unsetEnv(t, "CONFIG_TEST_UNSET_TOKEN")
	t.Setenv("CONFIG_TEST_SECRET_PATH", "/nonexistent/secret/bin")
	for _, file := range fixtures(t, dir) {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			config, err := Load(file)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			problems := config.Problems()
			if len(problems) == 0 {
				t.Fatalf("got no job problems, want some")
			}
			lines := make([]string, len(problems))
			for i, problem := range problems {
				lines[i] = problem.Error()
			}
			golden := filepath.Join("testdata", "unrunnable", name+".err")
			compareGolden(t, golden, relative(strings.Join(lines, "\n"), dir)+"\n")
		})
	}
}

// unsetEnv removes a variable for the duration of the test.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatalf("unset %s: %v", name, err)
	}
}

// TestLoadIncludeInvalid loads testdata/include/NAME/config.toml, which
// includes the files in its conf.d folder, and compares the problems with
// NAME.err. Each problem must name a line of one of the fixture's files.
func TestLoadIncludeInvalid(t *testing.T) {
	dir := copyFixtures(t, "include")
	folders, err := filepath.Glob(filepath.Join(dir, "*", "config.toml"))
	if err != nil {
		t.Fatalf("list fixtures: %v", err)
	}
	if len(folders) == 0 {
		t.Fatalf("no */config.toml fixtures in %s", dir)
	}
	for _, file := range folders {
		name := filepath.Base(filepath.Dir(file))
		t.Run(name, func(t *testing.T) {
			config, err := Load(file)
			if config != nil {
				t.Errorf("got a config, want nil")
			}
			var loadErr *Error
			if !errors.As(err, &loadErr) {
				t.Fatalf("got error %v, want *Error", err)
			}
			for _, problem := range loadErr.Problems {
				if _, err := os.Stat(problem.File); err != nil || !strings.HasPrefix(problem.File, filepath.Dir(file)) {
					t.Errorf("problem %q: file %q is not a file of the fixture", problem.Message, problem.File)
				}
				if problem.Line < 1 {
					t.Errorf("problem %q: got line %d, want a line in the file", problem.Message, problem.Line)
				}
			}
			golden := filepath.Join("testdata", "include", name+".err")
			compareGolden(t, golden, relative(err.Error(), dir)+"\n")
		})
	}
}
