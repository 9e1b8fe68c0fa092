package main

import (
	"strings"
	"testing"
)

func TestOverviewNoTrailingSpaces(t *testing.T) {
	for i, line := range strings.Split(overview(), "\n") {
		if strings.TrimRight(line, " \t") != line {
			t.Errorf("overview line %d ends in white space: %q", i+1, line)
		}
	}
}

// The options are listed as the usage line and the README write them:
// --json and --config, with one dash only for -n.
func TestHelpListsLongOptionsWithTwoDashes(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := run([]string{"runs", "--help"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("runs --help = %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"\n  --config path\n", "\n  --json\n", "\n  -n int\n", "(default 20)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("runs --help lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "\n  -config") || strings.Contains(stdout.String(), "\n  -json") {
		t.Errorf("runs --help lists a long option with one dash:\n%s", stdout.String())
	}
}

func TestUnknownFlagGetsGuess(t *testing.T) {
	cases := map[string]string{
		"--jsn":             "did you mean --json?",
		"--confgi":          "did you mean --config?",
		"--zz":              "",
		"--nothing-like-it": "",
	}
	for flag, want := range cases {
		var stdout, stderr strings.Builder
		if code := run([]string{"list", flag}, &stdout, &stderr); code != exitUsage {
			t.Errorf("list %s = %d, want %d", flag, code, exitUsage)
		}
		firstLine, _, _ := strings.Cut(stderr.String(), "\n")
		if want == "" && strings.Contains(firstLine, "did you mean") {
			t.Errorf("list %s guessed: %q", flag, firstLine)
		}
		if want != "" && !strings.HasSuffix(firstLine, want) {
			t.Errorf("list %s: first line %q, want it to end with %q", flag, firstLine, want)
		}
	}
}
