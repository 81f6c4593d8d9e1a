package tests

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	cfs "cryptpt/fs"
	"cryptpt/internal/testvault"
)

// The POSIX tests compare what the mount does with what POSIX and ext4 do,
// in both modes: every test runs once in an encrypted and once in a
// plaintext area of one mixed --allow-other mount, once more in an
// all-encrypted --allow-other mount, which has the kernel's writeback cache
// instead of passthrough (what a vault without plaintext rules, the home
// vault among them, gets), as root and, through a helper process, as nobody
// (65534).

const nobody = 65534

// posixAreas mounts a mixed vault and an all-encrypted one, both with
// --allow-other, and runs f in an encrypted ("enc") and a plaintext
// ("plain") directory of the mixed one, in a directory of the all-encrypted
// one ("wb": its name starts with "enc-" too, so tests treat it as
// encrypted), each 0777 and owned by root, and once more in a directory of
// the backing filesystem itself ("native": ext4 here), which shows that each
// expectation is the kernel's. opts may set more mount options.
func posixAreas(t *testing.T, f func(t *testing.T, tv *testvault.Vault, dir string), opts ...func(*cfs.Options)) {
	t.Helper()
	o := cfs.Options{AllowOther: true}
	for _, fn := range opts {
		fn(&o)
	}
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"plain/"}, Options: o})
	wb := testvault.New(t, testvault.Options{Options: o})
	if !wb.Mount.Status().WritebackCache {
		t.Fatalf("the all-encrypted mount has no writeback cache: %+v", wb.Mount.Status())
	}
	// The test's temp dirs are 0700; other users must reach the mounts.
	for _, v := range []*testvault.Vault{tv, wb} {
		for _, d := range []string{filepath.Dir(v.Mnt), filepath.Dir(filepath.Dir(v.Mnt)), v.Mnt} {
			must(t, os.Chmod(d, 0o755))
		}
	}
	for _, area := range []string{"enc", "plain", "wb", "native"} {
		t.Run(area, func(t *testing.T) {
			v := tv
			dir := tv.Path(area + "-" + strings.ReplaceAll(t.Name(), "/", "-"))
			switch area {
			case "plain":
				must(t, os.MkdirAll(tv.Path("plain"), 0o755))
				dir = filepath.Join(tv.Path("plain"), filepath.Base(dir))
			case "wb":
				v = wb
				dir = wb.Path("enc-" + strings.ReplaceAll(t.Name(), "/", "-"))
			case "native":
				dir = filepath.Join(filepath.Dir(tv.Mnt), filepath.Base(dir))
			}
			must(t, os.Mkdir(dir, 0o777))
			must(t, os.Chmod(dir, 0o777))
			if area != "native" {
				if m := storedMode(t, dir); m != map[string]string{"enc": "encrypted", "wb": "encrypted", "plain": "plaintext"}[area] {
					t.Fatalf("%s is stored %s", dir, m)
				}
			}
			f(t, v, dir)
		})
	}
}

// user is who the helper runs as. caps, when set, are setpriv(1)
// capability options ("--inh-caps=+fsetid", ...): the helper then runs
// through setpriv with them.
type user struct {
	uid, gid uint32
	groups   []uint32
	caps     []string
}

var nobodyUser = user{uid: nobody, gid: nobody}

// as runs the helper's operations as u and returns one result per
// operation: the errno (0 for success) and what the operation printed.
func (u user) as(t *testing.T, ops ...string) []result {
	t.Helper()
	cmd := exec.Command(posixHelper(t), ops...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	if len(u.caps) > 0 {
		groups := "--clear-groups"
		if len(u.groups) > 0 {
			var g []string
			for _, n := range u.groups {
				g = append(g, strconv.Itoa(int(n)))
			}
			groups = "--groups=" + strings.Join(g, ",")
		}
		args := append([]string{fmt.Sprintf("--reuid=%d", u.uid), fmt.Sprintf("--regid=%d", u.gid), groups}, u.caps...)
		cmd = exec.Command("setpriv", append(append(args, posixHelper(t)), ops...)...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %q: %v: %s", ops, err, stderr.String())
	}
	var res []result
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, " ", 2)
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("helper output %q", out)
		}
		r := result{errno: syscall.Errno(n)}
		if len(f) > 1 {
			r.out = f[1]
		}
		res = append(res, r)
	}
	return res
}

// errno runs one operation as u and returns its errno.
func (u user) errno(t *testing.T, op ...string) syscall.Errno {
	t.Helper()
	return u.as(t, op...)[0].errno
}

type result struct {
	errno syscall.Errno
	out   string
}

// posixHelperSrc runs file operations given as arguments and prints one line
// per operation: the errno (0 on success), then any value. Operations (with
// their arguments) are:
//
//	umask MASK | open PATH FLAGS MODE (the fd becomes the current one)
//	write DATA | read N | ftruncate SIZE | fallocate MODE OFF LEN | close
//	truncate PATH SIZE | chmod PATH MODE | chown PATH UID GID | unlink PATH
//	rmdir PATH | mkdir PATH MODE | rename OLD NEW | link OLD NEW
//	symlink TARGET PATH | mknod PATH MODE DEV | stat PATH (prints mode uid gid)
//	utime PATH ATIME MTIME (seconds; "now" or "omit")
//	lock TYPE CMD (fcntl on the current fd: TYPE r/w/u, CMD 6=F_SETLK 37=F_OFD_SETLK)
//	flock HOW (LOCK_SH=1, LOCK_EX=2, LOCK_UN=8, +4 nonblocking)
//	access PATH MODE | exec PATH (execve, errno of the exec alone)
//	readdir PATH (prints the number of entries) | readlink PATH (prints it)
//	getxattr PATH NAME (prints the value) | setxattr PATH NAME VALUE
const posixHelperSrc = `package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

var args = os.Args[1:]

func next() string { s := args[0]; args = args[1:]; return s }
func num() int64 {
	n, err := strconv.ParseInt(next(), 0, 64)
	if err != nil {
		panic(err)
	}
	return n
}

func main() {
	fd := -1
	for len(args) > 0 {
		op := next()
		var err error
		out := ""
		switch op {
		case "open":
			p := next()
			fl := int(num())
			fd, err = syscall.Open(p, fl, uint32(num()))
		case "umask":
			syscall.Umask(int(num()))
		case "write":
			_, err = syscall.Write(fd, []byte(next()))
		case "read":
			buf := make([]byte, num())
			var n int
			n, err = syscall.Read(fd, buf)
			if err == nil {
				out = string(buf[:n])
			}
		case "ftruncate":
			err = syscall.Ftruncate(fd, num())
		case "fallocate":
			m := uint32(num())
			off := num()
			err = syscall.Fallocate(fd, m, off, num())
		case "close":
			err = syscall.Close(fd)
		case "truncate":
			p := next()
			err = syscall.Truncate(p, num())
		case "chmod":
			p := next()
			err = syscall.Chmod(p, uint32(num()))
		case "chown":
			p := next()
			u := int(num())
			err = syscall.Lchown(p, u, int(num()))
		case "unlink":
			err = syscall.Unlink(next())
		case "rmdir":
			err = syscall.Rmdir(next())
		case "mkdir":
			p := next()
			err = syscall.Mkdir(p, uint32(num()))
		case "rename":
			o := next()
			err = syscall.Rename(o, next())
		case "link":
			o := next()
			err = syscall.Link(o, next())
		case "symlink":
			o := next()
			err = syscall.Symlink(o, next())
		case "mknod":
			p := next()
			m := uint32(num())
			err = syscall.Mknod(p, m, int(num()))
		case "stat":
			var st syscall.Stat_t
			err = syscall.Lstat(next(), &st)
			out = fmt.Sprintf("%o %d %d", st.Mode, st.Uid, st.Gid)
		case "utime":
			p := next()
			ts := []syscall.Timespec{spec(next()), spec(next())}
			_, _, e := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(0xffffff9c), uintptr(unsafe.Pointer(syscall.StringBytePtr(p))), uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
			if e != 0 {
				err = e
			}
		case "lock":
			t := map[string]int16{"r": syscall.F_RDLCK, "w": syscall.F_WRLCK, "u": syscall.F_UNLCK}[next()]
			err = syscall.FcntlFlock(uintptr(fd), int(num()), &syscall.Flock_t{Type: t})
		case "flock":
			err = syscall.Flock(fd, int(num()))
		case "access":
			p := next()
			err = syscall.Access(p, uint32(num()))
		case "exec":
			var p *os.Process
			if p, err = os.StartProcess(next(), []string{"x"}, &os.ProcAttr{}); err == nil {
				p.Wait()
			}
		case "readdir":
			var f *os.File
			if f, err = os.Open(next()); err == nil {
				var names []string
				names, err = f.Readdirnames(-1)
				f.Close()
				out = strconv.Itoa(len(names))
			}
		case "readlink":
			buf := make([]byte, 4096)
			var n int
			n, err = syscall.Readlink(next(), buf)
			if err == nil {
				out = string(buf[:n])
			}
		case "getxattr":
			p := next()
			buf := make([]byte, 4096)
			var n int
			n, err = syscall.Getxattr(p, next(), buf)
			if err == nil {
				out = string(buf[:n])
			}
		case "setxattr":
			p := next()
			name := next()
			err = syscall.Setxattr(p, name, []byte(next()), 0)
		default:
			panic("unknown op " + op)
		}
		n := 0
		var en syscall.Errno
		if errors.As(err, &en) {
			n = int(en)
		} else if err != nil {
			panic(err)
		}
		if out != "" {
			fmt.Printf("%d %s\n", n, out)
		} else {
			fmt.Printf("%d\n", n)
		}
	}
}

func spec(s string) syscall.Timespec {
	switch s {
	case "now":
		return syscall.Timespec{Nsec: (1 << 30) - 1}
	case "omit":
		return syscall.Timespec{Nsec: (1 << 30) - 2}
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return syscall.Timespec{Sec: n}
}
`

