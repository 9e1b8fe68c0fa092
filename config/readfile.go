package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// maxConfigSize bounds the main config file and each included file. Real
// configs are a few kilobytes, and the bound keeps a file such as a
// symlink to /dev/zero from exhausting the daemon's memory on reload.
const maxConfigSize = 4 << 20

// Errors of ReadRegularFile that callers give their own fix for.
var (
	errNotRegular = errors.New("only regular files are read")
	errTooLarge   = errors.New("the file is too large")
)

// fileError is a file that ReadRegularFile rejects: its message names
// the file, and it matches errNotRegular or errTooLarge with errors.Is.
type fileError struct {
	message string
	kind    error
}

func (e *fileError) Error() string { return e.message }
func (e *fileError) Unwrap() error { return e.kind }

// ReadRegularFile reads the regular file at path, of at most limit bytes.
// It checks the type with stat before the open, because opening a device
// can act on it (a tape drive rewinds). The open uses O_NONBLOCK, so a
// named pipe put at the path after the stat does not block it. An fstat
// of the open file checks the type again, because the file may have been
// swapped between the stat and the open. A file it rejects matches
// errNotRegular or errTooLarge with errors.Is.
func ReadRegularFile(path string, limit int64) ([]byte, error) {
	if info, err := os.Stat(path); err != nil {
		return nil, err
	} else if !info.Mode().IsRegular() {
		return nil, notRegular(path, info)
	}
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	info, err := file.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, notRegular(path, info)
	}
	if info.Size() > limit {
		return nil, &fileError{fmt.Sprintf("%s is larger than the limit of %d bytes (it has %d bytes)", path, limit, info.Size()), errTooLarge}
	}
	data, err := io.ReadAll(io.LimitReader(file, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		// The file grew after fstat.
		return nil, &fileError{fmt.Sprintf("%s is larger than the limit of %d bytes", path, limit), errTooLarge}
	}
	return data, nil
}

// notRegular returns the error for path, which is no regular file.
func notRegular(path string, info fs.FileInfo) error {
	return &fileError{fmt.Sprintf("%s is not a regular file but %s", path, fileKind(info.Mode())), errNotRegular}
}

// fileKind names the type of a file that is not a regular file.
func fileKind(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a folder"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a block device"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	default:
		return "a special file"
	}
}

// readConfigFile reads a config file or an included file.
func readConfigFile(path string) ([]byte, error) {
	return ReadRegularFile(path, maxConfigSize)
}
