package fs_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"cryptpt/fs"
	"cryptpt/internal/testvault"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// forBothModes runs f against an all-encrypted and an all-plaintext mount,
// and against the encrypted part of a mixed one (through the view).
func forBothModes(t *testing.T, f func(t *testing.T, tv *testvault.Vault)) {
	for _, mode := range []string{"encrypted", "plaintext", "view"} {
		t.Run(mode, func(t *testing.T) {
			f(t, testvault.New(t, testvault.Options{Plaintext: policies[mode]}))
		})
	}
}

// mmapHelperEnv makes the test binary act as TestMmap's helper process.
const mmapHelperEnv = "CRYPTPT_MMAP_HELPER_FILE"

// TestMmapHelperProcess is not a test: run by TestMmap in a child process,
// it maps a file of the mount shared and private. The mapping must not live
// in the process serving the mount: a page fault on it can wait for a
// daemon goroutine while the Go runtime stops all threads for GC.
func TestMmapHelperProcess(t *testing.T) {
	p := os.Getenv(mmapHelperEnv)
	if p == "" {
		return
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	shared, err := unix.Mmap(int(f.Fd()), 0, 10000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(t, err)
	copy(shared[5000:], "shared write")
	must(t, unix.Msync(shared, unix.MS_SYNC))
	must(t, unix.Munmap(shared))
	private, err := unix.Mmap(int(f.Fd()), 0, 10000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	must(t, err)
	if string(private[5000:5012]) != "shared write" {
		t.Errorf("private mapping does not see the shared write: %q", private[5000:5012])
	}
	copy(private, "private")
	must(t, unix.Munmap(private))
}

func TestMmap(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		p := tv.Path("m")
		must(t, os.WriteFile(p, bytes.Repeat([]byte("a"), 10000), 0o644))
		cmd := exec.Command(os.Args[0], "-test.run=^TestMmapHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), mmapHelperEnv+"="+p)
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestMmapHelperProcess")) {
			t.Fatalf("mmap helper: %v\n%s", err, out)
		}
		tv.Unmount(t)
		tv.Remount(t)
		got, err := os.ReadFile(p)
		must(t, err)
		want := bytes.Repeat([]byte("a"), 10000)
		copy(want[5000:], "shared write")
		if !bytes.Equal(got, want) {
			t.Errorf("after remount the file differs from what the shared mapping wrote")
		}
	})
}

func TestRenameFlags(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		a, b := tv.Path("a"), tv.Path("dir/b")
		must(t, os.Mkdir(tv.Path("dir"), 0o755))
		must(t, os.WriteFile(a, []byte("AAA"), 0o644))
		must(t, os.WriteFile(b, []byte("BBBBBB"), 0o644))
		if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_NOREPLACE); !errors.Is(err, syscall.EEXIST) {
			t.Errorf("RENAME_NOREPLACE over an existing file: %v, want EEXIST", err)
		}
		must(t, unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE))
		if got, _ := os.ReadFile(a); string(got) != "BBBBBB" {
			t.Errorf("after exchange a = %q", got)
		}
		if got, _ := os.ReadFile(b); string(got) != "AAA" {
			t.Errorf("after exchange b = %q", got)
		}
		tv.Unmount(t)
		tv.Remount(t)
		if got, _ := os.ReadFile(a); string(got) != "BBBBBB" {
			t.Errorf("after exchange and remount a = %q", got)
		}
		// Directories move in O(1) with their contents.
		must(t, os.MkdirAll(tv.Path("d1/sub"), 0o755))
		must(t, os.WriteFile(tv.Path("d1/sub/f"), []byte("deep"), 0o644))
		must(t, os.Rename(tv.Path("d1"), tv.Path("dir/d2")))
		if got, _ := os.ReadFile(tv.Path("dir/d2/sub/f")); string(got) != "deep" {
			t.Errorf("after directory rename: %q", got)
		}
	})
}