var (
	posixHelperOnce sync.Once
	posixHelperPath string
	posixHelperErr  error
)

// posixHelper builds the helper once, next to the cryptpt binary, where
// every user may run it.
func posixHelper(t *testing.T) string {
	t.Helper()
	posixHelperOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(binary), "posixh")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			posixHelperErr = err
			return
		}
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module posixh\n\ngo 1.21\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(posixHelperSrc), 0o644)
		cmd := exec.Command("go", "build", "-o", "posixh", ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			posixHelperErr = fmt.Errorf("build posix helper: %v\n%s", err, out)
			return
		}
		posixHelperPath = filepath.Join(dir, "posixh")
	})
	if posixHelperErr != nil {
		t.Fatal(posixHelperErr)
	}
	return posixHelperPath
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
}

func d(n int64) string { return strconv.FormatInt(n, 10) }

func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Lstat(p, &st))
	return st.Mode
}

// rawNames lists a directory with getdents64 itself: Go's own readers leave
// out "." and "..".
func rawNames(t *testing.T, dir string) []string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		must(t, err)
		if n == 0 {
			return names
		}
		for off := 0; off < n; {
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			name := buf[off+19 : off+reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			names = append(names, string(name))
			off += reclen
		}
	}
}

// fsync(2) on a directory fd syncs the directory: programs that save by
// temp file, rename and fsync of the directory depend on it.
func TestPosixFsyncDir(t *testing.T) {
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644))
		for _, p := range []string{dir, filepath.Dir(dir), tv.Mnt} {
			f, err := os.Open(p)
			must(t, err)
			if err := unix.Fsync(int(f.Fd())); err != nil {
				t.Errorf("fsync of directory %s: %v", p, err)
			}
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				t.Errorf("fdatasync of directory %s: %v", p, err)
			}
			f.Close()
		}
		// Files still sync through their handle.
		f, err := os.OpenFile(filepath.Join(dir, "f"), os.O_RDWR, 0)
		must(t, err)
		_, err = f.WriteAt([]byte("y"), 0)
		must(t, err)
		if err := f.Sync(); err != nil {
			t.Errorf("fsync of a file: %v", err)
		}
		f.Close()
	})
}

// Mode 0 is a mode like any other: chmod 0 reads back 0, open(O_CREAT, 0)
// makes a 0000 file that the creating fd may still write, and then only
// privilege gets in.
func TestPosixModeZero(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		p := filepath.Join(dir, "chmod0")
		must(t, os.WriteFile(p, []byte("x"), 0o644))
		must(t, os.Chmod(p, 0))
		if m := modeOf(t, p); m != syscall.S_IFREG {
			t.Errorf("after chmod 0: mode %o, want %o", m, syscall.S_IFREG)
		}
		// The daemon still serves it to root (CAP_DAC_OVERRIDE).
		if got, err := os.ReadFile(p); err != nil || string(got) != "x" {
			t.Errorf("root reading a mode 0 file: %q, %v", got, err)
		}
		c := filepath.Join(dir, "creat0")
		res := nobodyUser.as(t, "umask", "0", "open", c, d(unix.O_CREAT|unix.O_WRONLY), "0", "write", "served", "close")
		for i, r := range res[1:] {
			if r.errno != 0 {
				t.Errorf("nobody: create mode 0, step %d: %v", i, r.errno)
			}
		}
		if m := modeOf(t, c); m != syscall.S_IFREG {
			t.Errorf("open(O_CREAT, 0): mode %o, want %o", m, syscall.S_IFREG)
		}
		if got, err := os.ReadFile(c); err != nil || string(got) != "served" {
			t.Errorf("root reading what nobody wrote to its mode 0 file: %q, %v", got, err)
		}
		for _, fl := range []int{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR} {
			if e := nobodyUser.errno(t, "open", c, d(int64(fl)), "0"); e != syscall.EACCES {
				t.Errorf("nobody opening its own mode 0 file (flags %d): %v, want EACCES", fl, e)
			}
		}
		// Umask is the caller's, never the daemon's.
		c777 := filepath.Join(dir, "creat777")
		nobodyUser.as(t, "umask", "0", "open", c777, d(unix.O_CREAT|unix.O_WRONLY), "0777", "close", "mkdir", c777+"d", "0777")
		if m := modeOf(t, c777); m != syscall.S_IFREG|0o777 {
			t.Errorf("open(O_CREAT, 0777) with umask 0: mode %o", m)
		}
		if m := modeOf(t, c777+"d"); m != syscall.S_IFDIR|0o777 {
			t.Errorf("mkdir(0777) with umask 0: mode %o", m)
		}
	})
}

// A listing holds "." and "..", as getdents does on every local filesystem.
func TestPosixReaddirDots(t *testing.T) {
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		for _, n := range []string{"a", "b", "c"} {
			must(t, os.WriteFile(filepath.Join(dir, n), nil, 0o644))
		}
		for _, p := range []string{dir, filepath.Dir(dir)} {
			names := rawNames(t, p)
			sort.Strings(names)
			if len(names) < 2 || names[0] != "." || names[1] != ".." {
				t.Errorf("listing of %s: %q, want . and .. first in sort order", p, names)
			}
		}
		if names := rawNames(t, dir); len(names) != 5 {
			t.Errorf("listing: %q, want 5 entries", names)
		}
	})
}

// RENAME_WHITEOUT leaves a whiteout (a 0/0 character device) at the old
// name, as on ext4.
func TestPosixRenameWhiteout(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		must(t, os.WriteFile(a, []byte("content"), 0o644))
		err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_WHITEOUT)
		if err != nil {
			t.Fatalf("RENAME_WHITEOUT: %v", err)
		}
		if got, err := os.ReadFile(b); err != nil || string(got) != "content" {
			t.Errorf("new name: %q, %v", got, err)
		}
		var st unix.Stat_t
		must(t, unix.Lstat(a, &st))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("old name after RENAME_WHITEOUT: mode %o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
		}
	})
}

