package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzLoad checks that Load never panics, that it returns either a config
// or an *Error whose problems name the file, and that a config lists its
// jobs and listeners sorted by name.
func FuzzLoad(f *testing.F) {
	for _, dir := range []string{"valid", "invalid", "unrunnable"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.toml"))
		if err != nil {
			f.Fatalf("list seeds: %v", err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatalf("read seed: %v", err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("[jobs.a]\ncommand = [\"/bin/sh\"]\nevery = \"1s\"\nenv = { X = { file = \"/dev/zero\" } }\nenv_file = \"/dev/zero\"\n"))
	f.Add([]byte("a = { b = { c = [[{}]] } }\n[jobs.\"\"]\n"))
	f.Add([]byte("[listeners.a]\nkind = \"twitch\"\nchannels = [\"#A\"]\nusername = \"b\"\ntoken = { file = \"/dev/zero\" }\n" +
		"on_event = [\"/bin/sh\"]\n[listeners.a.commands.\"!x\"]\nreply = \"{user}}{\"\n" +
		"[listeners.b]\nkind = \"exec\"\ncommand = [\"/bin/sh\"]\nprobe = { heartbeat = \"/\", max_age = \"1s\" }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatalf("write config: %v", err)
		}
		config, err := Load(path)
		if err != nil {
			checkFuzzError(t, path, err)
			return
		}
		if config == nil {
			t.Fatalf("got nil config and nil error")
		}
		names := make([]string, len(config.Jobs))
		for i, job := range config.Jobs {
			names[i] = job.Name
		}
		if !slices.IsSorted(names) {
			t.Errorf("got jobs %q, want them sorted by name", names)
		}
		names = names[:0]
		for _, listener := range config.Listeners {
			names = append(names, listener.Name)
		}
		if !slices.IsSorted(names) {
			t.Errorf("got listeners %q, want them sorted by name", names)
		}
	})
}

func checkFuzzError(t *testing.T, path string, err error) {
	var loadErr *Error
	if !errors.As(err, &loadErr) {
		t.Fatalf("got error %v, want *Error", err)
	}
	if len(loadErr.Problems) == 0 {
		t.Fatalf("got *Error without problems")
	}
	for _, problem := range loadErr.Problems {
		if problem.File != path {
			t.Errorf("got file %q, want %q", problem.File, path)
		}
		if problem.Line < 0 || problem.Message == "" {
			t.Errorf("got problem %+v, want a line of 0 or more and a message", problem)
		}
	}
}
