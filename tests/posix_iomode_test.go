package tests

import (
	bin "encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"cryptpt/internal/testvault"
)

// The kernel refuses to mix kernel passthrough and daemon-served opens of
// one inode (an open in the other mode fails with EIO). Whatever decides
// the mode of a plaintext file (its permissions, set-id bits, file
// capabilities) may change while it is open, so every open must still
// succeed, and set-id bits and capabilities must still go at the next
// unprivileged write.

// readAll reads a file through a fresh open.
func readAll(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("reading %s while another open of it is held: %v", filepath.Base(p), err)
	}
	return string(b)
}

// capNetRaw is a security.capability value (VFS_CAP_REVISION_2) granting
// CAP_NET_RAW, effective.
func capNetRaw() []byte {
	b := make([]byte, 20)
	bin.LittleEndian.PutUint32(b[0:], 0x02000000|1) // revision 2, effective
	bin.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_RAW)
	return b
}

func TestPosixOpenModeChanges(t *testing.T) {
	needRoot(t)
	posixAreas(t, func(t *testing.T, tv *testvault.Vault, dir string) {
		// Held for appending while 0644, then made writable by others.
		f := filepath.Join(dir, "f")
		must(t, os.WriteFile(f, []byte("x"), 0o644))
		must(t, os.Chmod(f, 0o644))
		w, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		must(t, os.Chmod(f, 0o666))
		if got := readAll(t, f); got != "x" {
			t.Errorf("read %q, want x", got)
		}
		_, err = w.Write([]byte("y"))
		must(t, err)
		if got := readAll(t, f); got != "xy" {
			t.Errorf("read %q after a write through the first open, want xy", got)
		}
		if e := nobodyUser.errno(t, "open", f, d(unix.O_WRONLY|unix.O_APPEND), "0", "write", "z"); e != 0 {
			t.Errorf("nobody appending: %v", e)
		}
		w.Close()
		if got := readAll(t, f); got != "xyz" {
			t.Errorf("read %q, want xyz", got)
		}

		// The other way: held while writable by others, then 0644.
		g := filepath.Join(dir, "g")
		must(t, os.WriteFile(g, []byte("x"), 0o644))
		must(t, os.Chmod(g, 0o666))
		w, err = os.OpenFile(g, os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		must(t, os.Chmod(g, 0o644))
		if got := readAll(t, g); got != "x" {
			t.Errorf("read %q, want x", got)
		}
		w.Close()

		// Held while plain, then made set-id: another user's write
		// through a new open still clears the bits.
		h := filepath.Join(dir, "h")
		must(t, os.WriteFile(h, []byte("x"), 0o644))
		must(t, os.Chmod(h, 0o644))
		r, err := os.Open(h)
		must(t, err)
		must(t, os.Chmod(h, 0o666|os.ModeSetuid|os.ModeSetgid))
		res := nobodyUser.as(t, "open", h, d(unix.O_WRONLY|unix.O_APPEND), "0", "write", "y", "close")
		for i, x := range res {
			if x.errno != 0 {
				t.Errorf("nobody writing the set-id file, step %d: %v", i, x.errno)
			}
		}
		if got := modeOf(t, h) & 0o7777; got != 0o666 {
			t.Errorf("set-id file written by nobody while root holds it open: mode %o, want 666", got)
		}
		if got := readAll(t, h); got != "xy" {
			t.Errorf("read %q, want xy", got)
		}
		r.Close()

		// Held while plain, then given file capabilities: a write drops them.
		c := filepath.Join(dir, "c")
		must(t, os.WriteFile(c, []byte("x"), 0o644))
		must(t, os.Chmod(c, 0o644))
		r, err = os.Open(c)
		must(t, err)
		must(t, unix.Setxattr(c, "security.capability", capNetRaw(), 0))
		must(t, os.Chmod(c, 0o666))
		if e := nobodyUser.errno(t, "open", c, d(unix.O_WRONLY|unix.O_APPEND), "0", "write", "y"); e != 0 {
			t.Errorf("nobody writing a file with capabilities: %v", e)
		}
		if _, err := unix.Getxattr(c, "security.capability", nil); !errors.Is(err, syscall.ENODATA) {
			t.Errorf("capabilities after a write by nobody: %v, want ENODATA", err)
		}
		r.Close()
	})
}