// Entries made in a set-group-ID directory get its group, and directories
// its set-group-ID bit, whoever makes them.
func TestPosixSetgidDir(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		const group = 4242
		sg := filepath.Join(dir, "sg")
		must(t, os.Mkdir(sg, 0o777))
		must(t, os.Chown(sg, 0, group))
		must(t, os.Chmod(sg, 0o777|os.ModeSetgid))
		nobodyUser.as(t, "umask", "022", "open", sg+"/f", d(unix.O_CREAT|unix.O_WRONLY), "0644", "close", "mkdir", sg+"/d", "0755", "mknod", sg+"/p", d(unix.S_IFIFO|0o644), "0", "symlink", "x", sg+"/l")
		must(t, os.WriteFile(sg+"/rootfile", nil, 0o644))
		for name, want := range map[string]uint32{"f": unix.S_IFREG | 0o644, "d": unix.S_IFDIR | unix.S_ISGID | 0o755, "p": unix.S_IFIFO | 0o644, "rootfile": unix.S_IFREG | 0o644} {
			var st unix.Stat_t
			must(t, unix.Lstat(filepath.Join(sg, name), &st))
			if st.Gid != group {
				t.Errorf("%s: group %d, want the directory's %d", name, st.Gid, group)
			}
			if st.Mode != want {
				t.Errorf("%s: mode %o, want %o", name, st.Mode, want)
			}
			if name != "rootfile" && st.Uid != nobody {
				t.Errorf("%s: owner %d, want the creator", name, st.Uid)
			}
		}
		var st unix.Stat_t
		must(t, unix.Lstat(sg+"/l", &st))
		if st.Gid != group {
			t.Errorf("symlink: group %d, want %d", st.Gid, group)
		}
		// Without set-group-ID the creator's group applies.
		nobodyUser.as(t, "open", dir+"/plainf", d(unix.O_CREAT|unix.O_WRONLY), "0644")
		must(t, unix.Lstat(dir+"/plainf", &st))
		if st.Gid != nobody {
			t.Errorf("file in an ordinary directory: group %d, want the creator's", st.Gid)
		}
	})
}

// killsetid is what the kernel clears when a caller without CAP_FSETID
// modifies a file: set-user-ID always, set-group-ID when group execute is
// set or the caller is not in the file's group (Linux 6.2 and later).
func killsetid(mode uint32, callerInGroup bool) uint32 {
	kill := uint32(unix.S_ISUID)
	if mode&unix.S_IXGRP != 0 || !callerInGroup {
		kill |= unix.S_ISGID
	}
	return mode &^ kill
}

// An unprivileged write, truncate, fallocate or O_TRUNC open of a set-id
// file clears its set-id bits as the kernel does; root keeps them.
func TestPosixSetIDClearing(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		modes := []uint32{0o4777, 0o6777, 0o6666, 0o2777, 0o6766}
		ops := map[string][]string{
			"write O_WRONLY":  {"open", "", d(unix.O_WRONLY), "0", "write", "x"},
			"write O_RDWR":    {"open", "", d(unix.O_RDWR), "0", "write", "x"},
			"open O_TRUNC":    {"open", "", d(unix.O_WRONLY | unix.O_TRUNC), "0"},
			"truncate":        {"truncate", "", "1"},
			"ftruncate":       {"open", "", d(unix.O_WRONLY), "0", "ftruncate", "1"},
			"fallocate":       {"open", "", d(unix.O_WRONLY), "0", "fallocate", "0", "0", "8192"},
			"punch hole":      {"open", "", d(unix.O_WRONLY), "0", "fallocate", d(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE), "0", "1"},
			"zero range":      {"open", "", d(unix.O_WRONLY), "0", "fallocate", d(unix.FALLOC_FL_ZERO_RANGE), "0", "1"},
			"write as member": {"open", "", d(unix.O_WRONLY), "0", "write", "x"},
		}
		names := make([]string, 0, len(ops))
		for k := range ops {
			names = append(names, k)
		}
		sort.Strings(names)
		i := 0
		for _, name := range names {
			for _, mode := range modes {
				i++
				p := filepath.Join(dir, fmt.Sprintf("f%d", i))
				must(t, os.WriteFile(p, []byte("#!/bin/sh\n"), 0o644))
				must(t, os.Chmod(p, os.FileMode(mode&0o777)|goSetID(mode)))
				u, inGroup := nobodyUser, false
				if name == "write as member" {
					must(t, os.Chown(p, 0, nobody))
					must(t, os.Chmod(p, os.FileMode(mode&0o777)|goSetID(mode)))
					inGroup = true
				}
				op := append([]string(nil), ops[name]...)
				op[1] = p
				enc := strings.Contains(dir, "/enc-")
				for j, r := range u.as(t, op...) {
					if r.errno == syscall.EOPNOTSUPP && enc && strings.Contains(name, "range") || strings.Contains(name, "hole") && enc && r.errno == syscall.EOPNOTSUPP {
						continue // no hole punching in encrypted files
					}
					if r.errno != 0 {
						t.Errorf("%s on mode %o: step %d: %v", name, mode, j, r.errno)
					}
				}
				want := killsetid(mode, inGroup)
				if got := modeOf(t, p) & 0o7777; got != want && !(enc && (name == "punch hole" || name == "zero range")) {
					t.Errorf("%s by nobody on mode %o: mode %o, want %o", name, mode, got, want)
				}
			}
		}
		// Root keeps them; chown by root clears them (Linux since 2.2.13).
		p := filepath.Join(dir, "rootw")
		must(t, os.WriteFile(p, []byte("x"), 0o644))
		must(t, os.Chmod(p, 0o777|os.ModeSetuid|os.ModeSetgid))
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		must(t, err)
		_, err = f.Write([]byte("y"))
		must(t, err)
		must(t, f.Truncate(1))
		f.Close()
		if got := modeOf(t, p) & 0o7777; got != 0o6777 {
			t.Errorf("write by root: mode %o, want 6777", got)
		}
		must(t, os.Chown(p, nobody, nobody))
		if got := modeOf(t, p) & 0o7777; got != 0o777 {
			t.Errorf("chown by root of a 6777 file: mode %o, want 777", got)
		}
	})
}

func goSetID(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	return m
}

// userMount mounts a mixed vault as nobody through fusermount3, without
// --allow-other: the daemon runs as the user, as a desktop mount does.
func userMount(t *testing.T) *cliVault {
	t.Helper()
	needRoot(t)
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		must(t, os.Chmod("/dev/fuse", 0o666))
		t.Cleanup(func() { os.Chmod("/dev/fuse", st.Mode().Perm()) })
	}
	v := newCLIVault(t, "plain/")
	for _, p := range []string{v.dir, v.backing, v.mnt, v.pwfile, v.config} {
		must(t, os.Chown(p, nobody, nobody))
	}
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	filepath.Walk(v.backing, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, nobody, nobody) })
	asNobody := func(args ...string) ([]byte, error) {
		cmd := exec.Command(binary, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Env = append(os.Environ(), "HOME="+v.dir)
		return cmd.CombinedOutput()
	}
	if out, err := asNobody("mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt); err != nil {
		t.Fatalf("mount as nobody: %v\n%s", err, out)
	}
	t.Cleanup(func() { asNobody("unmount", v.mnt) })
	return v
}

