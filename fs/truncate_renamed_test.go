package fs_test

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"testing"

	"cryptpt/crypt"
	"cryptpt/internal/testvault"
)

// A truncate by path of a file whose name the vault has given to another
// entry while the file is open changes the open file, as the other
// attributes do (onEntry): never the entry now under its name, and without
// leaving a duplicate fd to the garbage collector.
func TestTruncateOfRenamedOverOpenFile(t *testing.T) {
	for _, other := range []string{"file", "directory"} {
		t.Run(other, func(t *testing.T) {
			tv := testvault.New(t, testvault.Options{})
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
			stored := func(name string) string {
				s, err := tv.Mount.StoredNameForTest(name)
				if err != nil {
					t.Fatal(err)
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
				if err := tv.Mount.TruncateVaultForTest("f", uint64(5-i%2)); err != nil {
					t.Fatalf("truncate: %v", err)
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
