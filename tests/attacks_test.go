package tests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"cryptpt/crypt"
	cfs "cryptpt/fs"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// The attack tests replay, against a real mount, what someone who can write
// the vault (or another local user) could do to today's main before the
// fixes of issue 10; each fails on that code.

// TestPlantedPlaintextCapturesNothing plants plaintext-form entries at paths
// the policy encrypts: empty files, and symlinks into a plaintext area and
// out of the vault. What the user then writes there through the mount, by
// truncating or appending, must never be stored unencrypted, in the vault
// or outside it.
func TestPlantedPlaintextCapturesNothing(t *testing.T) {
	// Names in the log, to check that each planted entry is logged.
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"Public/"}, Options: cfs.Options{LogNames: true}})
	must(t, os.Mkdir(tv.Path("Documents"), 0o755))
	must(t, os.Mkdir(tv.Path("Public"), 0o755))
	storedDocs := storedNameIn(t, tv, tv.Backing, "Documents")
	outside := filepath.Join(t.TempDir(), "outside.txt")
	must(t, os.WriteFile(outside, nil, 0o666))
	tv.Unmount(t)

	docs := filepath.Join(tv.Backing, storedDocs)
	must(t, os.WriteFile(filepath.Join(tv.Backing, ".netrc"), nil, 0o600))
	must(t, os.WriteFile(filepath.Join(docs, "notes.txt"), nil, 0o644))
	must(t, os.Symlink("../Public/leak.txt", filepath.Join(docs, "diary.txt")))
	must(t, os.Symlink(outside, filepath.Join(tv.Backing, ".bash_history")))
	tv.Remount(t)

	targets := []string{".netrc", "Documents/notes.txt", "Documents/diary.txt", ".bash_history"}
	var secrets [][]byte
	for _, name := range targets {
		for _, flags := range []int{os.O_WRONLY | os.O_CREATE | os.O_TRUNC, os.O_WRONLY | os.O_CREATE | os.O_APPEND} {
			secret := []byte(fmt.Sprintf("secret-%x\n", canary(t, 16)))
			secrets = append(secrets, secret)
			f, err := os.OpenFile(tv.Path(name), flags, 0o600)
			if err == nil {
				_, err = f.Write(secret)
				f.Close()
				t.Errorf("%s: opened for writing (flags %#x) and written: %v", name, flags, err)
			} else if !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EIO) {
				t.Errorf("%s: open for writing: %v, want EACCES or EIO", name, err)
			}
		}
		// The shell the user types into, too.
		secret := []byte(fmt.Sprintf("shell-%x", canary(t, 16)))
		secrets = append(secrets, secret)
		exec.Command("sh", "-c", `echo "$1" > "$2"; echo "$1" >> "$2"`, "sh", string(secret), tv.Path(name)).Run()
	}
	// Reading a planted file stays possible (the honest case: an entry left
	// plaintext by a policy change), and a save by temp file and rename
	// replaces it with an encrypted file.
	if _, err := os.ReadFile(tv.Path(".netrc")); err != nil {
		t.Errorf("read planted .netrc: %v", err)
	}
	saved := []byte(fmt.Sprintf("saved-%x", canary(t, 16)))
	secrets = append(secrets, saved)
	must(t, os.WriteFile(tv.Path(".netrc.tmp"), saved, 0o600))
	must(t, os.Rename(tv.Path(".netrc.tmp"), tv.Path(".netrc")))
	if got, err := os.ReadFile(tv.Path(".netrc")); err != nil || !bytes.Equal(got, saved) {
		t.Errorf("after an atomic save, .netrc = %q, %v", got, err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(tv.Path(".netrc"), cfs.ModeXattr, buf); err != nil || string(buf[:n]) != "encrypted" {
		t.Errorf(".netrc after an atomic save is stored %q, %v", buf[:max(n, 0)], err)
	}
	tv.Unmount(t)

	out, err := os.ReadFile(outside)
	must(t, err)
	for _, s := range secrets {
		if hits := vaultContains(t, tv.Backing, s[:20]); len(hits) > 0 {
			t.Errorf("secret stored unencrypted in the vault: %v", hits)
		}
		if bytes.Contains(out, s[:20]) {
			t.Errorf("secret written outside the vault, to %s", outside)
		}
	}
	for _, want := range []string{"/.netrc", "/Documents/notes.txt", "/Documents/diary.txt", "/.bash_history"} {
		if !strings.Contains(tv.Log(), want) {
			t.Errorf("no log line names %s:\n%s", want, tv.Log())
		}
	}
}

// TestHeaderOnlyFileGetsFreshID replays the file-ID poisoning of the 2017
// gocryptfs audit: B's header copied into an empty file E, the user appends
// to E, and block 0 is swapped between E and B. E must have got a file ID
// of its own on that first write, so both swapped blocks fail.
func TestHeaderOnlyFileGetsFreshID(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	b := canary(t, 2*crypt.BlockSize)
	must(t, os.WriteFile(tv.Path("B"), b, 0o644))
	must(t, os.WriteFile(tv.Path("E"), nil, 0o644))
	vb := filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, "B"))
	ve := filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, "E"))
	tv.Unmount(t)
	raw, err := os.ReadFile(vb)
	must(t, err)
	must(t, os.WriteFile(ve, raw[:crypt.HeaderSize], 0o644))
	tv.Remount(t)

	e := canary(t, crypt.BlockSize)
	f, err := os.OpenFile(tv.Path("E"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(e)
	must(t, err)
	must(t, f.Close())
	tv.Unmount(t)

	rb, err := os.ReadFile(vb)
	must(t, err)
	re, err := os.ReadFile(ve)
	must(t, err)
	if bytes.Equal(rb[:crypt.HeaderSize], re[:crypt.HeaderSize]) {
		t.Fatal("E kept the header copied from B")
	}
	block0 := func(x []byte) []byte { return x[crypt.HeaderSize : crypt.HeaderSize+crypt.CipherBlockSize] }
	eb0 := bytes.Clone(block0(re))
	copy(block0(re), block0(rb))
	copy(block0(rb), eb0)
	must(t, os.WriteFile(vb, rb, 0o644))
	must(t, os.WriteFile(ve, re, 0o644))
	tv.Remount(t)
	for _, name := range []string{"B", "E"} {
		if got, err := os.ReadFile(tv.Path(name)); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s with the other file's block 0: %d bytes, %v; want EIO", name, len(got), err)
		}
	}
}

