package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"cryptpt/fs"
	"cryptpt/internal/testvault"
)

// TestDirFdsBounded walks a tree of many more directories than the daemon
// may hold fds for, in an encrypted and a plaintext area: every file stays
// reachable, and the daemon never holds more directory fds than its bound.
// (Each directory used to keep an fd until the kernel forgot it; 30,000 of
// them exhausted the fd limit.) tests.TestManyDirectories does the same at
// home-directory scale under a real fd limit.
func TestDirFdsBounded(t *testing.T) {
	const bound = 16
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"plain/"}, Options: fs.Options{MaxDirFds: bound}})
	want := map[string]string{}
	for _, area := range []string{"enc", "plain"} {
		for i := range 12 {
			for j := range 12 {
				dir := filepath.Join(area, fmt.Sprintf("d%d", i), fmt.Sprintf("e%d", j))
				must(t, os.MkdirAll(tv.Path(dir), 0o755))
				f := filepath.Join(dir, "f")
				want[f] = f
				must(t, os.WriteFile(tv.Path(f), []byte(f), 0o644))
			}
		}
	}
	check := func(when string) {
		t.Helper()
		for f := range want {
			if got, err := os.ReadFile(tv.Path(f)); err != nil || string(got) != f {
				t.Fatalf("%s: %s = %q, %v", when, f, got, err)
			}
		}
		if st := tv.Mount.Status(); st.DirFds > bound || st.MaxDirFds != bound {
			t.Fatalf("%s: %d directory fds open, bound %d (status says %d)", when, st.DirFds, bound, st.MaxDirFds)
		}
	}
	check("after creating")
	// Let the kernel forget the tree, so that lookups come again from the
	// top through directories whose fds were closed.
	must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0o200))
	check("after the kernel forgot the tree")
}
