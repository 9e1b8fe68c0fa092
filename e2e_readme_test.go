package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// machineProblems match the problems that a README example has only
// because this machine lacks what it names: files, folders, programs,
// systemd credentials, and jobs or listeners that another example
// defines. Any other problem, such as an unknown key or an invalid value,
// means the README no longer matches the loader.
var machineProblems = []*regexp.Regexp{
	regexp.MustCompile(` does not exist(: | )`),
	regexp.MustCompile(`: command "[^"]+" not found in PATH `),
	regexp.MustCompile(` is not a readable file: fix the path or create the file$`),
	regexp.MustCompile(`cannot be read because \$CREDENTIALS_DIRECTORY is not set`),
	regexp.MustCompile(`: no (job|listener) is named "[^"]+"`),
}

// readmeConfigBlocks returns the ```toml blocks of README.md.
func readmeConfigBlocks(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(string(data), -1)
	var texts []string
	for _, block := range blocks {
		texts = append(texts, block[1])
	}
	return texts
}

func TestCheckReadmeExamples(t *testing.T) {
	blocks := readmeConfigBlocks(t)
	if len(blocks) < 2 {
		t.Fatalf("found %d toml blocks in README.md, want the configuration example and more", len(blocks))
	}
	if !strings.Contains(blocks[0], "[runner]") || !strings.Contains(blocks[0], "[jobs.digest]") {
		t.Fatalf("the first toml block of README.md is not the configuration example:\n%s", blocks[0])
	}
	for i, block := range blocks {
		dir := t.TempDir()
		file := filepath.Join(dir, "config.toml")
		if err := os.WriteFile(file, []byte(block), 0o600); err != nil {
			t.Fatal(err)
		}
		p := &project{t: t, dir: dir, config: file}
		res := p.run("check")
		if res.code != 0 && res.code != 1 {
			t.Errorf("check of README toml block %d = %d %q, want 0 or 1", i+1, res.code, res.stderr)
			continue
		}
		for _, line := range strings.Split(res.stderr, "\n") {
			if !strings.HasPrefix(line, "  "+file) || matchesAny(machineProblems, line) {
				continue
			}
			t.Errorf("README toml block %d, which starts %q, has a problem:\n%s", i+1, firstLine(block), line)
		}
	}
}

func matchesAny(patterns []*regexp.Regexp, text string) bool {
	for _, pattern := range patterns {
		if pattern.MatchString(text) {
			return true
		}
	}
	return false
}