// TestZeroBlocksAppended appends an all-zero stored block to a file: it must
// not read as a longer file with a hole at the end.
func TestZeroBlocksAppended(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	data := canary(t, 2*crypt.BlockSize)
	must(t, os.WriteFile(tv.Path("f"), data, 0o644))
	vf := filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, "f"))
	tv.Unmount(t)
	f, err := os.OpenFile(vf, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(make([]byte, crypt.CipherBlockSize))
	must(t, err)
	must(t, f.Close())
	tv.Remount(t)
	got, err := os.ReadFile(tv.Path("f"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("file with a zero block appended: %d bytes, %v; want EIO", len(got), err)
	}
	if !strings.Contains(tv.Log(), "authentication failed") {
		t.Errorf("nothing logged:\n%s", tv.Log())
	}
	// A truncate up through the mount is still a file that ends in zeros.
	must(t, os.WriteFile(tv.Path("g"), []byte("x"), 0o644))
	must(t, os.Truncate(tv.Path("g"), 5*crypt.BlockSize))
	if got, err := os.ReadFile(tv.Path("g")); err != nil || len(got) != 5*crypt.BlockSize || got[0] != 'x' {
		t.Errorf("truncated up: %d bytes, %v", len(got), err)
	}
}

// swapXattr exchanges the stored values of attr between two vault files.
func swapXattr(t *testing.T, a, b, attr string) {
	t.Helper()
	get := func(p string) []byte {
		buf := make([]byte, 4096)
		n, err := unix.Lgetxattr(p, attr, buf)
		must(t, err)
		return buf[:n]
	}
	va, vb := get(a), get(b)
	must(t, unix.Lsetxattr(a, attr, vb, 0))
	must(t, unix.Lsetxattr(b, attr, va, 0))
}

// swapLinks exchanges the stored targets of two vault symlinks.
func swapLinks(t *testing.T, a, b string) {
	t.Helper()
	ta, err := os.Readlink(a)
	must(t, err)
	tb, err := os.Readlink(b)
	must(t, err)
	must(t, os.Remove(a))
	must(t, os.Remove(b))
	must(t, os.Symlink(tb, a))
	must(t, os.Symlink(ta, b))
}

// TestMetadataBoundToEntry swaps encrypted xattr values between files and
// between directories, and encrypted symlink targets between links: each
// must fail instead of showing the other entry's value. Renames, hard links
// and exchanges through the mount keep them readable.
func TestMetadataBoundToEntry(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	for _, n := range []string{"a", "b"} {
		must(t, os.WriteFile(tv.Path(n), []byte("content "+n), 0o644))
		must(t, unix.Setxattr(tv.Path(n), "user.tag", []byte("tag of "+n), 0))
		must(t, os.Mkdir(tv.Path("dir"+n), 0o755))
		must(t, unix.Setxattr(tv.Path("dir"+n), "user.tag", []byte("tag of dir"+n), 0))
		must(t, os.Symlink("/target/of/"+n, tv.Path("link"+n)))
	}
	// An empty file's xattr is bound to a header made for it, and survives
	// the file's first write, which gives it a fresh ID.
	must(t, os.WriteFile(tv.Path("empty"), nil, 0o644))
	must(t, unix.Setxattr(tv.Path("empty"), "user.tag", []byte("tag of empty"), 0))
	must(t, os.WriteFile(tv.Path("empty"), []byte("now written"), 0o644))
	checkXattr(t, tv.Path("empty"), "tag of empty")

	// Through the mount: moves keep everything readable.
	must(t, os.Mkdir(tv.Path("sub"), 0o755))
	must(t, os.Symlink("/moved/target", tv.Path("moved")))
	must(t, os.Rename(tv.Path("moved"), tv.Path("sub/moved")))
	must(t, os.Link(tv.Path("linka"), tv.Path("sub/hardlink")))
	must(t, os.Symlink("/x/one", tv.Path("one")))
	must(t, os.Symlink("/x/two", tv.Path("sub/two")))
	must(t, unix.Renameat2(unix.AT_FDCWD, tv.Path("one"), unix.AT_FDCWD, tv.Path("sub/two"), unix.RENAME_EXCHANGE))
	for link, want := range map[string]string{"sub/moved": "/moved/target", "sub/hardlink": "/target/of/a", "linka": "/target/of/a", "one": "/x/two", "sub/two": "/x/one"} {
		if got, err := os.Readlink(tv.Path(link)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	stored := func(name string) string { return filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, name)) }
	va, vb := stored("a"), stored("b")
	da, db := stored("dira"), stored("dirb")
	la, lb := stored("linka"), stored("linkb")
	tv.Unmount(t)

	swapXattr(t, va, vb, "user.tag")
	swapXattr(t, da, db, "user.tag")
	swapLinks(t, la, lb)
	tv.Remount(t)
	for _, p := range []string{"a", "b", "dira", "dirb"} {
		buf := make([]byte, 64)
		if n, err := unix.Getxattr(tv.Path(p), "user.tag", buf); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s with the other entry's user.tag: %q, %v; want EIO", p, buf[:max(n, 0)], err)
		}
	}
	for _, p := range []string{"linka", "linkb"} {
		if got, err := os.Readlink(tv.Path(p)); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s with the other link's target: %q, %v; want EIO", p, got, err)
		}
	}
}

