package fs

import (
	"errors"
	"io"
	"os"
	"syscall"

	"cryptpt/crypt"
)

// toErrno is the one mapping of errors to what the kernel gets. An errno,
// wrapped or not, is passed on; the few portable os errors map to theirs;
// anything else is EIO. (go-fuse's ToErrno logs unknown errors to the global
// logger and answers ENOSYS, which programs read as "not supported".)
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, os.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, os.ErrPermission):
		return syscall.EPERM
	}
	return syscall.EIO
}

// contentErrno maps an error from the content of the encrypted file f:
// a failed authentication, an impossible size, a bad header or a block cut
// short (io.ErrUnexpectedEOF) is EIO with one log line naming the file;
// other errors go through toErrno.
func (n *node) contentErrno(f *os.File, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, crypt.ErrAuth), errors.Is(err, crypt.ErrSize), errors.Is(err, crypt.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF):
		n.authFailed(f, err)
		return syscall.EIO
	}
	return toErrno(err)
}