// On a user's own mount the kernel checks the owner's permission bits
// (default_permissions is always on), and the daemon, running as that
// user, still serves a file whose bits deny the daemon itself what it needs
// (encrypted files are read for every write; plaintext files are opened
// read-write to be shared by passthrough).
func TestPosixOwnerModesUserMount(t *testing.T) {
	v := userMount(t)
	for _, area := range []string{"enc", "plain"} {
		t.Run(area, func(t *testing.T) {
			dir := v.path(area)
			if e := nobodyUser.errno(t, "mkdir", dir, "0755"); e != 0 {
				t.Fatalf("mkdir: %v", e)
			}
			// Root cannot look into nobody's mount: check the vault.
			if _, err := os.Stat(filepath.Join(v.backing, area)); (err == nil) != (area == "plain") {
				t.Fatalf("%s: plaintext name in the vault: %v", area, err)
			}
			z, w, r := dir+"/zero", dir+"/wonly", dir+"/ronly"
			steps := []struct {
				op   []string
				want syscall.Errno
			}{
				{[]string{"umask", "0", "open", z, d(unix.O_CREAT | unix.O_WRONLY), "0", "write", "abc", "close"}, 0},
				{[]string{"open", z, d(unix.O_RDONLY), "0"}, syscall.EACCES},
				{[]string{"open", z, d(unix.O_WRONLY), "0"}, syscall.EACCES},
				{[]string{"open", w, d(unix.O_CREAT | unix.O_WRONLY), "0200", "write", "abc", "close"}, 0},
				{[]string{"open", w, d(unix.O_WRONLY), "0", "write", "x", "close"}, 0},
				{[]string{"open", w, d(unix.O_RDONLY), "0"}, syscall.EACCES},
				{[]string{"open", r, d(unix.O_CREAT | unix.O_WRONLY), "0400", "write", "abc", "close"}, 0},
				{[]string{"open", r, d(unix.O_RDONLY), "0", "read", "10", "close"}, 0},
				{[]string{"open", r, d(unix.O_WRONLY), "0"}, syscall.EACCES},
				{[]string{"chmod", z, "0600", "open", z, d(unix.O_RDONLY), "0", "read", "10"}, 0},
			}
			for _, s := range steps {
				res := nobodyUser.as(t, s.op...)
				got := res[len(res)-1].errno
				for _, r := range res {
					if r.errno != 0 {
						got = r.errno
						break
					}
				}
				if got != s.want {
					t.Errorf("%q: %v, want %v", s.op, got, s.want)
				}
			}
			for p, want := range map[string]string{w: "100200", r: "100400"} {
				if st := nobodyUser.as(t, "stat", p)[0].out; !strings.HasPrefix(st, want+" ") {
					t.Errorf("%s: mode/uid/gid %s after the daemon opened it, want mode %s", p, st, want)
				}
			}
			res := nobodyUser.as(t, "chmod", w, "0600", "open", w, d(unix.O_RDONLY), "0", "read", "10")
			if res[2].out != "xbc" {
				t.Errorf("write-only file holds %q, want %q", res[2].out, "xbc")
			}
			// Directories whose mode keeps the daemon out (it writes the
			// directory IV into every new directory).
			for _, mode := range []string{"0", "0500", "0100", "0755"} {
				sub := dir + "/dir" + mode
				res := nobodyUser.as(t, "umask", "0", "mkdir", sub, mode, "stat", sub, "chmod", sub, "0700", "open", sub+"/f", d(unix.O_CREAT|unix.O_WRONLY), "0644")
				m, _ := strconv.ParseUint(mode, 8, 32)
				if res[1].errno != 0 || !strings.HasPrefix(res[2].out, strconv.FormatUint(unix.S_IFDIR|m, 8)+" ") {
					t.Errorf("mkdir %s mode %s: %v, stat %q", sub, mode, res[1].errno, res[2].out)
				}
				if res[4].errno != 0 {
					t.Errorf("create in a directory made with mode %s: %v", mode, res[4].errno)
				}
			}
		})
	}
}

// mountOptions returns the per-mount options of the mount at mnt.
func mountOptions(t *testing.T, mnt string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == mnt {
			return strings.Split(f[5], ",")
		}
	}
	t.Fatalf("%s is not in the mount table", mnt)
	return nil
}

// Device nodes are made for whoever the kernel lets ask (CAP_MKNOD), under
// encrypted names in encrypted areas, and never open through the mount,
// which is nodev. mknod of a regular file makes an empty file.
func TestPosixDeviceNodes(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		native := !strings.HasPrefix(dir, tv.Mnt)
		if !native {
			opts := mountOptions(t, tv.Mnt)
			if !slices.Contains(opts, "nodev") || !slices.Contains(opts, "nosuid") {
				t.Errorf("mount options %q, want nodev and nosuid", opts)
			}
		}
		old := unix.Umask(0)
		defer unix.Umask(old)
		chr, blk, reg := filepath.Join(dir, "chr-dev-node"), filepath.Join(dir, "blk-dev-node"), filepath.Join(dir, "reg")
		must(t, unix.Mknod(chr, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, unix.Mknod(blk, unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
		must(t, unix.Mknod(reg, unix.S_IFREG|0o640, 0))
		for p, want := range map[string][2]uint64{chr: {unix.S_IFCHR | 0o666, unix.Mkdev(1, 3)}, blk: {unix.S_IFBLK | 0o660, unix.Mkdev(7, 200)}, reg: {unix.S_IFREG | 0o640, 0}} {
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			if uint64(st.Mode) != want[0] || st.Rdev != want[1] {
				t.Errorf("%s: mode %o rdev %x, want %o %x", p, st.Mode, st.Rdev, want[0], want[1])
			}
		}
		if !native {
			if _, err := os.OpenFile(chr, os.O_RDWR, 0); !errors.Is(err, syscall.EACCES) {
				t.Errorf("opening a device node through the mount: %v, want EACCES (nodev)", err)
			}
		}
		if e := nobodyUser.errno(t, "mknod", filepath.Join(dir, "by-nobody"), d(unix.S_IFCHR|0o666), d(int64(unix.Mkdev(1, 3)))); e != syscall.EPERM {
			t.Errorf("mknod by nobody: %v, want EPERM", e)
		}
		if strings.Contains(dir, "/enc-") {
			if hits := vaultContains(t, tv.Backing, []byte("dev-node")); len(hits) != 0 {
				t.Errorf("device node names in the vault in plaintext: %q", hits)
			}
		}
		names := rawNames(t, dir)
		sort.Strings(names)
		if want := []string{".", "..", "blk-dev-node", "chr-dev-node", "reg"}; !slices.Equal(names, want) {
			t.Errorf("listing %q, want %q", names, want)
		}
		must(t, os.Remove(chr))
		must(t, os.Remove(blk))
	})
}

// POSIX ACLs set through the mount are enforced: the kernel checks them
// (default_permissions with FUSE_POSIX_ACL) and new entries inherit a
// directory's default ACL, which also overrides the umask.
func TestPosixACL(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"setfacl", "getfacl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s missing: install the Debian package acl (make deps-test)", tool)
		}
	}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		setfacl := func(args ...string) {
			t.Helper()
			if out, err := exec.Command("setfacl", args...).CombinedOutput(); err != nil {
				t.Fatalf("setfacl %q: %v\n%s", args, err, out)
			}
		}
		deny, allow := filepath.Join(dir, "deny"), filepath.Join(dir, "allow")
		must(t, os.WriteFile(deny, []byte("x"), 0o644))
		must(t, os.WriteFile(allow, []byte("x"), 0o600))
		setfacl("-m", "u:nobody:---", deny)
		setfacl("-m", "u:nobody:rw", allow)
		out, err := exec.Command("getfacl", "-c", deny).CombinedOutput()
		must(t, err)
		if !strings.Contains(string(out), "user:nobody:---") {
			t.Errorf("getfacl: %s", out)
		}
		if e := nobodyUser.errno(t, "open", deny, d(unix.O_RDONLY), "0"); e != syscall.EACCES {
			t.Errorf("nobody reading a file whose ACL denies it: %v, want EACCES", e)
		}
		if r := nobodyUser.as(t, "open", allow, d(unix.O_RDWR), "0", "read", "4"); r[0].errno != 0 || r[1].out != "x" {
			t.Errorf("nobody reading a 0600 root file whose ACL allows it: %v", r)
		}
		// The ACL mask shows as the group bits, as on ext4.
		if m := modeOf(t, allow) & 0o777; m != 0o660 {
			t.Errorf("mode after setfacl u:nobody:rw on 0600: %o, want 660", m)
		}
		// A default ACL is inherited, its mask included.
		sub := filepath.Join(dir, "sub")
		must(t, os.Mkdir(sub, 0o777))
		must(t, os.Chmod(sub, 0o777))
		setfacl("-d", "-m", "u::rwx,g::rwx,o::r-x,m::---,u:nobody:rwx", sub)
		res := nobodyUser.as(t, "umask", "022", "open", sub+"/f", d(unix.O_CREAT|unix.O_WRONLY), "0666", "close")
		if res[1].errno != 0 {
			t.Fatalf("create in a directory with a default ACL: %v", res[1].errno)
		}
		out, err = exec.Command("getfacl", "-c", sub+"/f").CombinedOutput()
		must(t, err)
		if !strings.Contains(string(out), "user:nobody:rwx") || !strings.Contains(string(out), "mask::---") {
			t.Errorf("new file did not inherit the default ACL: %s", out)
		}
		if m := modeOf(t, sub+"/f") & 0o777; m != 0o604 {
			t.Errorf("file created under a default ACL with mask ---: mode %o, want 604", m)
		}
		// Under a default ACL the umask does not apply; elsewhere it does.
		sub2 := filepath.Join(dir, "sub2")
		must(t, os.Mkdir(sub2, 0o777))
		must(t, os.Chmod(sub2, 0o777))
		setfacl("-d", "-m", "u::rwx,g::rwx,o::rwx", sub2)
		nobodyUser.as(t, "umask", "077", "open", sub2+"/f", d(unix.O_CREAT|unix.O_WRONLY), "0666", "close", "mkdir", sub2+"/d", "0777",
			"open", dir+"/masked", d(unix.O_CREAT|unix.O_WRONLY), "0666", "close", "mkdir", dir+"/maskedd", "0777")
		for p, want := range map[string]uint32{sub2 + "/f": 0o666, sub2 + "/d": 0o777, dir + "/masked": 0o600, dir + "/maskedd": 0o700} {
			if m := modeOf(t, p) & 0o777; m != want {
				t.Errorf("%s (umask 077): mode %o, want %o", filepath.Base(p), m, want)
			}
		}
		// Removing the entry lets nobody in again.
		setfacl("-b", deny)
		if e := nobodyUser.errno(t, "open", deny, d(unix.O_RDONLY), "0"); e != 0 {
			t.Errorf("nobody reading after setfacl -b: %v", e)
		}
	})
}

