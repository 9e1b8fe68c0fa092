package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadWithin runs Load in the background and fails the test when it has
// not returned after a minute, so a read that blocks forever shows as a
// failure instead of a stuck test binary. The bound only detects a hang:
// a working Load returns within milliseconds.
func loadWithin(t *testing.T, file string) (*Config, error) {
	t.Helper()
	return within(t, "Load("+file+")", func() (*Config, error) { return Load(file) })
}

// fingerprintWithin is loadWithin for Fingerprint.
func fingerprintWithin(t *testing.T, file string) (string, error) {
	t.Helper()
	return within(t, "Fingerprint("+file+")", func() (string, error) { return Fingerprint(file) })
}

func within[T any](t *testing.T, call string, run func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		value T
		err   error
	}
	done := make(chan result, 1)
	go func() {
		value, err := run()
		done <- result{value, err}
	}()
	select {
	case r := <-done:
		return r.value, r.err
	case <-time.After(time.Minute):
		t.Fatalf("%s blocked for a minute", call)
		var zero T
		return zero, nil
	}
}

// includeMain writes a main config that includes conf.d/*.toml and
// returns its path.
func includeMain(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"config.toml":      "include = [\"conf.d/*.toml\"]\n\n[jobs.main]\ncommand = [\"true\"]\nevery = \"1h\"\n",
		"conf.d/10-a.toml": "[jobs.a]\ncommand = [\"true\"]\nevery = \"1h\"\n",
	})
	return filepath.Join(dir, "config.toml")
}

// fifoHasReader reports whether a process has the FIFO at path open for
// reading: only then does a non-blocking open for writing succeed.
func fifoHasReader(path string) bool {
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	syscall.Close(fd)
	return true
}

func TestIncludeFIFORejected(t *testing.T) {
	file := includeMain(t)
	fifo := filepath.Join(filepath.Dir(file), "conf.d", "20-fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	_, err := loadWithin(t, file)
	var fileErr *Error
	if !errors.As(err, &fileErr) {
		t.Fatalf("got error %v, want an *Error", err)
	}
	want := file + ":1: include: read included file: " + fifo + " is not a regular file but a named pipe (FIFO)"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("got error %q, want it to contain %q", err, want)
	}
	if fifoHasReader(fifo) {
		t.Errorf("Load left the FIFO open")
	}

	hash, err := fingerprintWithin(t, file)
	if err != nil || hash == "" {
		t.Errorf("Fingerprint with a FIFO = %q, %v, want a hash of the other files", hash, err)
	}
}

func TestMainConfigFIFORejected(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "config.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	_, err := loadWithin(t, fifo)
	if err == nil || !strings.Contains(err.Error(), "read config: "+fifo+" is not a regular file but a named pipe (FIFO)") {
		t.Errorf("got error %v, want one naming the FIFO", err)
	}
	if _, err := fingerprintWithin(t, fifo); err == nil {
		t.Errorf("Fingerprint of a FIFO returned no error")
	}
	socket, err := LocateSocket(fifo)
	if want := filepath.Join(filepath.Dir(fifo), "state", "control.sock"); err != nil || socket != want {
		t.Errorf("LocateSocket of a FIFO = %q, %v, want the default %q", socket, err, want)
	}
}

func TestIncludeDeviceRejected(t *testing.T) {
	file := includeMain(t)
	link := filepath.Join(filepath.Dir(file), "conf.d", "20-zero.toml")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	_, err := loadWithin(t, file)
	want := "read included file: " + link + " is not a regular file but a character device"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got error %v, want it to contain %q", err, want)
	}
}

func TestIncludeTooLargeRejected(t *testing.T) {
	file := includeMain(t)
	big := filepath.Join(filepath.Dir(file), "conf.d", "20-big.toml")
	// A comment line keeps the file valid TOML, so only the size fails.
	content := "# " + strings.Repeat("x", maxConfigSize) + "\n"
	if err := os.WriteFile(big, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadWithin(t, file)
	want := big + " is larger than the limit of " + strconv.Itoa(maxConfigSize) + " bytes (it has " +
		strconv.Itoa(len(content)) + " bytes): split it into smaller files"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got error %v, want it to contain %q", err, want)
	}
}

func TestMainConfigTooLargeRejected(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte("# "+strings.Repeat("x", maxConfigSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(file)
	if err == nil || !strings.Contains(err.Error(), "is larger than the limit of "+strconv.Itoa(maxConfigSize)+" bytes") {
		t.Errorf("got error %v, want one naming the size limit", err)
	}
}
