package fs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cryptpt/internal/testvault"
)

// newBackingEntry runs create and returns the vault name of the one entry
// it added to the backing directory dir (cryptpt's own files aside).
func newBackingEntry(t *testing.T, dir string, create func()) string {
	t.Helper()
	before := backingNames(t, dir)
	create()
	var added []string
	for _, n := range backingNames(t, dir) {
		if !slices.Contains(before, n) {
			added = append(added, n)
		}
	}
	if len(added) != 1 {
		t.Fatalf("expected one new vault entry, got %q", added)
	}
	return filepath.Join(dir, added[0])
}

func backingNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range ents {
		if n := e.Name(); !strings.HasPrefix(n, "~~") || strings.HasPrefix(n, "~~c") || strings.HasPrefix(n, "~~l") {
			names = append(names, n)
		}
	}
	return names
}

// Changes made to the vault behind the daemon's back (a sync tool) reach
// the kernel's long-lived caches through the watcher: creations, deletions,
// renames, new content and new attributes, in listings too.
func TestWatchOutsideChanges(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		must(t, os.Mkdir(tv.Path("d"), 0o755))
		dir := filepath.Join(tv.Backing, strings.TrimPrefix(newBackingEntry(t, tv.Backing, func() {
			must(t, os.Mkdir(tv.Path("d2"), 0o755))
		}), tv.Backing))
		write := func(name, content string) string {
			return newBackingEntry(t, dir, func() {
				must(t, os.WriteFile(tv.Path("d2/"+name), []byte(content), 0o644))
			})
		}
		list := func() []string {
			ents, err := os.ReadDir(tv.Path("d2"))
			must(t, err)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			return names
		}
		settle := tv.Mount.SettleWatcherForTest

		// The kernel caches a name, its attributes, the content and the
		// listing.
		a := write("a", "first")
		read := func(name string) string {
			data, err := os.ReadFile(tv.Path("d2/" + name))
			if err != nil {
				return err.Error()
			}
			return string(data)
		}
		if got := read("a"); got != "first" {
			t.Fatalf("read a: %q", got)
		}
		if got := list(); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("listing: %q", got)
		}

		// Deleted behind the daemon's back.
		saved, err := os.ReadFile(a)
		must(t, err)
		must(t, os.Remove(a))
		settle()
		if _, err := os.Stat(tv.Path("d2/a")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after an outside delete, stat a: %v", err)
		}
		if got := list(); len(got) != 0 {
			t.Errorf("after an outside delete, the listing holds %q", got)
		}

		// Restored behind its back (the kernel had a negative entry).
		must(t, os.WriteFile(a, saved, 0o644))
		settle()
		if got := read("a"); got != "first" {
			t.Errorf("after an outside restore, read a: %q", got)
		}
		if got := list(); !slices.Equal(got, []string{"a"}) {
			t.Errorf("after an outside restore, listing: %q", got)
		}

		// New content of another size: the vault form of another file
		// written through the mount, as a second machine would sync it
		// (whole encrypted files are self-contained: docs/threat-model.md).
		b := write("b", strings.Repeat("longer content ", 1000))
		if got := read("a"); got != "first" {
			t.Fatalf("read a: %q", got)
		}
		other, err := os.ReadFile(b)
		must(t, err)
		must(t, os.Remove(b))
		must(t, os.WriteFile(a+".tmp", other, 0o644))
		must(t, os.Rename(a+".tmp", a))
		settle()
		if got := read("a"); got != strings.Repeat("longer content ", 1000) {
			t.Errorf("after an outside rewrite, read a: %.40q", got)
		}
		st, err := os.Stat(tv.Path("d2/a"))
		must(t, err)
		if st.Size() != int64(len("longer content ")*1000) {
			t.Errorf("after an outside rewrite, size %d", st.Size())
		}

		// Attributes changed behind its back.
		must(t, os.Chmod(a, 0o600))
		settle()
		st, err = os.Stat(tv.Path("d2/a"))
		must(t, err)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("after an outside chmod, mode %v", st.Mode())
		}

		// Renamed behind its back: the name of a file deleted through the
		// mount before, whose vault name the test knows.
		c := write("c", "cc")
		must(t, os.Remove(tv.Path("d2/c")))
		if _, err := os.Stat(tv.Path("d2/c")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("stat c after unlink: %v", err)
		}
		must(t, os.Rename(a, c))
		settle()
		if _, err := os.Stat(tv.Path("d2/a")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after an outside rename, stat a: %v", err)
		}
		if _, err := os.Stat(tv.Path("d2/c")); err != nil {
			t.Errorf("after an outside rename, stat c: %v", err)
		}
		if got := list(); !slices.Equal(got, []string{"c"}) {
			t.Errorf("after an outside rename, listing: %q", got)
		}
	})
}

// A directory whose IV the vault replaced behind the daemon's back (a sync
// tool that kept the other device's copy of the same directory) reads its
// names with the new IV at once.
func TestWatchReplacedDirIV(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	var dirs [2]string
	for i, d := range []string{"d1", "d2"} {
		dirs[i] = newBackingEntry(t, tv.Backing, func() {
			must(t, os.Mkdir(tv.Path(d), 0o755))
		})
	}
	must(t, os.WriteFile(tv.Path("d1/a"), []byte("a"), 0o644))
	must(t, os.WriteFile(tv.Path("d2/b"), []byte("b"), 0o644))
	ents, err := os.ReadDir(tv.Path("d1"))
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != "a" {
		t.Fatalf("d1 lists %v", ents)
	}
	// d2's IV and entry replace d1's, as a sync tool would write them.
	for _, n := range backingNames(t, dirs[0]) {
		must(t, os.Remove(filepath.Join(dirs[0], n)))
	}
	b := backingNames(t, dirs[1])[0]
	must(t, os.Rename(filepath.Join(dirs[1], b), filepath.Join(dirs[0], b)))
	iv, err := os.ReadFile(filepath.Join(dirs[1], "~~diriv"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dirs[0], "~~diriv.tmp"), iv, 0o400))
	must(t, os.Rename(filepath.Join(dirs[0], "~~diriv.tmp"), filepath.Join(dirs[0], "~~diriv")))
	tv.Mount.SettleWatcherForTest()
	ents, err = os.ReadDir(tv.Path("d1"))
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != "b" {
		t.Errorf("after the IV was replaced, d1 lists %v, want [b]", ents)
	}
	if got, err := os.ReadFile(tv.Path("d1/b")); err != nil || string(got) != "b" {
		t.Errorf("read d1/b: %q %v", got, err)
	}
}