// Names of 1, 254 and 255 bytes work for every kind of entry and for
// xattrs, 256 bytes is ENAMETOOLONG, and a path of PATH_MAX-1 bytes made of
// 255-byte names can be created and stat'ed, in both modes.
func TestPosixNameLimits(t *testing.T) {
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		for _, n := range []int{1, 254, 255} {
			name := strings.Repeat("n", n)
			sub := filepath.Join(dir, fmt.Sprintf("d%d", n))
			must(t, os.Mkdir(sub, 0o755))
			p := filepath.Join(sub, name)
			must(t, os.WriteFile(p, []byte("x"), 0o644))
			if err := unix.Setxattr(p, "user.k", []byte("v"), 0); err != nil {
				t.Errorf("setxattr on a %d-byte name: %v", n, err)
			}
			buf := make([]byte, 8)
			if sz, err := unix.Getxattr(p, "user.k", buf); err != nil || string(buf[:sz]) != "v" {
				t.Errorf("getxattr on a %d-byte name: %v", n, err)
			}
			must(t, os.Rename(p, p[:len(p)-1]+"m"))
			must(t, os.Remove(p[:len(p)-1]+"m"))
			must(t, os.Mkdir(p, 0o755))
			must(t, os.Symlink(name, filepath.Join(p, name)))
			if got, err := os.Readlink(filepath.Join(p, name)); err != nil || got != name {
				t.Errorf("symlink named and pointing at %d bytes: %q, %v", n, got, err)
			}
			must(t, unix.Mkfifo(filepath.Join(p, "f"+name[1:]), 0o644))
			names := rawNames(t, p)
			sort.Strings(names)
			if want := []string{".", "..", "f" + name[1:], name}; !slices.Equal(names, want) && n > 1 {
				t.Errorf("listing of %d-byte names: %d entries", n, len(names))
			}
		}
		long := strings.Repeat("x", 256)
		if err := os.WriteFile(filepath.Join(dir, long), nil, 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("256-byte name: %v, want ENAMETOOLONG", err)
		}
		if _, err := os.Stat(filepath.Join(dir, long)); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("stat of a 256-byte name: %v, want ENAMETOOLONG", err)
		}
		// PATH_MAX-1 bytes: 255-byte directories, then a file that fills it.
		p := filepath.Join(dir, "deep")
		must(t, os.Mkdir(p, 0o755))
		for len(p)+1+255+1+1 <= unix.PathMax-1 {
			p = filepath.Join(p, strings.Repeat("p", 255))
			must(t, os.Mkdir(p, 0o755))
		}
		p = filepath.Join(p, strings.Repeat("f", unix.PathMax-1-len(p)-1))
		if len(p) != unix.PathMax-1 {
			t.Fatalf("built a path of %d bytes", len(p))
		}
		if err := os.WriteFile(p, []byte("deep"), 0o644); err != nil {
			t.Fatalf("create at a path of PATH_MAX-1 bytes: %v", err)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != "deep" {
			t.Errorf("read at PATH_MAX-1: %q, %v", got, err)
		}
		if err := unix.Lsetxattr(p, "user.k", []byte("v"), 0); err != nil {
			t.Errorf("setxattr at PATH_MAX-1: %v", err)
		}
		if err := os.WriteFile(p+"g", nil, 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("path of PATH_MAX bytes: %v, want ENAMETOOLONG", err)
		}
		// Symlink targets: PATH_MAX-1 bytes where stored as they are;
		// encrypted, the sealed and encoded form must fit (docs/format.md).
		max := unix.PathMax - 1
		if strings.Contains(dir, "/enc-") {
			max = 3043
		}
		for _, n := range []int{max, max + 1} {
			target := strings.Repeat("t", n)
			err := os.Symlink(target, filepath.Join(dir, fmt.Sprintf("sym%d", n)))
			if n == max && err != nil {
				t.Errorf("symlink to %d bytes: %v", n, err)
			} else if n > max && !errors.Is(err, syscall.ENAMETOOLONG) {
				t.Errorf("symlink to %d bytes: %v, want ENAMETOOLONG", n, err)
			}
			if got, err := os.Readlink(filepath.Join(dir, fmt.Sprintf("sym%d", n))); n == max && (err != nil || got != target) {
				t.Errorf("readlink of a %d-byte target: %d bytes, %v", n, len(got), err)
			}
		}
	})
}

