package fs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"cryptpt/crypt"
)

// toErrno answers every error with an errno, so that nothing reaches
// go-fuse's own conversion ("can't convert error type", ENOTSUP).
func TestToErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{syscall.ENOSPC, syscall.ENOSPC},
		{&fs.PathError{Op: "openat", Path: "x", Err: syscall.ELOOP}, syscall.ELOOP},
		{fmt.Errorf("crypt: writing block 3: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}), syscall.EDQUOT},
		{fmt.Errorf("crypt: reading block 3: %w", io.ErrUnexpectedEOF), syscall.EIO},
		{fmt.Errorf("%w: block 3", crypt.ErrAuth), syscall.EIO},
		{crypt.ErrHeader, syscall.EIO},
		{fmt.Errorf("%w: block 2 has 3 bytes", crypt.ErrSize), syscall.EIO},
		{fmt.Errorf("%w: offset -1", crypt.ErrOffset), syscall.EINVAL},
		{os.ErrNotExist, syscall.ENOENT},
		{os.ErrExist, syscall.EEXIST},
		{errors.New("metadata file too large"), syscall.EIO},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
