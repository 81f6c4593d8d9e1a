package fsck

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// base64URL is the encoding of encrypted symlink targets and long-name hashes.
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

// readSmallFile reads a regular file of at most maxSmallFile bytes without
// following symlinks.
func readSmallFile(dirfd int, name string) ([]byte, error) {
	fd, err := openRead(dirfd, name)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a regular file")
	}
	if st.Size > maxSmallFile {
		return nil, fmt.Errorf("%d bytes is too large", st.Size)
	}
	buf := make([]byte, st.Size+1)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return nil, err
	}
	if n > int(st.Size) {
		return nil, fmt.Errorf("grew while being read")
	}
	return buf[:n], nil
}

// listXattrs returns the extended attribute names of the file open at fd.
func listXattrs(fd int) ([]string, error) {
	for {
		sz, err := unix.Flistxattr(fd, nil)
		if err != nil || sz == 0 {
			return nil, err
		}
		buf := make([]byte, sz)
		n, err := unix.Flistxattr(fd, buf)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

// getXattr returns the value of attribute name of the file open at fd.
func getXattr(fd int, name string) ([]byte, error) {
	for {
		sz, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		n, err := unix.Fgetxattr(fd, name, buf)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// writeSmallFile creates name in dirfd with data, atomically (temp file,
// fsync, rename), mode 0400 and owner uid:gid where allowed, as the fs
// package writes directory IVs and sidecars. With noReplace an existing
// name is left alone and EEXIST returned.
func writeSmallFile(dirfd int, name string, data []byte, uid, gid int, noReplace bool) error {
	tmp, err := crypt.TempName()
	if err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return err
	}
	unix.Fchown(fd, uid, gid)
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

// readDirIV reads the directory IV of the directory open at dirfd.
func readDirIV(dirfd int) (*[crypt.DirIVSize]byte, error) {
	data, err := readSmallFile(dirfd, crypt.DirIVName)
	if err != nil {
		return nil, err
	}
	return crypt.ParseDirIV(data)
}

// createDirIV gives the directory open at dirfd a new directory IV.
func createDirIV(dirfd, uid, gid int) (*[crypt.DirIVSize]byte, error) {
	iv, err := crypt.NewDirIV()
	if err != nil {
		return nil, err
	}
	if err := writeSmallFile(dirfd, crypt.DirIVName, iv[:], uid, gid, true); err != nil {
		return nil, err
	}
	return iv, nil
}
