package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// chdirError describes a working folder that the child could not enter,
// naming the user it runs as when it switches users.
func chdirError(dir, user string, credential *syscall.Credential, err error) error {
	if credential == nil {
		return fmt.Errorf("chdir %s: %w", dir, err)
	}
	if user == "" {
		return fmt.Errorf("chdir %s as uid %d and gid %d: %w", dir, credential.Uid, credential.Gid, err)
	}
	return fmt.Errorf("chdir %s as user %q (uid %d): %w", dir, user, credential.Uid, err)
}

// explainStartError replaces the error of a start without the shim when
// the working folder caused it. os/exec reports a failed chdir in the
// child as "fork/exec PROGRAM", which blames the program, and it checks
// the folder itself only when SysProcAttr is nil, which it never is here.
func explainStartError(spec Spec, credential *syscall.Credential, err error) error {
	if spec.Dir == "" {
		return err
	}
	var pathErr *os.PathError
	if !errors.As(err, &pathErr) || pathErr.Op != "fork/exec" {
		return err
	}
	if cause := dirUnusable(spec.Dir, credential); cause != nil {
		return chdirError(spec.Dir, spec.Identity.User, credential, cause)
	}
	return err
}

// dirUnusable returns why dir cannot be entered by the credential's user,
// or by the runner when credential is nil, from the mode bits of dir and
// of each folder above it. It returns nil when the bits allow it.
//
// NOTE: the check ignores ACLs and capabilities such as
// CAP_DAC_READ_SEARCH, so it serves only to explain a start that failed.
func dirUnusable(dir string, credential *syscall.Credential) error {
	for _, path := range dirChain(dir) {
		info, err := os.Stat(path)
		if err != nil {
			var pathErr *os.PathError
			if errors.As(err, &pathErr) {
				return pathErr.Err
			}
			return err
		}
		if !info.IsDir() {
			return syscall.ENOTDIR
		}
		if credential != nil && credential.Uid != 0 && !maySearch(info, credential) {
			return syscall.EACCES
		}
	}
	return nil
}

// dirChain lists dir and every folder above it, top first.
func dirChain(dir string) []string {
	dir = filepath.Clean(dir)
	var chain []string
	for {
		chain = append(chain, dir)
		parent := filepath.Dir(dir)
		if parent == dir || (!filepath.IsAbs(dir) && !strings.Contains(dir, "/")) {
			break
		}
		dir = parent
	}
	slices.Reverse(chain)
	return chain
}

// maySearch reports whether the mode bits of a folder let the
// credential's user pass through it.
func maySearch(info os.FileInfo, credential *syscall.Credential) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := uint32(info.Mode().Perm())
	switch {
	case st.Uid == credential.Uid:
		return mode&0o100 != 0
	case st.Gid == credential.Gid || slices.Contains(credential.Groups, st.Gid):
		return mode&0o010 != 0
	}
	return mode&0o001 != 0
}