// Locks behave as the kernel's own, in both modes: POSIX locks belong to
// the process and go with any of its fds to the file, OFD locks belong to
// the open file description and go with its last fd, flock locks likewise,
// and nothing outlives a close and reopen.
func TestPosixLocks(t *testing.T) {
	needRoot(t)
	root := user{}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		p := filepath.Join(dir, "locked")
		must(t, os.WriteFile(p, []byte("data"), 0o666))
		open := func() int {
			t.Helper()
			fd, err := unix.Open(p, unix.O_RDWR, 0)
			must(t, err)
			return fd
		}
		wr := func(fd, cmd int) error {
			return unix.FcntlFlock(uintptr(fd), cmd, &unix.Flock_t{Type: unix.F_WRLCK})
		}
		other := func(cmd int) syscall.Errno {
			t.Helper()
			return root.as(t, "open", p, d(unix.O_RDWR), "0", "lock", "w", d(int64(cmd)))[1].errno
		}
		// POSIX: one owner per process; any close drops them.
		fd1, fd2 := open(), open()
		must(t, wr(fd1, unix.F_SETLK))
		if err := wr(fd2, unix.F_SETLK); err != nil {
			t.Errorf("POSIX lock through a second fd of the same process: %v", err)
		}
		if e := other(unix.F_SETLK); e != syscall.EAGAIN {
			t.Errorf("POSIX lock by another process: %v, want EAGAIN", e)
		}
		unix.Close(fd2)
		if e := other(unix.F_SETLK); e != 0 {
			t.Errorf("POSIX lock after the holder closed another fd of the file: %v", e)
		}
		unix.Close(fd1)
		// OFD: one owner per open file description, gone with its last fd.
		fd1, fd2 = open(), open()
		must(t, wr(fd1, unix.F_OFD_SETLK))
		if err := wr(fd2, unix.F_OFD_SETLK); err != unix.EAGAIN {
			t.Errorf("OFD lock through another open of the same process: %v, want EAGAIN", err)
		}
		fd3, err := unix.Dup(fd1)
		must(t, err)
		unix.Close(fd1)
		if e := other(unix.F_OFD_SETLK); e != syscall.EAGAIN {
			t.Errorf("OFD lock while a dup of the holder is open: %v, want EAGAIN", e)
		}
		unix.Close(fd3)
		if e := other(unix.F_OFD_SETLK); e != 0 {
			t.Errorf("OFD lock after the last fd of the holder closed: %v", e)
		}
		if err := wr(fd2, unix.F_OFD_SETLK); err != nil {
			t.Errorf("OFD lock after the holder closed: %v", err)
		}
		unix.Close(fd2)
		// flock: per open file description too.
		fd1, fd2 = open(), open()
		must(t, unix.Flock(fd1, unix.LOCK_EX))
		if err := unix.Flock(fd2, unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
			t.Errorf("flock through another open: %v, want EWOULDBLOCK", err)
		}
		if e := root.as(t, "open", p, d(unix.O_RDONLY), "0", "flock", d(unix.LOCK_SH|unix.LOCK_NB))[1].errno; e != syscall.EWOULDBLOCK {
			t.Errorf("flock by another process: %v, want EWOULDBLOCK", e)
		}
		unix.Close(fd1)
		if err := unix.Flock(fd2, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Errorf("flock after the holder closed: %v", err)
		}
		unix.Close(fd2)
		// Close and reopen: no lock survives.
		for _, cmd := range []int{unix.F_SETLK, unix.F_OFD_SETLK} {
			fd := open()
			must(t, wr(fd, cmd))
			unix.Close(fd)
			fd = open()
			if e := other(cmd); e != 0 {
				t.Errorf("lock (cmd %d) after close and reopen: %v", cmd, e)
			}
			unix.Close(fd)
		}
	})
}

// Large reads served by the daemon fit the splice pipe: a request of
// MaxWrite bytes plus its header must not exceed the pipe's maximum size,
// or go-fuse logs "trySplice: ... max pipe size" and copies instead.
func TestPosixReadsFitSplicePipe(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		if !strings.HasPrefix(dir, tv.Mnt) {
			return
		}
		data := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16)
		p := filepath.Join(dir, "big")
		must(t, os.WriteFile(p, data, 0o644))
		must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
		f, err := os.Open(p)
		must(t, err)
		buf := make([]byte, 4<<20)
		for off := int64(0); off < int64(len(data)); off += int64(len(buf)) {
			n, err := f.ReadAt(buf, off)
			if err != nil || !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
				t.Fatalf("read at %d: %d bytes, %v", off, n, err)
			}
		}
		f.Close()
		// O_DIRECT reads reach the daemon at full request size.
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECT, 0)
		must(t, err)
		abuf, err := unix.Mmap(-1, 0, 2<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		must(t, err)
		defer unix.Munmap(abuf)
		for off := int64(0); off < int64(len(data)); off += int64(len(abuf)) {
			n, err := unix.Pread(fd, abuf, off)
			if err != nil || !bytes.Equal(abuf[:n], data[off:off+int64(n)]) {
				t.Fatalf("O_DIRECT read at %d: %d bytes, %v", off, n, err)
			}
		}
		unix.Close(fd)
		if strings.Contains(tv.Log(), "trySplice") {
			t.Errorf("the daemon's log has splice failures:\n%s", tv.Log())
		}
	}, func(o *cfs.Options) { o.NoPassthrough = true })
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// unitNS runs script with sh in a mount namespace of its own, in which
// /dev/fuse is a node every user may open and /etc/fuse.conf holds conf:
// what a daemon of the system unit meets on a desktop, without changing
// either for the rest of the machine (where other tests change /dev/fuse's
// mode too). Mounts made by the script stay in the namespace.
func unitNS(t *testing.T, conf, script string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "fuse.conf"), []byte(conf), 0o644))
	setup := fmt.Sprintf("set -e\nmknod %[1]s/fuse c 10 229\nchmod 666 %[1]s/fuse\nmount --bind %[1]s/fuse /dev/fuse\nmount --bind %[1]s/fuse.conf /etc/fuse.conf\nset +e\n", shq(dir))
	out, err := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", setup+script).CombinedOutput()
	if err != nil {
		t.Fatalf("unshare: %v\n%s", err, out)
	}
	return string(out)
}

// unitCmd is the shell command that runs cryptpt with args as the system
// unit runs it: as nobody, with CAP_SYS_ADMIN alone.
func unitCmd(v *cliVault, args ...string) string {
	q := []string{"HOME=" + shq(v.dir), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=+sys_admin", "--ambient-caps=+sys_admin", "--bounding-set=-all,+sys_admin", "--no-new-privs", shq(binary)}
	for _, a := range args {
		q = append(q, shq(a))
	}
	return strings.Join(q, " ")
}

// unitMount mounts the vault on mp as the system unit's daemon would, with
// /etc/fuse.conf holding conf, and reports whether it got mounted and what
// cryptpt said; it unmounts again.
func unitMount(t *testing.T, v *cliVault, conf, mp string, extra ...string) (bool, string) {
	t.Helper()
	args := append([]string{"mount", "--config", v.config, "--passfile", v.pwfile}, extra...)
	script := unitCmd(v, append(args, v.backing, mp)...) + " 2>&1\n" +
		"if grep -q " + shq(" "+mp+" ") + " /proc/self/mountinfo; then echo CRYPTPT-MOUNTED; " + unitCmd(v, "unmount", mp) + "; fi\n"
	out := unitNS(t, conf, script)
	return strings.Contains(out, "CRYPTPT-MOUNTED"), out
}

// A daemon that mounts by itself with only CAP_SYS_ADMIN (the system unit)
// obeys fusermount3's rule: it mounts only where its user owns the
// mountpoint or may write to it, and a sticky one only if owned.
func TestPosixDirectMountpointRules(t *testing.T) {
	needRoot(t)
	v := newCLIVault(t)
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	filepath.Walk(v.dir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, nobody, nobody) })
	cases := []struct {
		name  string
		uid   int
		mode  os.FileMode
		allow bool
	}{
		{"root-owned 0555", 0, 0o555, false},
		{"root-owned 0755", 0, 0o755, false},
		{"root-owned 0777", 0, 0o777, true},
		{"root-owned sticky 1777", 0, 0o777 | os.ModeSticky, false},
		{"own 0555", nobody, 0o555, true},
		{"own sticky 1755", nobody, 0o755 | os.ModeSticky, true},
	}
	for i, c := range cases {
		mp := filepath.Join(v.dir, fmt.Sprintf("mp%d", i))
		must(t, os.Mkdir(mp, 0o755))
		must(t, os.Chown(mp, c.uid, c.uid))
		must(t, os.Chmod(mp, c.mode))
		mounted, out := unitMount(t, v, "", mp)
		if mounted != c.allow {
			t.Errorf("%s: mounted %v, want %v\n%s", c.name, mounted, c.allow, out)
		}
		if !c.allow && !strings.Contains(out, "neither owned nor writable") {
			t.Errorf("%s: refusal does not say why: %s", c.name, out)
		}
	}
	// A symlink in the path counts as where it leads.
	link := filepath.Join(v.dir, "link")
	must(t, os.Symlink(filepath.Join(v.dir, "mp1"), link))
	if mounted, out := unitMount(t, v, "", link); mounted {
		t.Errorf("mounted through a symlink to a root-owned 0755 directory:\n%s", out)
	}
}

