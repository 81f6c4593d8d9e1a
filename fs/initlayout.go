package fs

import (
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// InitLayout prepares a new vault directory for mounting: it gives the root
// its directory IV. keys.Create writes the vault config beside it.
func InitLayout(dir string) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = layout.CreateDirIV(fd, nil)
	return err
}
