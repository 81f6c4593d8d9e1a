package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cryptpt/internal/testvault"
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
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
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
		// Nor does a read through an open with O_NOATIME, in encrypted
		// areas (plaintext ones: docs/posix.md).
		if !strings.HasPrefix(dir, tv.Path("plain")) {
			dropCache(t, p)
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOATIME, 0)
			must(t, err)
			_, err = unix.Read(fd, make([]byte, 100))
			unix.Close(fd)
			must(t, err)
			if a := atimeOf(t, p); a.Sec != 1000 {
				t.Errorf("atime after a read with O_NOATIME: %v, want 1000", a)
			}
		}
		// Read again: atime (1000) is before mtime (now). Not where the
		// pages just written stay in a cache that fadvise cannot drop
		// (the view's, in a mixed mount's encrypted area): a read served
		// from the page cache never reaches the daemon (docs/posix.md).
		dropCache(t, p)
		if _, err := os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
		viewCached := strings.HasSuffix(t.Name(), "/enc") && tv.Mount.Status().EncryptedView
		if a := atimeOf(t, p); a.Sec <= 2000 && !viewCached {
			t.Errorf("atime after a read following a write: %v, want now", a)
		}
	})
}

// stamp is what TestPosixCtimeUpdates compares: an entry's mtime and ctime.
type stamp struct{ m, c unix.Timespec }

func stampOf(t *testing.T, p string) stamp {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return stamp{st.Mtim, st.Ctim}
}

func later(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || (a.Sec == b.Sec && a.Nsec > b.Nsec)
}

