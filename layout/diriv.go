package layout

import (
	"errors"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// ReadDirIV reads the IV of the directory open at dirfd from its
// crypt.DirIVName file. A missing file is ENOENT (errors.Is).
func ReadDirIV(dirfd int) (*[crypt.DirIVSize]byte, error) {
	data, err := ReadSmallFile(dirfd, crypt.DirIVName)
	if err != nil {
		return nil, err
	}
	return crypt.ParseDirIV(data)
}

// CreateDirIV gives the directory open at dirfd a new IV, read-only (0400),
// with prepare (may be nil) called on the new file as in WriteOptions. When
// another writer made one first, it returns theirs: one directory never has
// two IVs, or the names made under the loser's would be lost.
func CreateDirIV(dirfd int, prepare func(fd int) error) (*[crypt.DirIVSize]byte, error) {
	iv, err := crypt.NewDirIV()
	if err != nil {
		return nil, err
	}
	err = WriteFile(dirfd, crypt.DirIVName, iv[:], WriteOptions{Perm: 0o400, NoReplace: true, Prepare: prepare})
	if errors.Is(err, unix.EEXIST) {
		return ReadDirIV(dirfd)
	}
	if err != nil {
		return nil, err
	}
	return iv, nil
}

// WriteSidecar writes the sidecar of a long name (crypt.SidecarName),
// read-only, replacing an old one: its content is fixed by the long name it
// hashes to, so a replaced one held the same or was wrong.
func WriteSidecar(dirfd int, long string, sidecar []byte, prepare func(fd int) error) error {
	return WriteFile(dirfd, crypt.SidecarName(long), sidecar, WriteOptions{Perm: 0o400, Prepare: prepare})
}
