package fs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cfs "cryptpt/fs"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// newViewVault mounts a vault whose policy has a plaintext area, so that
// passthrough is on and encrypted files go through the view.
func newViewVault(t *testing.T) *testvault.Vault {
	t.Helper()
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"plain/"}})
	if st := tv.Mount.Status(); !st.PassthroughActive || !st.EncryptedView {
		t.Fatalf("a mixed mount without passthrough or view: %+v", st)
	}
	return tv
}

func requestCount(list []cfs.RequestCount, op string) int64 {
	for _, r := range list {
		if r.Op == op {
			return r.Count
		}
	}
	return 0
}

// pattern returns n bytes that are not all alike, so they can be found.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('A' + i%23)
	}
	return b
}

// Small writes to an encrypted file of a mixed mount are merged in the
// view's page cache: the daemon sees no WRITE on the user's mount and far
// fewer, larger ones on the view, and the vault holds only ciphertext.
// Size and content are right while the file is open and after.
func TestViewMergesWrites(t *testing.T) {
	tv := newViewVault(t)
	before := tv.Mount.Status()
	f, err := os.Create(tv.Path("doc"))
	must(t, err)
	data := pattern(100 * 4096)
	for off := 0; off < len(data); off += 4096 {
		_, err := f.Write(data[off : off+4096])
		must(t, err)
	}
	st, err := f.Stat()
	must(t, err)
	if st.Size() != int64(len(data)) {
		t.Errorf("size while open: %d, want %d", st.Size(), len(data))
	}
	if st, err := os.Stat(tv.Path("doc")); err != nil || st.Size() != int64(len(data)) {
		t.Errorf("stat by name while open: %v, %v", st, err)
	}
	must(t, f.Close())
	after := tv.Mount.Status()
	if n := requestCount(after.Requests, "WRITE") - requestCount(before.Requests, "WRITE"); n != 0 {
		t.Errorf("%d WRITE requests on the user's mount, want 0", n)
	}
	if n := requestCount(after.ViewRequests, "WRITE"); n == 0 || n >= 100 {
		t.Errorf("%d WRITE requests on the view, want between 1 and 99", n)
	}
	if got, err := os.ReadFile(tv.Path("doc")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back: %v", err)
	}
	assertNoPlaintext(t, tv, data[:64])
	// The vault file decrypts to the same after a remount.
	tv.Unmount(t)
	tv.Remount(t)
	if got, err := os.ReadFile(tv.Path("doc")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back after remount: %v", err)
	}
}

// assertNoPlaintext fails if any vault file contains needle.
func assertNoPlaintext(t *testing.T, tv *testvault.Vault, needle []byte) {
	t.Helper()
	must(t, filepath.Walk(tv.Backing, func(p string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		if strings.HasPrefix(filepath.Base(p), "~~") || strings.Contains(p, "/~~") {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(data, needle) {
				t.Errorf("plaintext in the vault file %s", p)
			}
		}
		return nil
	}))
}

// Truncation and times set through the user's mount while the view holds
// unwritten pages win over them: the view does not write back a larger
// size or its own mtime afterwards.
func TestViewTruncateAndTimes(t *testing.T) {
	tv := newViewVault(t)
	f, err := os.Create(tv.Path("t"))
	must(t, err)
	_, err = f.Write(pattern(3 * 4096))
	must(t, err)
	must(t, f.Truncate(5000))
	if st, _ := f.Stat(); st.Size() != 5000 {
		t.Errorf("size after ftruncate: %d", st.Size())
	}
	_, err = f.WriteAt([]byte("tail"), 6000)
	must(t, err)
	must(t, os.Truncate(tv.Path("t"), 6002)) // by name, while open
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(t, os.Chtimes(tv.Path("t"), when, when))
	must(t, f.Close())
	want := pattern(3 * 4096)[:5000]
	want = append(want, make([]byte, 1000)...)
	want = append(want, "ta"...)
	got, err := os.ReadFile(tv.Path("t"))
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Errorf("content after truncates: %d bytes, want %d", len(got), len(want))
	}
	for _, remount := range []bool{false, true} {
		if remount {
			tv.Unmount(t)
			tv.Remount(t)
		}
		st, err := os.Stat(tv.Path("t"))
		must(t, err)
		if !st.ModTime().Equal(when) || st.Size() != 6002 {
			t.Errorf("remount %v: mtime %v size %d, want %v and 6002", remount, st.ModTime(), st.Size(), when)
		}
	}
}

