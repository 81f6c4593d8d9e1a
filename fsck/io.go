package fsck

import (
	"encoding/base64"
	"os"

	"golang.org/x/sys/unix"
)

// base64URL is the encoding of long-name hashes.
var base64URL = base64.RawURLEncoding

// readNames lists the directory open at fd (without "." and ".."). fd is not
// consumed: a fresh descriptor is read.
func readNames(fd int) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// owner returns a layout.WriteOptions.Prepare that gives a new file the
// owner uid:gid where allowed, so that what repair run as root writes into
// a user's vault stays the user's.
func owner(uid, gid int) func(fd int) error {
	return func(fd int) error {
		unix.Fchown(fd, uid, gid)
		return nil
	}
}
