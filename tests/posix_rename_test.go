package tests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	cfs "cryptpt/fs"
	"cryptpt/internal/testvault"
)

// backingPath finds the vault entry behind p by its inode number, which
// the mount shows as it is in the vault; outside the mount it is p itself.
func backingPath(t *testing.T, tv *testvault.Vault, p string) string {
	t.Helper()
	if !strings.HasPrefix(p, tv.Mnt+"/") {
		return p
	}
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	found := ""
	filepath.WalkDir(tv.Backing, func(q string, _ fs.DirEntry, err error) error {
		var bst unix.Stat_t
		if err == nil && unix.Lstat(q, &bst) == nil && bst.Ino == st.Ino {
			found = q
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no vault entry has the inode of %s", p)
	}
	return found
}

// A rename onto a directory that fails in the vault leaves the target as
// it was: usable, its entries and its directory IV intact. The source is
// made a mount point in the vault, so that the vault's rename(2) fails
// with EBUSY after the kernel's own checks passed.
func TestPosixFailedRenameKeepsTarget(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
		must(t, os.Mkdir(src, 0o755))
		must(t, os.Mkdir(dst, 0o755))
		var targets []string
		targets = append(targets, dst)
		if strings.HasPrefix(dir, tv.Path("enc-")) && tv.Opts.Policy.HasPlaintextRules() {
			// An encrypted directory may move into a plaintext area,
			// onto a plaintext directory of the same name.
			p := tv.Path("plain/" + filepath.Base(dir) + "-dst")
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.Mkdir(p, 0o755))
			targets = append(targets, p)
		}
		bsrc := backingPath(t, tv, src)
		must(t, unix.Mount(bsrc, bsrc, "", unix.MS_BIND, ""))
		defer unix.Unmount(bsrc, unix.MNT_DETACH)
		for _, target := range targets {
			if err := unix.Rename(src, target); !errors.Is(err, syscall.EBUSY) {
				t.Errorf("rename of a directory that is a mount point in the vault onto %s: %v, want EBUSY", target, err)
			}
			if _, err := os.Stat(src); err != nil {
				t.Errorf("source after the failed rename: %v", err)
			}
			if fi, err := os.Stat(target); err != nil || !fi.IsDir() {
				t.Fatalf("target after the failed rename: %v", err)
			}
			if err := os.WriteFile(filepath.Join(target, "after"), []byte("x"), 0o644); err != nil {
				t.Errorf("creating in the target after the failed rename: %v", err)
			}
			if got, err := os.ReadFile(filepath.Join(target, "after")); err != nil || string(got) != "x" {
				t.Errorf("reading in the target after the failed rename: %q, %v", got, err)
			}
		}
		must(t, unix.Unmount(bsrc, 0))
		// And once it can, the rename replaces the (again empty) target.
		must(t, os.Remove(filepath.Join(dst, "after")))
		must(t, os.WriteFile(filepath.Join(src, "inside"), []byte("y"), 0o644))
		must(t, unix.Rename(src, dst))
		if got, err := os.ReadFile(filepath.Join(dst, "inside")); err != nil || string(got) != "y" {
			t.Errorf("after the rename: %q, %v", got, err)
		}
		if _, err := os.Stat(src); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("source after the rename: %v", err)
		}
	})
}

// inoOf returns an entry's inode number as the mount shows it.
func inoOf(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st.Ino
}

// A rename keeps the entry's inode number, for every kind of entry, an
// encrypted symlink too, whose target is sealed to its place and so is
// re-sealed as a new link in the vault (pjdfstest rename/00.t). And no
// other entry shows that number meanwhile.
func TestPosixRenameKeepsInode(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		sub := filepath.Join(dir, "sub")
		must(t, os.Mkdir(sub, 0o755))
		mk := map[string]func(string) error{
			"file":    func(p string) error { return os.WriteFile(p, nil, 0o644) },
			"dir":     func(p string) error { return os.Mkdir(p, 0o755) },
			"fifo":    func(p string) error { return unix.Mkfifo(p, 0o644) },
			"chr":     func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))) },
			"symlink": func(p string) error { return os.Symlink("target", p) },
		}
		shown := map[uint64]string{}
		for kind, f := range mk {
			p := filepath.Join(dir, kind)
			must(t, f(p))
			ino := inoOf(t, p)
			for i, to := range []string{filepath.Join(dir, kind+"2"), filepath.Join(sub, kind), filepath.Join(dir, kind+"3")} {
				must(t, os.Rename(p, to))
				if got := inoOf(t, to); got != ino {
					t.Errorf("%s: inode %d after rename %d, was %d", kind, got, i, ino)
				}
				p = to
			}
			if kind == "symlink" {
				if got, err := os.Readlink(p); err != nil || got != "target" {
					t.Errorf("symlink after renames: %q, %v", got, err)
				}
			}
			shown[ino] = kind
		}
		// New entries, which may get inode numbers the vault freed.
		for i := 0; i < 64; i++ {
			p := filepath.Join(dir, fmt.Sprintf("new%d", i))
			must(t, os.WriteFile(p, nil, 0o644))
			if kind, ok := shown[inoOf(t, p)]; ok {
				t.Errorf("new file %s shows the inode number of the renamed %s", filepath.Base(p), kind)
			}
		}
		if strings.Contains(tv.Log(), "overriding ino") {
			t.Errorf("the daemon's log has inode warnings:\n%s", tv.Log())
		}
	})
}

// The same where the kernel caches no names (--shared-storage), so that
// every lstat looks the entry up again: a renamed encrypted symlink is
// still the inode the kernel knows.
func TestPosixRenameKeepsInodeUncached(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Options: cfs.Options{SharedStorage: true}})
	p := tv.Path("link")
	must(t, os.Symlink("target", p))
	ino := inoOf(t, p)
	must(t, os.Mkdir(tv.Path("sub"), 0o755))
	for _, to := range []string{tv.Path("link2"), tv.Path("sub/link")} {
		must(t, os.Rename(p, to))
		p = to
		for i := 0; i < 2; i++ {
			if got := inoOf(t, p); got != ino {
				t.Errorf("inode %d after the rename to %s, was %d", got, to, ino)
			}
		}
		if got, err := os.Readlink(p); err != nil || got != "target" {
			t.Errorf("readlink: %q, %v", got, err)
		}
	}
}
