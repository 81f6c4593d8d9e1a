package fs

import (
	"errors"
	"syscall"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// maxSmallFile bounds what readSmallFile accepts: directory IVs and long-name
// sidecars are far smaller, so anything bigger is not ours.
const maxSmallFile = 4096

// readSmallFile reads a vault-owned metadata file without following links.
func readSmallFile(dirfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errors.New("metadata file is not a regular file")
	}
	buf := make([]byte, maxSmallFile+1)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > maxSmallFile {
		return nil, errors.New("metadata file too large")
	}
	return buf[:n], nil
}

// writeSmallFile creates name in dirfd with data, atomically: the content is
// written and synced under a temporary name, then renamed into place. With
// noReplace an existing name is left alone and EEXIST returned.
func writeSmallFile(dirfd int, name string, data []byte, noReplace bool) error {
	tmp, err := crypt.TempName()
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return err
	}
	_, werr := unix.Write(fd, data)
	if werr == nil {
		werr = unix.Fsync(fd)
	}
	unix.Close(fd)
	if werr != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return werr
	}
	var flags uint
	if noReplace {
		flags = unix.RENAME_NOREPLACE
	}
	if err := unix.Renameat2(dirfd, tmp, dirfd, name, flags); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return nil
}

func readDirIV(dirfd int) (*[16]byte, error) {
	data, err := readSmallFile(dirfd, crypt.DirIVName)
	if err != nil {
		return nil, err
	}
	return crypt.ParseDirIV(data)
}

// createDirIV makes a directory IV; when another writer won the race, it
// returns theirs.
func createDirIV(dirfd int) (*[16]byte, error) {
	iv, err := crypt.NewDirIV()
	if err != nil {
		return nil, err
	}
	err = writeSmallFile(dirfd, crypt.DirIVName, iv[:], true)
	if errors.Is(err, syscall.EEXIST) {
		return readDirIV(dirfd)
	}
	if err != nil {
		return nil, err
	}
	return iv, nil
}

// InitLayout prepares a new vault directory for mounting: it gives the root
// its directory IV. keys.Create writes the vault config beside it.
func InitLayout(dir string) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = createDirIV(fd)
	return err
}
