package layout

import (
	"strings"

	"golang.org/x/sys/unix"
)

// ListXattrs returns the extended attribute names of the file open at fd.
func ListXattrs(fd int) ([]string, error) {
	for {
		sz, err := unix.Flistxattr(fd, nil)
		if err != nil || sz == 0 {
			return nil, err
		}
		buf := make([]byte, sz)
		n, err := unix.Flistxattr(fd, buf)
		if err == unix.ERANGE {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, a := range strings.Split(string(buf[:n]), "\x00") {
			if a != "" {
				names = append(names, a)
			}
		}
		return names, nil
	}
}

// GetXattr returns the whole value of attr of the file open at fd.
func GetXattr(fd int, attr string) ([]byte, error) {
	for {
		sz, err := unix.Fgetxattr(fd, attr, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		n, err := unix.Fgetxattr(fd, attr, buf)
		if err == unix.ERANGE {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