func checkXattr(t *testing.T, path, want string) {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Getxattr(path, "user.tag", buf)
	if err != nil || string(buf[:n]) != want {
		t.Errorf("%s user.tag = %q, %v; want %q", path, buf[:max(n, 0)], err, want)
	}
}

// TestMissingDirIVIsNotReplaced deletes an encrypted directory's IV: its
// entries must not be re-keyed silently under a fresh IV by the next create.
func TestMissingDirIVIsNotReplaced(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	must(t, os.WriteFile(tv.Path("d/kept"), []byte("kept"), 0o644))
	must(t, os.Mkdir(tv.Path("empty"), 0o755))
	vd := filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, "d"))
	ve := filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, "empty"))
	tv.Unmount(t)
	must(t, os.Remove(filepath.Join(vd, crypt.DirIVName)))
	must(t, os.Remove(filepath.Join(ve, crypt.DirIVName)))
	tv.Remount(t)
	for _, dir := range []string{"d", "empty"} {
		if err := os.WriteFile(tv.Path(dir+"/new"), []byte("new"), 0o644); !errors.Is(err, syscall.EIO) {
			t.Errorf("create in %s without its IV: %v, want EIO", dir, err)
		}
	}
	for _, dir := range []string{vd, ve} {
		if _, err := os.Stat(filepath.Join(dir, crypt.DirIVName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s got a new directory IV: %v", dir, err)
		}
	}
	if !strings.Contains(tv.Log(), "directory IV") {
		t.Errorf("nothing logged:\n%s", tv.Log())
	}
	// fsck reports both, the empty one too.
	tv.Unmount(t)
	pw := filepath.Join(t.TempDir(), "pw")
	must(t, os.WriteFile(pw, []byte("test password\n"), 0o600))
	out, errOut, code := cryptpt("fsck", "--passfile", pw, tv.Backing)
	if code != 3 || strings.Count(out+errOut, crypt.DirIVName+" is missing") != 2 {
		t.Errorf("fsck: exit %d, want 3 and both missing IVs reported\n%s%s", code, out, errOut)
	}
}