func TestNameLengths(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		for _, n := range []int{1, 100, 174, 200, 255} {
			name := strings.Repeat("n", n)
			must(t, os.WriteFile(tv.Path(name), []byte(name), 0o644))
			must(t, os.Rename(tv.Path(name), tv.Path(name[:n-1]+"m")))
			if got, err := os.ReadFile(tv.Path(name[:n-1] + "m")); err != nil || string(got) != name {
				t.Errorf("name of %d bytes: %v", n, err)
			}
		}
		long := strings.Repeat("x", 256)
		if err := os.WriteFile(tv.Path(long), nil, 0o644); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("name of 256 bytes: %v, want ENAMETOOLONG", err)
		}
		entries, err := os.ReadDir(tv.Mnt)
		must(t, err)
		if len(entries) != 5 {
			t.Errorf("%d entries listed, want 5", len(entries))
		}
		for _, e := range entries {
			must(t, os.Remove(tv.Path(e.Name())))
		}
		// No sidecar or other vault file is left behind.
		raw, err := os.ReadDir(tv.Backing)
		must(t, err)
		for _, e := range raw {
			if e.Name() != "~~vault.toml" && e.Name() != "~~diriv" {
				t.Errorf("left in the vault after deleting everything: %s", e.Name())
			}
		}
	})
}

func TestHolesAndTruncate(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		p := tv.Path("sparse")
		f, err := os.Create(p)
		must(t, err)
		_, err = f.WriteAt([]byte("end"), 3<<20)
		must(t, err)
		must(t, f.Truncate(5000))
		must(t, f.Truncate(9000))
		_, err = f.WriteAt([]byte("mid"), 4094)
		must(t, err)
		f.Close()
		want := make([]byte, 9000)
		copy(want[4094:], "mid")
		if got, _ := os.ReadFile(p); !bytes.Equal(got, want) {
			t.Errorf("holes and truncates read back wrong")
		}
		var st syscall.Statfs_t
		must(t, syscall.Statfs(tv.Mnt, &st))
		if st.Blocks == 0 || st.Namelen != 255 {
			t.Errorf("statfs: %+v", st)
		}
	})
}

// The encrypted handle type can never hand out a backing fd; the plaintext
// passthrough handle can.
func TestOnlyPlaintextHandlesPassThrough(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"media/"}})
	must(t, os.Mkdir(tv.Path("media"), 0o755))
	must(t, os.WriteFile(tv.Path("media/p"), []byte("p"), 0o644))
	must(t, os.WriteFile(tv.Path("e"), []byte("e"), 0o644))
	for _, name := range []string{"media/p", "e"} {
		if _, err := os.ReadFile(tv.Path(name)); err != nil {
			t.Fatal(err)
		}
	}
	st := tv.Mount.Status()
	if st.PassthroughActive && st.PlainOpensPassthrough == 0 {
		t.Errorf("plaintext opens did not use passthrough: %+v", st)
	}
	// Decrypted by the daemon: on this mount's connection, or on the view's,
	// whose cache may already hold what was just written.
	if st.EncryptedOpens == 0 || st.EncryptedReads+st.EncryptedWrites == 0 {
		t.Errorf("encrypted file not served by the daemon: %+v", st)
	}
	var _ gofs.FilePassthroughFder = fs.PassthroughHandleForTest()
	if _, ok := fs.EncryptedHandleForTest().(gofs.FilePassthroughFder); ok {
		t.Error("the encrypted handle type implements FilePassthroughFder")
	}
}

// Encrypted files keep the page cache across opens: a second read of an
// unchanged file costs the daemon no READ request.
func TestEncryptedCacheKeptAcrossOpens(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	must(t, os.WriteFile(tv.Path("a"), make([]byte, 1<<20), 0o644))
	_, err := os.ReadFile(tv.Path("a"))
	must(t, err)
	first := tv.Mount.Status().EncryptedReads
	_, err = os.ReadFile(tv.Path("a"))
	must(t, err)
	if again := tv.Mount.Status().EncryptedReads; again != first {
		t.Errorf("re-reading an unchanged encrypted file sent %d READ requests", again-first)
	}
}

