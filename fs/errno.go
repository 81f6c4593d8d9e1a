package fs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"cryptpt/crypt"
)

// Every error the mount reports goes through toErrno, and every failed
// authentication through authFailed: go-fuse takes only syscall.Errno (its
// own ToErrno logs "can't convert error type" to the global logger for
// anything else and answers ENOTSUP, which programs read as "not
// supported"), and a vault file that fails authentication must read as a
// broken file, EIO, with one log line in one format that says which.

// toErrno maps an error to what the kernel gets. An errno, wrapped or not,
// is passed on; a failed authentication of content (isAuthFailure) is EIO,
// as is anything the kernel has no errno for; a negative offset or size is
// EINVAL. Callers that can name the vault file use contentErrno instead, so
// the failure is logged.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch {
	case isAuthFailure(err):
		return syscall.EIO
	case errors.Is(err, crypt.ErrOffset):
		return syscall.EINVAL
	case errors.Is(err, os.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, os.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, os.ErrPermission):
		return syscall.EPERM
	}
	return syscall.EIO
}

// isAuthFailure reports whether err says that the content of an encrypted
// file cannot be trusted: a block that fails authentication, a size this
// format cannot produce, a bad header, or a block cut short
// (io.ErrUnexpectedEOF, from a file that shrank under the read).
func isAuthFailure(err error) bool {
	return errors.Is(err, crypt.ErrAuth) || errors.Is(err, crypt.ErrSize) ||
		errors.Is(err, crypt.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF)
}

// contentErrno is toErrno for an error from the content of the encrypted
// file f of n: a failed authentication is logged (authFailed).
func (n *node) contentErrno(f *os.File, err error) syscall.Errno {
	if err != nil && isAuthFailure(err) {
		return n.authFailed(f, err)
	}
	return toErrno(err)
}

// authFailed logs and counts a failed authentication of the content of the
// encrypted file f of n, and returns EIO.
func (n *node) authFailed(f *os.File, err error) syscall.Errno {
	return n.v.authFailed(n.v.entryName(n), fmt.Sprintf("vault file %q", f.Name()), err)
}

// authFailed is the one log line of a failed authentication: entry names
// the entry (entryName, childName), part what of it failed (its content, its
// symlink target, an xattr value, a directory IV). It counts the failure
// (Status) and returns EIO: bytes that fail authentication never reach the
// kernel.
func (v *vault) authFailed(entry, part string, err error) syscall.Errno {
	v.stats.authFailures.Add(1)
	v.logf("authentication failed: %s (%s): %v", entry, part, err)
	return syscall.EIO
}
