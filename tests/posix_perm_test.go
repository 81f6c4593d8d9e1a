package tests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"cryptpt/internal/testvault"
)

// More permission checks in the manner of pjdfstest: each syscall as the
// owner, as a member of the entry's group (through a supplementary group
// and through the primary one) and as another user, against the same tree
// built on the backing filesystem (ext4). Each case gets a tree of its own,
// and each user's cases run in one helper process.

const permGroup = 4244

var permUsers = []user{
	{uid: nobody, gid: nobody},                               // owner
	{uid: 4245, gid: 4245, groups: []uint32{permGroup}},      // member, supplementary
	{uid: 4248, gid: permGroup, groups: []uint32{permGroup}}, // member, primary
	{uid: 4246, gid: 4246},                                   // other
}

// buildPermTree makes base/d holding a script f (with a user xattr), a
// symlink l to it and an empty directory sub, all owned by nobody and the
// group permGroup, and gives d (onDir) or f the mode.
func buildPermTree(t *testing.T, base string, mode uint32, onDir bool) (string, string) {
	t.Helper()
	dir := filepath.Join(base, "d")
	must(t, os.MkdirAll(dir, 0o755))
	f := filepath.Join(dir, "f")
	must(t, os.WriteFile(f, []byte("#!/bin/sh\nexit 0\n"), 0o644))
	must(t, unix.Setxattr(f, "user.k", []byte("v"), 0))
	must(t, os.Symlink("f", filepath.Join(dir, "l")))
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	for _, p := range []string{dir, f, filepath.Join(dir, "l"), filepath.Join(dir, "sub")} {
		must(t, os.Lchown(p, nobody, permGroup))
	}
	target := f
	if onDir {
		target = dir
	}
	must(t, os.Chmod(target, os.FileMode(mode)))
	return dir, f
}

func TestPosixPermissionChecksMore(t *testing.T) {
	needRoot(t)
	modes := []uint32{0o700, 0o070, 0o007, 0o555, 0o333, 0o111, 0o444, 0o000}
	type op struct {
		name  string
		onDir bool
		args  func(dir, f string) []string
	}
	ops := []op{
		{"rmdir in", true, func(dir, f string) []string { return []string{"rmdir", dir + "/sub"} }},
		{"mkfifo in", true, func(dir, f string) []string { return []string{"mknod", dir + "/p", d(unix.S_IFIFO | 0o644), "0"} }},
		{"readdir", true, func(dir, f string) []string { return []string{"readdir", dir} }},
		{"readlink below", true, func(dir, f string) []string { return []string{"readlink", dir + "/l"} }},
		{"access x below", true, func(dir, f string) []string { return []string{"access", f, "0"} }},
		{"getxattr", false, func(dir, f string) []string { return []string{"getxattr", f, "user.k"} }},
		{"setxattr", false, func(dir, f string) []string { return []string{"setxattr", f, "user.k", "w"} }},
		{"access r", false, func(dir, f string) []string { return []string{"access", f, "4"} }},
		{"access w", false, func(dir, f string) []string { return []string{"access", f, "2"} }},
		{"access x", false, func(dir, f string) []string { return []string{"access", f, "1"} }},
		{"exec", false, func(dir, f string) []string { return []string{"exec", f} }},
	}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, area string) {
		oracle := filepath.Join(filepath.Dir(tv.Mnt), "oracle-"+filepath.Base(area))
		for ui, u := range permUsers {
			var want, got []string
			var names []string
			for _, mode := range modes {
				for oi, o := range ops {
					name := fmt.Sprintf("u%d-m%o-%d", ui, mode, oi)
					d1, f1 := buildPermTree(t, filepath.Join(oracle, name), mode, o.onDir)
					d2, f2 := buildPermTree(t, filepath.Join(area, name), mode, o.onDir)
					want = append(want, o.args(d1, f1)...)
					got = append(got, o.args(d2, f2)...)
					names = append(names, fmt.Sprintf("%s as uid %d (gid %d), mode %o", o.name, u.uid, u.gid, mode))
				}
			}
			wr, gr := u.as(t, want...), u.as(t, got...)
			if len(wr) != len(names) || len(gr) != len(names) {
				t.Fatalf("helper gave %d and %d results for %d operations", len(wr), len(gr), len(names))
			}
			denied := 0
			for _, r := range wr {
				if r.errno != 0 {
					denied++
				}
			}
			if denied == 0 || denied == len(wr) {
				t.Fatalf("uid %d: ext4 denies %d of %d operations: the cases do not tell anything apart", u.uid, denied, len(wr))
			}
			for i := range names {
				if gr[i] != wr[i] {
					t.Errorf("%s: %v %q, ext4 gives %v %q", names[i], gr[i].errno, gr[i].out, wr[i].errno, wr[i].out)
				}
			}
		}
	})
}

// In a sticky directory only the owner of an entry or of the directory
// (or a privileged user) may remove the entry, whatever its kind
// (pjdfstest unlink/11.t, rmdir/11.t).
func TestPosixStickyRemove(t *testing.T) {
	needRoot(t)
	const other = 65533
	kinds := []string{"regular", "fifo", "chr", "socket", "symlink", "dir"}
	owners := []int{nobody, 0, other}
	mk := func(t *testing.T, p, kind string, owner int) {
		t.Helper()
		switch kind {
		case "regular":
			must(t, os.WriteFile(p, nil, 0o644))
		case "fifo":
			must(t, unix.Mkfifo(p, 0o644))
		case "chr":
			must(t, unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
		case "socket":
			l, err := net.Listen("unix", p)
			must(t, err)
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		case "symlink":
			must(t, os.Symlink("x", p))
		case "dir":
			must(t, os.Mkdir(p, 0o755))
		}
		must(t, os.Lchown(p, owner, owner))
	}
	build := func(t *testing.T, base string) (ops []string, paths []string) {
		t.Helper()
		for _, downer := range owners {
			for _, eowner := range owners {
				dir := filepath.Join(base, fmt.Sprintf("d%d-e%d", downer, eowner))
				must(t, os.MkdirAll(dir, 0o755))
				must(t, os.Chmod(dir, 0o777|os.ModeSticky))
				must(t, os.Chown(dir, downer, downer))
				for _, kind := range kinds {
					p := filepath.Join(dir, kind)
					mk(t, p, kind, eowner)
					if kind == "dir" {
						ops = append(ops, "rmdir", p)
					} else {
						ops = append(ops, "unlink", p)
					}
					paths = append(paths, p)
				}
			}
		}
		return ops, paths
	}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		oracle := filepath.Join(filepath.Dir(tv.Mnt), "oracle-"+filepath.Base(dir))
		wops, _ := build(t, oracle)
		gops, paths := build(t, dir)
		want, got := nobodyUser.as(t, wops...), nobodyUser.as(t, gops...)
		denied := 0
		for _, r := range want {
			if r.errno != 0 {
				denied++
			}
		}
		if denied == 0 || denied == len(want) {
			t.Fatalf("ext4 refuses %d of %d removals: the cases do not tell anything apart", denied, len(want))
		}
		for i, p := range paths {
			rel, _ := filepath.Rel(dir, p)
			if got[i].errno != want[i].errno {
				t.Errorf("nobody removing %s: %v, ext4 gives %v", rel, got[i].errno, want[i].errno)
			}
			_, err := os.Lstat(p)
			if exists := err == nil; exists != (got[i].errno != 0) {
				t.Errorf("%s: remove gave %v, and the entry exists: %v", rel, got[i].errno, exists)
			}
		}
	})
}
