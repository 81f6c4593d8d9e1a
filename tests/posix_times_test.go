package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	cfs "cryptpt/fs"
)

// atimeOf returns an entry's atime as the mount shows it.
func atimeOf(t *testing.T, p string) unix.Timespec {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st.Atim
}

// setTimes sets atime and mtime to seconds since 1970.
func setTimes(t *testing.T, p string, atime, mtime int64) {
	t.Helper()
	must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{{Sec: atime}, {Sec: mtime}}, unix.AT_SYMLINK_NOFOLLOW))
}

// dropCache evicts a file's pages from the page cache, so the next read
// reaches the filesystem (FUSE learns nothing of reads the page cache
// serves).
func dropCache(t *testing.T, p string) {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	must(t, err)
	defer unix.Close(fd)
	must(t, unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED))
}

// Reading a file updates its atime as the backing filesystem's mount
// options say (relatime here: when atime is not after mtime); opening,
// writing and truncating it do not.
func TestPosixAtime(t *testing.T) {
	posixAreas(t, func(t *testing.T, tv *cfs.TestVault, dir string) {
		p := filepath.Join(dir, "f")
		data := make([]byte, 10000)
		must(t, os.WriteFile(p, data, 0o644))
		// Reading an entry whose atime is before its mtime updates it.
		setTimes(t, p, 1000, 2000)
		dropCache(t, p)
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		if a := atimeOf(t, p); a.Sec <= 2000 {
			t.Errorf("atime after a read: %v, want now", a)
		}
		// Opening without reading, writing inside a block and truncating
		// to the middle of one do not.
		setTimes(t, p, 1000, 2000)
		dropCache(t, p)
		f, err := os.Open(p)
		must(t, err)
		f.Close()
		if a := atimeOf(t, p); a.Sec != 1000 {
			t.Errorf("atime after open and close: %v, want 1000", a)
		}
		// Through a handle that has read before.
		f, err = os.OpenFile(p, os.O_RDWR, 0)
		must(t, err)
		_, err = f.ReadAt(make([]byte, 10), 0)
		must(t, err)
		setTimes(t, p, 1000, 2000)
		_, err = f.WriteAt([]byte("x"), 5000)
		must(t, err)
		must(t, f.Truncate(7000))
		must(t, f.Close())
		// Under the writeback cache the kernel reads the page a write
		// covers only in part before it writes: a read like any other
		// for the daemon (docs/posix.md).
		if a := atimeOf(t, p); a.Sec != 1000 && !strings.HasSuffix(t.Name(), "/wb") {
			t.Errorf("atime after a write and a truncate: %v, want 1000", a)
		}
		// Read again: atime (1000) is before mtime (now).
		dropCache(t, p)
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		if a := atimeOf(t, p); a.Sec <= 2000 {
			t.Errorf("atime after a read following a write: %v, want now", a)
		}
	})
}