// ...but not when the vault file changed behind the daemon's back (a sync
// tool, another machine): then the new content is read, never stale pages.
func TestCacheFollowsOutsideChanges(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	must(t, os.WriteFile(tv.Path("a"), bytes.Repeat([]byte("A"), 9000), 0o644))
	for i := 0; i < 2; i++ {
		if _, err := os.ReadFile(tv.Path("a")); err != nil {
			t.Fatal(err)
		}
	}
	// Replace the vault file with a valid encrypted file of other content,
	// written by a second mount of the same vault.
	var vaultFile string
	ents, err := os.ReadDir(tv.Backing)
	must(t, err)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "~~c") {
			vaultFile = filepath.Join(tv.Backing, e.Name())
		}
	}
	must(t, os.WriteFile(tv.Path("b"), bytes.Repeat([]byte("B"), 9000), 0o644))
	before := tv.Mount.Status().EncryptedReads
	var other string
	ents, _ = os.ReadDir(tv.Backing)
	for _, e := range ents {
		if p := filepath.Join(tv.Backing, e.Name()); strings.HasPrefix(e.Name(), "~~c") && p != vaultFile {
			other = p
		}
	}
	data, err := os.ReadFile(other)
	must(t, err)
	must(t, os.WriteFile(vaultFile, data, 0o644))
	got, err := os.ReadFile(tv.Path("a"))
	must(t, err)
	if !bytes.Equal(got, bytes.Repeat([]byte("B"), 9000)) {
		t.Errorf("after the vault file changed, the mount served stale bytes")
	}
	if tv.Mount.Status().EncryptedReads == before {
		t.Errorf("the changed file was served from the page cache")
	}
}

// Names are bytes: newlines, invalid UTF-8 and the like survive both modes
// and a remount.
func TestOddNames(t *testing.T) {
	names := []string{"new\nline", "bad\xff\xfeutf8", "tab\there", " lead", "trail ", "-dash", "~tilde", "~single~", "é", "\x01ctl"}
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		for _, n := range names {
			must(t, os.WriteFile(tv.Path(n), []byte(n), 0o644))
		}
		tv.Unmount(t)
		tv.Remount(t)
		ents, err := os.ReadDir(tv.Mnt)
		must(t, err)
		got := map[string]bool{}
		for _, e := range ents {
			got[e.Name()] = true
		}
		for _, n := range names {
			if !got[n] {
				t.Errorf("%q not listed after remount", n)
			}
			if data, err := os.ReadFile(tv.Path(n)); err != nil || string(data) != n {
				t.Errorf("%q reads back %q, %v", n, data, err)
			}
		}
	})
}

// Fifos and device nodes work; the nodev mount keeps devices from opening
// (tests/posix_test.go checks more).
func TestMknod(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		must(t, syscall.Mkfifo(tv.Path("fifo"), 0o600))
		if st, err := os.Lstat(tv.Path("fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("fifo: %v %v", st, err)
		}
		if err := syscall.Mknod(tv.Path("null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Errorf("mknod of a character device: %v", err)
		}
		if _, err := os.Open(tv.Path("null")); !errors.Is(err, syscall.EACCES) {
			t.Errorf("open of a device node on the nodev mount: %v, want EACCES", err)
		}
	})
}

// Extended attributes on the mount root, and on a file that was unlinked
// while open (reached through its open handle).
func TestXattrRootAndUnlinkedOpen(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		must(t, unix.Setxattr(tv.Mnt, "user.root", []byte("r"), 0))
		buf := make([]byte, 16)
		if n, err := unix.Getxattr(tv.Mnt, "user.root", buf); err != nil || string(buf[:n]) != "r" {
			t.Errorf("root xattr: %q %v", buf[:n], err)
		}
		f, err := os.Create(tv.Path("gone"))
		must(t, err)
		defer f.Close()
		must(t, unix.Fsetxattr(int(f.Fd()), "user.k", []byte("v"), 0))
		must(t, os.Remove(tv.Path("gone")))
		if n, err := unix.Fgetxattr(int(f.Fd()), "user.k", buf); err != nil || string(buf[:n]) != "v" {
			t.Errorf("xattr of an unlinked open file: %q %v", buf[:n], err)
		}
		must(t, f.Chmod(0o600))
		if st, err := f.Stat(); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("chmod of an unlinked open file: %v %v", st, err)
		}
	})
}
