package config

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeEnvFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "job.env")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatalf("write env file: %v", err)
	}
	return path
}

func TestReadEnvFile(t *testing.T) {
	text := strings.Join([]string{
		"# comment",
		"",
		"PLAIN=value",
		"export EXPORTED=yes",
		`DOUBLE="two words"`,
		`SINGLE='it''s'`,
		"  SPACED  =  padded  ",
		"EMPTY=",
		"EQUALS=a=b",
		"HASH=not#a#comment",
		"CRLF=windows\r",
		"PLAIN=later wins",
		"   # indented comment",
	}, "\n")
	got, err := ReadEnvFile(writeEnvFile(t, text))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	want := map[string]string{
		"PLAIN":    "later wins",
		"EXPORTED": "yes",
		"DOUBLE":   "two words",
		"SINGLE":   "it''s",
		"SPACED":   "padded",
		"EMPTY":    "",
		"EQUALS":   "a=b",
		"HASH":     "not#a#comment",
		"CRLF":     "windows",
	}
	if !maps.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestReadEnvFileMalformed(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"missing equals", "A=1\n\nTOKEN hunter2\n", `:3: missing "="`},
		{"invalid name", "A=1\nhunter2.x=1\n", `:2: invalid environment variable name: use letters`},
		{"reserved name", "AGENT_RUNNER_JOB=hunter2\n", `:1: environment variable name "AGENT_RUNNER_JOB" is reserved`},
		{"unterminated quote", "# comment\nA=\"hunter2\n", `:2: missing closing "`},
		{"lone quote", "A='\n", `:1: missing closing '`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			path := writeEnvFile(t, test.text)
			_, err := ReadEnvFile(path)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", test.want)
			}
			if want := "read env file: " + path + test.want; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %q, want it to start with %q", err, want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q contains the value from the file", err)
			}
		})
	}
}

func TestReadEnvFileMissing(t *testing.T) {
	_, err := ReadEnvFile(filepath.Join(t.TempDir(), "absent.env"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got error %v, want one matching fs.ErrNotExist", err)
	}
}

func TestReadEnvFileTooLarge(t *testing.T) {
	path := writeEnvFile(t, "A="+strings.Repeat("x", maxReadSize)+"\n")
	_, err := ReadEnvFile(path)
	if err == nil || !strings.Contains(err.Error(), "is larger than") {
		t.Errorf("got error %v, want one saying the file is too large", err)
	}
}
