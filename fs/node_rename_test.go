package fs

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// replaceDirAside, the way over a directory for a vault on a filesystem
// without RENAME_EXCHANGE (NFS, many FUSE filesystems), replaces a target
// that holds only its IV, and leaves it untouched when the rename fails.
func TestReplaceDirAside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a mount point")
	}
	base := t.TempDir()
	fd, err := unix.Open(base, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	names := func(dir string) []string {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	for _, d := range []string{"src", "dst"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "dst", crypt.DirIVName), []byte("iv"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "src", "inside"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Failing: the source is a mount point.
	src := filepath.Join(base, "src")
	if err := unix.Mount(src, src, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	errno := replaceDirAside(fd, "src", fd, "dst", false)
	unix.Unmount(src, unix.MNT_DETACH)
	if errno != syscall.EBUSY {
		t.Errorf("rename of a mount point: %v, want EBUSY", errno)
	}
	if got := names(base); !slices.Equal(got, []string{"dst", "src"}) {
		t.Errorf("after the failed rename: %q", got)
	}
	if got := names(filepath.Join(base, "dst")); !slices.Equal(got, []string{crypt.DirIVName}) {
		t.Errorf("target after the failed rename holds %q", got)
	}
	// Succeeding.
	if errno := replaceDirAside(fd, "src", fd, "dst", false); errno != 0 {
		t.Fatalf("rename: %v", errno)
	}
	if got := names(base); !slices.Equal(got, []string{"dst"}) {
		t.Errorf("after the rename: %q", got)
	}
	if got := names(filepath.Join(base, "dst")); !slices.Equal(got, []string{"inside"}) {
		t.Errorf("target after the rename holds %q", got)
	}
}
