package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"cryptpt/internal/testvault"
)

// Set-user-ID and set-group-ID clearing beyond write and truncate: chown,
// callers whose privilege is not their uid, and passthrough handles that
// were opened before the file became set-id.

// ctimeOf returns an entry's ctime as the mount shows it.
func ctimeOf(t *testing.T, p string) unix.Timespec {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Lstat(p, &st))
	return st.Ctim
}

// chown(2) clears S_ISUID, and S_ISGID where group execute is set or the
// caller is neither in the file's group nor holds CAP_FSETID, also when it
// changes nothing (uid and gid -1), and always changes ctime
// (pjdfstest chown/00.t; Linux's chown_common).
func TestPosixChownClearsSetID(t *testing.T) {
	needRoot(t)
	const other = 4247 // a group nobody is not in
	root := user{}
	member := user{uid: nobody, gid: nobody, groups: []uint32{nobody, other}}
	cases := []struct {
		name      string
		gid       int
		mode      uint32
		by        user
		uid, ngid int // what to chown to
		want      uint32
	}{
		{"owner -1 -1", nobody, 0o6555, nobodyUser, -1, -1, 0o555},
		{"owner -1 -1 on sgid without group exec, in group", nobody, 0o2545, nobodyUser, -1, -1, 0o2545},
		{"owner -1 -1 on sgid without group exec, not in group", other, 0o2545, nobodyUser, -1, -1, 0o545},
		{"owner -1 -1 on suid only", nobody, 0o4755, nobodyUser, -1, -1, 0o755},
		{"owner chgrp to a group of his", nobody, 0o6555, member, -1, other, 0o555},
		{"owner chgrp, sgid without group exec", nobody, 0o2545, member, -1, other, 0o2545},
		{"root -1 -1", nobody, 0o6555, root, -1, -1, 0o555},
		{"root -1 -1 on sgid without group exec", other, 0o2545, root, -1, -1, 0o2545},
		{"root chown", nobody, 0o6755, root, 0, 0, 0o755},
	}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		for i, c := range cases {
			p := filepath.Join(dir, fmt.Sprintf("f%d", i))
			must(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644))
			must(t, os.Chown(p, nobody, c.gid))
			must(t, os.Chmod(p, os.FileMode(c.mode&0o777)|goSetID(c.mode)))
			if got := modeOf(t, p) & 0o7777; got != c.mode {
				t.Fatalf("%s: set mode %o, reads %o", c.name, c.mode, got)
			}
			before := ctimeOf(t, p)
			if e := c.by.errno(t, "chown", p, d(int64(c.uid)), d(int64(c.ngid))); e != 0 {
				t.Errorf("%s: chown: %v", c.name, e)
				continue
			}
			if got := modeOf(t, p) & 0o7777; got != c.want {
				t.Errorf("%s on mode %o: mode %o, want %o", c.name, c.mode, got, c.want)
			}
			if after := ctimeOf(t, p); after == before {
				t.Errorf("%s: ctime unchanged (%v)", c.name, after)
			}
		}
		// A directory keeps its set-group-ID bit; its ctime changes.
		sub := filepath.Join(dir, "sgdir")
		must(t, os.Mkdir(sub, 0o755))
		must(t, os.Chown(sub, nobody, nobody))
		must(t, os.Chmod(sub, 0o755|os.ModeSetgid))
		before := ctimeOf(t, sub)
		if e := nobodyUser.errno(t, "chown", sub, "-1", "-1"); e != 0 {
			t.Fatalf("chown -1 -1 of a directory: %v", e)
		}
		if got := modeOf(t, sub) & 0o7777; got != 0o2755 {
			t.Errorf("directory after chown -1 -1: mode %o, want 2755", got)
		}
		if after := ctimeOf(t, sub); after == before {
			t.Errorf("directory: ctime unchanged by chown -1 -1")
		}
	})
}

// Whether a write or truncate clears set-id bits depends on CAP_FSETID,
// not on the caller's uid: root without it loses them, another user with
// it keeps them.
func TestPosixSetIDFollowsCapFsetid(t *testing.T) {
	needRoot(t)
	rootNoFsetid := user{caps: []string{"--inh-caps=-all", "--bounding-set=-fsetid"}}
	nobodyFsetid := user{uid: nobody, gid: nobody, caps: []string{"--inh-caps=+fsetid", "--ambient-caps=+fsetid"}}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		for i, c := range []struct {
			name string
			by   user
			op   []string
			want uint32
		}{
			{"write by root without CAP_FSETID", rootNoFsetid, []string{"open", "", d(unix.O_WRONLY), "0", "write", "x"}, 0o777},
			{"truncate by root without CAP_FSETID", rootNoFsetid, []string{"truncate", "", "1"}, 0o777},
			{"write by nobody with CAP_FSETID", nobodyFsetid, []string{"open", "", d(unix.O_WRONLY), "0", "write", "x"}, 0o6777},
			{"truncate by nobody with CAP_FSETID", nobodyFsetid, []string{"truncate", "", "1"}, 0o6777},
		} {
			p := filepath.Join(dir, fmt.Sprintf("f%d", i))
			must(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644))
			must(t, os.Chmod(p, 0o777|os.ModeSetuid|os.ModeSetgid))
			op := append([]string(nil), c.op...)
			op[1] = p
			for j, r := range c.by.as(t, op...) {
				if r.errno != 0 {
					t.Errorf("%s: step %d: %v", c.name, j, r.errno)
				}
			}
			if got := modeOf(t, p) & 0o7777; got != c.want {
				t.Errorf("%s: mode %o, want %o", c.name, got, c.want)
			}
		}
	})
}

// A file that becomes set-id while a handle is open for writing loses the
// bits at the next write by a caller without CAP_FSETID, whether that
// handle is served by the daemon or by kernel passthrough (plaintext areas
// hand 0644 files to the kernel).
func TestPosixSetIDAfterOpen(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		p := filepath.Join(dir, "f")
		must(t, os.WriteFile(p, []byte("data"), 0o644))
		must(t, os.Chown(p, nobody, nobody))
		res := nobodyUser.as(t, "open", p, d(unix.O_WRONLY|unix.O_APPEND), "0", "chmod", p, "06755", "stat", p, "write", "x", "stat", p)
		for i, r := range res {
			if r.errno != 0 {
				t.Fatalf("step %d: %v", i, r.errno)
			}
		}
		if res[2].out != fmt.Sprintf("%o %d %d", unix.S_IFREG|0o6755, nobody, nobody) {
			t.Errorf("after chmod 6755: %s", res[2].out)
		}
		if want := fmt.Sprintf("%o %d %d", unix.S_IFREG|0o755, nobody, nobody); res[4].out != want {
			t.Errorf("after a write by the owner: %s, want %s", res[4].out, want)
		}
		if got := modeOf(t, p) & 0o7777; got != 0o755 {
			t.Errorf("mode %o, want 755", got)
		}
	})
}