// What reaches the vault with fsync is there even if the daemon dies right
// after: a copy of the vault taken then holds it.
func TestViewFsyncReachesVault(t *testing.T) {
	tv := newViewVault(t)
	f, err := os.Create(tv.Path("s"))
	must(t, err)
	defer f.Close()
	data := pattern(50000)
	_, err = f.Write(data)
	must(t, err)
	must(t, f.Sync())
	// Copy the vault while the file is still open and the view still
	// holds it: what the copy holds, fsync put there.
	copyDir := filepath.Join(t.TempDir(), "copy")
	must(t, os.CopyFS(copyDir, os.DirFS(tv.Backing)))
	other := testvault.NewOn(t, copyDir, tv.Master, testvault.Options{})
	if got, err := os.ReadFile(other.Path("s")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the vault after fsync does not hold the data: %v (%d bytes)", err, len(got))
	}
}

// O_DIRECT reads and writes reach the daemon directly and agree with the
// view's cache. (Shared mappings through the view: TestMmap, in its own
// process.)
func TestViewDirect(t *testing.T) {
	tv := newViewVault(t)
	p := tv.Path("m")
	must(t, os.WriteFile(p, bytes.Repeat([]byte("a"), 3*4096), 0o644))
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_DIRECT, 0)
	must(t, err)
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	must(t, err)
	defer unix.Munmap(buf)
	copy(buf, bytes.Repeat([]byte("d"), 4096))
	if _, err := unix.Pwrite(fd, buf, 4096); err != nil {
		t.Fatalf("O_DIRECT write: %v", err)
	}
	got, err := os.ReadFile(p)
	must(t, err)
	want := bytes.Repeat([]byte("a"), 3*4096)
	copy(want[4096:], bytes.Repeat([]byte("d"), 4096))
	if !bytes.Equal(got, want) {
		t.Errorf("the cache disagrees with an O_DIRECT write")
	}
	must(t, os.WriteFile(p, bytes.Repeat([]byte("c"), 4096), 0o644))
	clear(buf)
	if n, err := unix.Pread(fd, buf, 0); err != nil || n != 4096 || !bytes.Equal(buf, bytes.Repeat([]byte("c"), 4096)) {
		t.Errorf("O_DIRECT read after a cached write: %d %v", n, err)
	}
}

// The view is in no mount table and at no path.
func TestViewUnreachable(t *testing.T) {
	newViewVault(t)
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	if bytes.Contains(mounts, []byte("cryptpt-view")) {
		t.Errorf("the view shows in the mount table:\n%s", mounts)
	}
}

// A write that does not fit the vault's filesystem fails at close, as on a
// local filesystem, and what was there before stays readable.
func TestViewFullDisk(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	must(t, os.Mkdir(small, 0o755))
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	tv := testvault.NewIn(t, small, testvault.Options{Plaintext: []string{"plain/"}})
	must(t, os.WriteFile(tv.Path("keep"), []byte("kept"), 0o644))
	f, err := os.Create(tv.Path("big"))
	must(t, err)
	var werr error
	for i := 0; i < 2000 && werr == nil; i++ {
		_, werr = f.Write(pattern(4096))
	}
	cerr := f.Close()
	if !errorIs(werr, syscall.ENOSPC) && !errorIs(cerr, syscall.ENOSPC) {
		t.Errorf("8 MiB into a 4 MiB vault: write %v, close %v; want ENOSPC from one of them", werr, cerr)
	}
	if got, err := os.ReadFile(tv.Path("keep")); err != nil || string(got) != "kept" {
		t.Errorf("an earlier file after the full disk: %q %v", got, err)
	}
}

func errorIs(err error, errno syscall.Errno) bool {
	var e syscall.Errno
	for err != nil {
		if x, ok := err.(syscall.Errno); ok {
			e = x
			break
		}
		if u, ok := err.(interface{ Unwrap() error }); ok {
			err = u.Unwrap()
		} else {
			break
		}
	}
	return e == errno
}