// Such a daemon gets allow_other only where /etc/fuse.conf has
// user_allow_other, as fusermount3 demands.
func TestPosixDirectMountAllowOther(t *testing.T) {
	needRoot(t)
	v := newCLIVault(t)
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	filepath.Walk(v.dir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, nobody, nobody) })
	mp := filepath.Join(v.dir, "mp")
	must(t, os.Mkdir(mp, 0o755))
	must(t, os.Chown(mp, nobody, nobody))
	for _, c := range []struct {
		conf  string
		allow bool
	}{
		{"# user_allow_other\nmount_max = 1000\n", false},
		{"mount_max = 1000\nuser_allow_other\n", true},
	} {
		mounted, out := unitMount(t, v, c.conf, mp, "--allow-other")
		if mounted != c.allow {
			t.Errorf("fuse.conf %q: mounted %v, want %v\n%s", c.conf, mounted, c.allow, out)
		}
		if !c.allow && !strings.Contains(out, "user_allow_other") {
			t.Errorf("fuse.conf %q: the refusal does not say why: %s", c.conf, out)
		}
		if mounted, out := unitMount(t, v, c.conf, mp); !mounted {
			t.Errorf("fuse.conf %q: no mount without --allow-other:\n%s", c.conf, out)
		}
	}
}

// renameCase is one rename by nobody between directories of other users.
type renameCase struct {
	srcOwner, dstOwner   int
	srcSticky, dstSticky bool
	entryOwner           int
	kind                 string // file, dir, fifo, chr or symlink
	target               int    // owner of an entry of that kind already at the new name; -1 for none
}

// build makes the case under base and returns the old and new names.
func (c renameCase) build(t *testing.T, base string) (string, string) {
	t.Helper()
	mk := func(p string, owner int, mode os.FileMode) {
		t.Helper()
		must(t, os.Lchown(p, owner, owner))
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink == 0 {
			must(t, os.Chmod(p, mode))
		}
	}
	make := func(p string) {
		t.Helper()
		switch c.kind {
		case "file":
			must(t, os.WriteFile(p, []byte(p), 0o644))
		case "dir":
			must(t, os.Mkdir(p, 0o755))
		case "fifo":
			must(t, unix.Mkfifo(p, 0o644))
		case "chr":
			must(t, unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
		case "symlink":
			must(t, os.Symlink("target", p))
		}
	}
	must(t, os.Mkdir(base, 0o755))
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	must(t, os.Mkdir(src, 0o755))
	must(t, os.Mkdir(dst, 0o755))
	sticky := func(b bool) os.FileMode {
		if b {
			return os.ModeSticky | 0o777
		}
		return 0o777
	}
	mk(src, c.srcOwner, sticky(c.srcSticky))
	mk(dst, c.dstOwner, sticky(c.dstSticky))
	old, new := filepath.Join(src, "e"), filepath.Join(dst, "e2")
	make(old)
	mk(old, c.entryOwner, 0o755)
	if c.target >= 0 {
		make(new)
		mk(new, c.target, 0o755)
	}
	return old, new
}

// Renames by an unprivileged user across directories of others, with and
// without the sticky bit, give ext4's result (built the same way on the
// backing filesystem next to the mount), and afterwards exactly one of the
// two names holds the entry.
func TestPosixRenameAcrossOwners(t *testing.T) {
	needRoot(t)
	const other = 4243
	var cases []renameCase
	for _, so := range []int{0, nobody} {
		for _, do := range []int{0, nobody} {
			for _, ss := range []bool{false, true} {
				for _, ds := range []bool{false, true} {
					for _, eo := range []int{nobody, other} {
						for _, kind := range []string{"file", "dir", "fifo", "chr", "symlink"} {
							for _, tgt := range []int{-1, other} {
								cases = append(cases, renameCase{so, do, ss, ds, eo, kind, tgt})
							}
						}
					}
				}
			}
		}
	}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		oracle := filepath.Join(filepath.Dir(tv.Mnt), "oracle-"+filepath.Base(dir))
		must(t, os.Mkdir(oracle, 0o755))
		for i, c := range cases {
			o1, n1 := c.build(t, filepath.Join(oracle, d(int64(i))))
			o2, n2 := c.build(t, filepath.Join(dir, d(int64(i))))
			want := nobodyUser.errno(t, "rename", o1, n1)
			got := nobodyUser.errno(t, "rename", o2, n2)
			if got != want {
				t.Errorf("%+v: %v, ext4 gives %v", c, got, want)
			}
			_, oerr := os.Lstat(o2)
			nst, nerr := os.Lstat(n2)
			switch {
			case got == 0 && (oerr == nil || nerr != nil):
				t.Errorf("%+v: renamed, yet old name %v, new name %v", c, oerr, nerr)
			case got != 0 && oerr != nil:
				t.Errorf("%+v: failed, and the old name is gone: %v", c, oerr)
			case got != 0 && c.target < 0 && nerr == nil:
				t.Errorf("%+v: failed, and the new name exists too (%v)", c, nst.Mode())
			}
		}
	})
}

// Each syscall checks the caller as owner, group member or other, as ext4
// does (the oracle: the same tree on the backing filesystem).
func TestPosixPermissionChecks(t *testing.T) {
	needRoot(t)
	const grp = 4244
	owner := user{uid: nobody, gid: nobody}
	member := user{uid: 4245, gid: 4245, groups: []uint32{grp}}
	other := user{uid: 4246, gid: 4246}
	// The entry's mode grants one class only, so each caller sees another.
	modes := []uint32{0o700, 0o070, 0o007, 0o555, 0o333, 0o050, 0o000}
	type op struct {
		name string
		args func(dir, f string) []string
	}
	ops := []op{
		{"open r", func(dir, f string) []string { return []string{"open", f, d(unix.O_RDONLY), "0"} }},
		{"open w", func(dir, f string) []string { return []string{"open", f, d(unix.O_WRONLY), "0"} }},
		{"open rw", func(dir, f string) []string { return []string{"open", f, d(unix.O_RDWR), "0"} }},
		{"truncate", func(dir, f string) []string { return []string{"truncate", f, "1"} }},
		{"create in", func(dir, f string) []string {
			return []string{"open", dir + "/new", d(unix.O_CREAT | unix.O_WRONLY), "0644"}
		}},
		{"mkdir in", func(dir, f string) []string { return []string{"mkdir", dir + "/newd", "0755"} }},
		{"unlink in", func(dir, f string) []string { return []string{"unlink", f} }},
		{"rename in", func(dir, f string) []string { return []string{"rename", f, dir + "/moved"} }},
		{"link in", func(dir, f string) []string { return []string{"link", f, dir + "/hard"} }},
		{"symlink in", func(dir, f string) []string { return []string{"symlink", "x", dir + "/sym"} }},
		{"stat below", func(dir, f string) []string { return []string{"stat", f} }},
		{"chmod", func(dir, f string) []string { return []string{"chmod", f, "0644"} }},
		{"chown", func(dir, f string) []string { return []string{"chown", f, d(nobody), d(grp)} }},
		{"utime now", func(dir, f string) []string { return []string{"utime", f, "now", "now"} }},
		{"utime set", func(dir, f string) []string { return []string{"utime", f, "1000", "1000"} }},
	}
	build := func(base string, mode uint32, onDir bool) (string, string) {
		dir := filepath.Join(base, "d")
		must(t, os.MkdirAll(dir, 0o755))
		f := filepath.Join(dir, "f")
		must(t, os.WriteFile(f, []byte("data"), 0o644))
		for _, p := range []string{dir, f} {
			must(t, os.Chown(p, nobody, grp))
		}
		target := f
		if onDir {
			target = dir
		}
		must(t, os.Chmod(target, os.FileMode(mode)))
		return dir, f
	}
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, area string) {
		oracle := filepath.Join(filepath.Dir(tv.Mnt), "oracle-"+filepath.Base(area))
		i := 0
		for _, mode := range modes {
			for _, o := range ops {
				onDir := strings.HasSuffix(o.name, " in") || o.name == "stat below"
				for _, u := range []user{owner, member, other} {
					i++
					d1, f1 := build(filepath.Join(oracle, d(int64(i))), mode, onDir)
					d2, f2 := build(filepath.Join(area, d(int64(i))), mode, onDir)
					want := u.as(t, o.args(d1, f1)...)[0].errno
					got := u.as(t, o.args(d2, f2)...)[0].errno
					if got != want {
						t.Errorf("%s as uid %d, mode %o: %v, ext4 gives %v", o.name, u.uid, mode, got, want)
					}
				}
			}
		}
	})
}

