package layout

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// MaxSmallFile bounds what ReadSmallFile accepts: a directory IV is 16 bytes
// and a sidecar at most a few hundred, so anything bigger is not ours.
const MaxSmallFile = 4096

var (
	// ErrNotRegular means a small file is not a regular file (a directory,
	// FIFO, device or socket planted under a reserved name).
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge means a small file holds more than MaxSmallFile bytes.
	ErrTooLarge = errors.New("too large")
)

// OpenRead opens name in the directory open at dirfd for reading, as every
// read of the vault's stored bytes outside the mount's handles must: never
// following a symlink (O_NOFOLLOW), never blocking (O_NONBLOCK: a FIFO
// planted under the name would otherwise hang the reader until a writer
// comes), and without updating the atime where allowed (O_NOATIME, which
// needs ownership or CAP_FOWNER). The caller checks the type with fstat on
// the fd, so the file checked is the file read.
func OpenRead(dirfd int, name string) (int, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM {
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	return fd, err
}

// ReadSmallFile reads name in the directory open at dirfd (OpenRead): a
// regular file of at most MaxSmallFile bytes.
func ReadSmallFile(dirfd int, name string) ([]byte, error) {
	fd, err := OpenRead(dirfd, name)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, ErrNotRegular
	}
	if st.Size > MaxSmallFile {
		return nil, fmt.Errorf("%d bytes is %w", st.Size, ErrTooLarge)
	}
	// One byte more than the bound, so a file that grew after the fstat
	// is still refused.
	buf := make([]byte, MaxSmallFile+1)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > MaxSmallFile {
		return nil, fmt.Errorf("grew while being read: %w", ErrTooLarge)
	}
	return buf[:n:n], nil
}
