package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"testing"

	"cryptpt/crypt"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// toErrno answers every error with an errno, so that nothing reaches
// go-fuse's own conversion ("can't convert error type", ENOTSUP).
func TestToErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{syscall.ENOSPC, syscall.ENOSPC},
		{&fs.PathError{Op: "openat", Path: "x", Err: syscall.ELOOP}, syscall.ELOOP},
		{fmt.Errorf("crypt: writing block 3: %w", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}), syscall.EDQUOT},
		{fmt.Errorf("crypt: reading block 3: %w", io.ErrUnexpectedEOF), syscall.EIO},
		{fmt.Errorf("%w: block 3", crypt.ErrAuth), syscall.EIO},
		{crypt.ErrHeader, syscall.EIO},
		{fmt.Errorf("%w: block 2 has 3 bytes", crypt.ErrSize), syscall.EIO},
		{fmt.Errorf("%w: offset -1", crypt.ErrOffset), syscall.EINVAL},
		{os.ErrNotExist, syscall.ENOENT},
		{os.ErrExist, syscall.EEXIST},
		{errors.New("metadata file too large"), syscall.EIO},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A truncate by path of a file whose name the vault has given to another
// entry while the file is open changes the open file, as the other
// attributes do (onEntry): never the entry now under its name, and without
// leaving a duplicate fd to the garbage collector.
func TestTruncateOfRenamedOverOpenFile(t *testing.T) {
	for _, other := range []string{"file", "directory"} {
		t.Run(other, func(t *testing.T) {
			tv := NewTestVault(t, TestOptions{})
			for _, name := range []string{"f", "g"} {
				if err := os.WriteFile(tv.Path(name), []byte("0123456789 "+name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			open, err := os.OpenFile(tv.Path("f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer open.Close()
			n := testNode(t, tv.Mount, "f")
			stored := func(name string) string {
				s, errno := tv.Mount.root.storedName(name, true, false)
				if errno != 0 {
					t.Fatal(errno)
				}
				return filepath.Join(tv.Backing, s)
			}
			f, g := stored("f"), stored("g")
			kept := filepath.Join(tv.Backing, crypt.TempPrefix+"kept")
			if err := os.Rename(f, kept); err != nil {
				t.Fatal(err)
			}
			if other == "file" {
				err = os.Rename(g, f)
			} else {
				err = os.Mkdir(f, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
			var before syscall.Stat_t
			if err := syscall.Lstat(f, &before); err != nil {
				t.Fatal(err)
			}

			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			fds := func() int {
				ents, err := os.ReadDir("/proc/self/fd")
				if err != nil {
					t.Fatal(err)
				}
				return len(ents)
			}
			const tries = 20
			was := fds()
			for i := range tries {
				in := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE, Size: uint64(5 - i%2)}}
				if errno := n.setattrVault(context.Background(), nil, in); errno != 0 {
					t.Fatalf("truncate: %v", errno)
				}
			}
			if now := fds(); now >= was+tries {
				t.Errorf("%d fds open after %d truncates, %d before", now, tries, was)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(kept, &st); err != nil || st.Size != crypt.CipherSize(4) {
				t.Errorf("the open file's vault size is %d (%v), want %d", st.Size, err, crypt.CipherSize(4))
			}
			var after syscall.Stat_t
			if err := syscall.Lstat(f, &after); err != nil || after.Size != before.Size || after.Mtim != before.Mtim {
				t.Errorf("the %s now under the name changed: %+v, was %+v (%v)", other, after, before, err)
			}
		})
	}
}