// utimensat: UTIME_NOW and UTIME_OMIT, times before 1970 and after 2038
// and 2262, nanoseconds; by the owner and, for UTIME_NOW only, anyone who may write.
func TestPosixUtimens(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		p := filepath.Join(dir, "f")
		must(t, os.WriteFile(p, nil, 0o666))
		must(t, os.Chmod(p, 0o666))
		times := func() (unix.Timespec, unix.Timespec) {
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			return st.Atim, st.Mtim
		}
		for _, ts := range [][2]unix.Timespec{
			{{Sec: -1000000000, Nsec: 5}, {Sec: -1, Nsec: 999999999}},
			{{Sec: 1 << 32, Nsec: 123456789}, {Sec: 4102444800, Nsec: 1}},
			{{Sec: 0}, {Sec: 2147483648}},
			// Past 2262 and close to 1901, the ends of ext4's range:
			// beyond what nanoseconds since 1970 hold in an int64.
			{{Sec: 10413792000, Nsec: 7}, {Sec: 13569465600 - 1, Nsec: 999999999}},
			{{Sec: -2147483648}, {Sec: -2000000000, Nsec: 1}},
		} {
			must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts[:], unix.AT_SYMLINK_NOFOLLOW))
			if a, m := times(); a != ts[0] || m != ts[1] {
				t.Errorf("set %v: read back %v %v", ts, a, m)
			}
		}
		a0, _ := times()
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: 77}}, 0))
		if a, m := times(); a != a0 || m.Sec != 77 {
			t.Errorf("UTIME_OMIT atime: %v %v, want atime %v kept and mtime 77", a, m, a0)
		}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_OMIT}}, 0))
		if a, m := times(); a.Sec < 1600000000 || m.Sec != 77 {
			t.Errorf("UTIME_NOW atime, UTIME_OMIT mtime: %v %v", a, m)
		}
		// Not the owner: UTIME_NOW needs write access, explicit times
		// ownership.
		if e := nobodyUser.errno(t, "utime", p, "now", "now"); e != 0 {
			t.Errorf("UTIME_NOW by a writer who is not the owner: %v", e)
		}
		if e := nobodyUser.errno(t, "utime", p, "5", "5"); e != syscall.EPERM {
			t.Errorf("explicit times by a non-owner: %v, want EPERM", e)
		}
		must(t, os.Chmod(p, 0o644))
		if e := nobodyUser.errno(t, "utime", p, "now", "now"); e != syscall.EACCES {
			t.Errorf("UTIME_NOW by a non-owner without write access: %v, want EACCES", e)
		}
	})
}

// Link counts follow renames over hard links, and a directory renamed onto
// an empty directory replaces it, onto a non-empty one fails.
func TestPosixLinksAndDirRenames(t *testing.T) {
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		nlink := func(p string) uint64 {
			t.Helper()
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			return st.Nlink
		}
		a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
		must(t, os.WriteFile(a, []byte("a"), 0o644))
		must(t, os.Link(a, b))
		must(t, os.WriteFile(c, []byte("c"), 0o644))
		if n := nlink(a); n != 2 {
			t.Errorf("after link: nlink %d, want 2", n)
		}
		// Rename over a hard link of the same file: a no-op, both stay.
		must(t, os.Rename(a, b))
		if _, err := os.Lstat(a); err != nil || nlink(b) != 2 {
			t.Errorf("rename onto a hard link of itself: a %v, nlink %d, want both names and 2", err, nlink(b))
		}
		// Rename another file over one of the links: the count drops.
		must(t, os.Rename(c, b))
		if n := nlink(a); n != 1 {
			t.Errorf("after renaming another file over a link: nlink %d, want 1", n)
		}
		if got, _ := os.ReadFile(b); string(got) != "c" {
			t.Errorf("b holds %q", got)
		}
		// Directories: link counts and replacing.
		p, q := filepath.Join(dir, "p"), filepath.Join(dir, "q")
		must(t, os.Mkdir(p, 0o755))
		must(t, os.Mkdir(filepath.Join(p, "sub"), 0o755))
		if n := nlink(p); n != 3 {
			t.Errorf("directory with one subdirectory: nlink %d, want 3", n)
		}
		must(t, os.Mkdir(q, 0o755))
		// os.Rename refuses an existing directory itself; rename(2) does not.
		must(t, unix.Rename(p, q))
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after renaming onto an empty directory the old name: %v", err)
		}
		if _, err := os.Lstat(filepath.Join(q, "sub")); err != nil {
			t.Errorf("renamed directory lost its content: %v", err)
		}
		r := filepath.Join(dir, "r")
		must(t, os.Mkdir(r, 0o755))
		must(t, os.WriteFile(filepath.Join(q, "file"), nil, 0o644))
		if err := unix.Rename(r, q); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			t.Errorf("rename onto a non-empty directory: %v, want ENOTEMPTY", err)
		}
		if _, err := os.Lstat(r); err != nil {
			t.Errorf("failed rename lost the source: %v", err)
		}
		if err := unix.Rename(r, b); !errors.Is(err, syscall.ENOTDIR) {
			t.Errorf("directory onto a file: %v, want ENOTDIR", err)
		}
		if err := unix.Rename(b, r); !errors.Is(err, syscall.EISDIR) {
			t.Errorf("file onto a directory: %v, want EISDIR", err)
		}
		if n := nlink(dir); n != 4 {
			t.Errorf("parent nlink %d, want 4 (., .., q, r)", n)
		}
	})
}

// O_CREAT|O_EXCL fails with EEXIST on every kind of entry, a dangling
// symlink included.
func TestPosixExclEveryKind(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		mk := map[string]func(string) error{
			"file":     func(p string) error { return os.WriteFile(p, nil, 0o644) },
			"dir":      func(p string) error { return os.Mkdir(p, 0o755) },
			"fifo":     func(p string) error { return unix.Mkfifo(p, 0o644) },
			"chr":      func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))) },
			"blk":      func(p string) error { return unix.Mknod(p, unix.S_IFBLK|0o644, int(unix.Mkdev(7, 0))) },
			"symlink":  func(p string) error { return os.Symlink(filepath.Join(dir, "file"), p) },
			"dangling": func(p string) error { return os.Symlink("nowhere", p) },
			"socket": func(p string) error {
				l, err := net.Listen("unix", p)
				if err == nil {
					l.(*net.UnixListener).SetUnlinkOnClose(false)
					l.Close()
				}
				return err
			},
		}
		for kind, f := range mk {
			p := filepath.Join(dir, kind)
			must(t, f(p))
			fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY, 0o644)
			if err != unix.EEXIST {
				t.Errorf("O_EXCL on a %s: %v, want EEXIST", kind, err)
			}
			if err == nil {
				unix.Close(fd)
			}
		}
		if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("O_EXCL followed a dangling symlink: %v", err)
		}
	})
}