// openTo755 lets other users traverse dir and the directories above it up
// to the system temp directory.
func openTo755(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		must(t, os.Chmod(d, 0o755))
	}
}

// TestSetIDClearedAfterLateChmod: a world-writable plaintext file opened
// for writing by another user, then made set-user-ID by its owner, loses the
// bit when that user writes, as on ext4. A passthrough write never reaches
// the daemon, so on an --allow-other mount such files must not get one.
func TestSetIDClearedAfterLateChmod(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"pub/"}, Options: cfs.Options{AllowOther: true}})
	openTo755(t, tv.Mnt)
	must(t, os.Mkdir(tv.Path("pub"), 0o777))
	f := tv.Path("pub/shared")
	must(t, os.WriteFile(f, []byte("x"), 0o666))
	must(t, os.Chmod(f, 0o666))

	before := tv.Mount.Status().PlainOpensPassthrough
	cmd := exec.Command("sh", "-c", `exec 3>>"$1" && echo ready && read x && printf more >&3 && echo done`, "sh", f)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	lines := bufio.NewReader(stdout)
	if l, _ := lines.ReadString('\n'); l != "ready\n" {
		t.Fatalf("writer as nobody did not open the file: %q", l)
	}
	must(t, os.Chmod(f, 0o4777)) // the owner (root here) makes it set-user-ID
	io.WriteString(stdin, "go\n")
	l, _ := lines.ReadString('\n')
	stdin.Close()
	cmd.Wait()
	if l != "done\n" {
		t.Fatalf("writer as nobody failed: %q", l)
	}
	st, err := os.Stat(f)
	must(t, err)
	if st.Mode()&os.ModeSetuid != 0 {
		t.Errorf("mode %v after a write by another user: S_ISUID kept", st.Mode())
	}
	if n := tv.Mount.Status().PlainOpensPassthrough - before; n != 0 {
		t.Errorf("%d passthrough opens of a file others may write on an --allow-other mount", n)
	}
}
