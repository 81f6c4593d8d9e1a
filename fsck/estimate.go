package fsck

import (
	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// estimate walks the vault once without reading any file (it lists
// directories and stats entries) and returns the number of entries and the
// stored bytes of the encrypted regular files that the check will read: the
// totals of Progress. Entries that cannot be listed or stated are left out.
func (c *checker) estimate() (entries, bytes int64) {
	seen := map[inode]bool{}
	var walk func(fd int, root bool)
	walk = func(fd int, root bool) {
		names, err := readNames(fd)
		if err != nil {
			return
		}
		for _, name := range names {
			entries++
			if root && (name == LostFoundName || (c.lfStored != "" && name == c.lfStored)) {
				continue
			}
			kind := crypt.Classify(name)
			if kind != crypt.Plain && kind != crypt.Encrypted && kind != crypt.Long {
				continue
			}
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err == nil {
					walk(sub, false)
					unix.Close(sub)
				}
			case unix.S_IFREG:
				if kind == crypt.Plain {
					continue
				}
				if st.Nlink > 1 {
					id := inode{uint64(st.Dev), st.Ino}
					if seen[id] {
						continue
					}
					seen[id] = true
				}
				bytes += st.Size
			}
		}
	}
	walk(c.rootFd, true)
	return entries, bytes
}