// pastCoarseClock waits until the kernel's coarse clock, which stamps
// changes of inodes without fine-grained timestamps (those of a FUSE mount
// with the writeback cache, which the kernel keeps itself), is past every
// time in stamps, so a change now must show a later time.
func pastCoarseClock(t *testing.T, stamps []stamp) {
	t.Helper()
	for {
		var now unix.Timespec
		must(t, unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &now))
		past := true
		for _, s := range stamps {
			if !later(now, s.c) || !later(now, s.m) {
				past = false
			}
		}
		if past {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Every change moves ctime, and a change of a directory's entries its
// mtime and ctime (pjdfstest's */00.t); a failed operation moves nothing.
func TestPosixCtimeUpdates(t *testing.T) {
	needRoot(t)
	type check struct {
		path   string
		mtime  bool // mtime must move too
		static bool // nothing may move
	}
	type tc struct {
		name string
		// setup makes what op needs in dir and returns what to check.
		setup func(t *testing.T, dir string) []check
		op    func(t *testing.T, dir string) error
	}
	file := func(t *testing.T, p string) {
		t.Helper()
		must(t, os.WriteFile(p, []byte("data"), 0o666))
		must(t, os.Chmod(p, 0o666))
	}
	cases := []tc{
		{"link", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", false, false}, {dir, true, false}}
		}, func(t *testing.T, dir string) error { return os.Link(dir+"/f", dir+"/f2") }},
		{"unlink of one of two links", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			must(t, os.Link(dir+"/f", dir+"/f2"))
			return []check{{dir + "/f", false, false}, {dir, true, false}}
		}, func(t *testing.T, dir string) error { return os.Remove(dir + "/f2") }},
		{"rename", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			must(t, os.Mkdir(dir+"/to", 0o755))
			return []check{{dir + "/f", false, false}, {dir, true, false}, {dir + "/to", true, false}}
		}, func(t *testing.T, dir string) error { return os.Rename(dir+"/f", dir+"/to/f") }},
		{"rename of a symlink", func(t *testing.T, dir string) []check {
			must(t, os.Symlink("target", dir+"/l"))
			must(t, os.Mkdir(dir+"/to", 0o755))
			return []check{{dir + "/l", false, false}, {dir, true, false}, {dir + "/to", true, false}}
		}, func(t *testing.T, dir string) error { return os.Rename(dir+"/l", dir+"/to/l") }},
		{"rename of a directory", func(t *testing.T, dir string) []check {
			must(t, os.Mkdir(dir+"/d", 0o755))
			must(t, os.Mkdir(dir+"/to", 0o755))
			return []check{{dir + "/d", false, false}, {dir, true, false}, {dir + "/to", true, false}}
		}, func(t *testing.T, dir string) error { return os.Rename(dir+"/d", dir+"/to/d") }},
		{"chmod", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", false, false}}
		}, func(t *testing.T, dir string) error { return os.Chmod(dir+"/f", 0o640) }},
		{"chown", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", false, false}}
		}, func(t *testing.T, dir string) error { return os.Chown(dir+"/f", nobody, nobody) }},
		{"setxattr", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", false, false}}
		}, func(t *testing.T, dir string) error { return unix.Setxattr(dir+"/f", "user.k", []byte("v"), 0) }},
		{"truncate longer", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", true, false}}
		}, func(t *testing.T, dir string) error { return os.Truncate(dir+"/f", 10000) }},
		{"truncate shorter", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", true, false}}
		}, func(t *testing.T, dir string) error { return os.Truncate(dir+"/f", 1) }},
		{"truncate to the same size", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", true, false}}
		}, func(t *testing.T, dir string) error { return os.Truncate(dir+"/f", 4) }},
		{"write", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir + "/f", true, false}}
		}, func(t *testing.T, dir string) error {
			f, err := os.OpenFile(dir+"/f", os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteAt([]byte("x"), 1); err != nil {
				return err
			}
			return f.Close()
		}},
		{"create", func(t *testing.T, dir string) []check { return []check{{dir, true, false}} },
			func(t *testing.T, dir string) error { return os.WriteFile(dir+"/new", nil, 0o644) }},
		{"mkdir", func(t *testing.T, dir string) []check { return []check{{dir, true, false}} },
			func(t *testing.T, dir string) error { return os.Mkdir(dir+"/new", 0o755) }},
		{"symlink", func(t *testing.T, dir string) []check { return []check{{dir, true, false}} },
			func(t *testing.T, dir string) error { return os.Symlink("x", dir+"/new") }},
		{"mkfifo", func(t *testing.T, dir string) []check { return []check{{dir, true, false}} },
			func(t *testing.T, dir string) error { return unix.Mkfifo(dir+"/new", 0o644) }},
		{"unlink", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			return []check{{dir, true, false}}
		}, func(t *testing.T, dir string) error { return os.Remove(dir + "/f") }},
		{"rmdir", func(t *testing.T, dir string) []check {
			must(t, os.Mkdir(dir+"/d", 0o755))
			return []check{{dir, true, false}}
		}, func(t *testing.T, dir string) error { return os.Remove(dir + "/d") }},
		{"failed rename", func(t *testing.T, dir string) []check {
			file(t, dir+"/f")
			must(t, os.Chmod(dir, 0o755))
			return []check{{dir + "/f", false, true}, {dir, false, true}}
		}, func(t *testing.T, dir string) error {
			if e := nobodyUser.errno(t, "rename", dir+"/f", dir+"/g"); e != unix.EACCES {
				return fmt.Errorf("rename by nobody: %v, want EACCES", e)
			}
			return nil
		}},
	}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		for i, c := range cases {
			sub := filepath.Join(dir, fmt.Sprintf("c%d", i))
			must(t, os.Mkdir(sub, 0o777))
			must(t, os.Chmod(sub, 0o777))
			checks := c.setup(t, sub)
			before := make([]stamp, len(checks))
			for j, ch := range checks {
				// Under the writeback cache the kernel writes cached
				// times back on its own schedule, which changes
				// ctime in the vault: let it do so first.
				if fd, err := unix.Open(ch.path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0); err == nil {
					unix.Fsync(fd)
					unix.Close(fd)
				}
				before[j] = stampOf(t, ch.path)
			}
			pastCoarseClock(t, before)
			if err := c.op(t, sub); err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if c.name == "truncate to the same size" && strings.HasSuffix(t.Name(), "/wb") {
				// Under the writeback cache the kernel keeps a file's
				// mtime and ctime itself and moves them only when the
				// size changes (docs/posix.md).
				continue
			}
			for j, ch := range checks {
				p := ch.path
				if _, err := os.Lstat(p); err != nil {
					p = filepath.Join(sub, "to", filepath.Base(p)) // moved
				}
				after := stampOf(t, p)
				switch {
				case ch.static && after != before[j]:
					t.Errorf("%s: %s changed from %v to %v", c.name, filepath.Base(ch.path), before[j], after)
				case !ch.static && !later(after.c, before[j].c):
					t.Errorf("%s: ctime of %s did not move (%v)", c.name, filepath.Base(ch.path), after.c)
				case !ch.static && ch.mtime && !later(after.m, before[j].m):
					t.Errorf("%s: mtime of %s did not move (%v)", c.name, filepath.Base(ch.path), after.m)
				}
			}
		}
	})
}
