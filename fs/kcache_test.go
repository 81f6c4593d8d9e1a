package fs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"cryptpt/internal/testvault"
)

// requests returns the kernel's requests so far, by opcode.
func requests(tv *testvault.Vault) map[string]int64 {
	out := map[string]int64{}
	for _, r := range tv.Mount.Status().Requests {
		out[r.Op] = r.Count
	}
	return out
}

// delta returns the requests of ops sent since before.
func delta(tv *testvault.Vault, before map[string]int64, ops ...string) map[string]int64 {
	now := requests(tv)
	out := map[string]int64{}
	for _, op := range ops {
		if d := now[op] - before[op]; d != 0 {
			out[op] = d
		}
	}
	return out
}

// A tree walked again, unchanged, is served from the kernel's caches: no
// directory is opened, listed or looked up again (find, du, file
// managers). The walk right after a listing was read from the daemon asks
// once more for each directory's attributes, since the kernel marks its
// atime stale after reading a listing; later walks send nothing. A change
// through the mount shows in the next walk.
func TestWarmWalkSendsNothing(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		for _, d := range []string{"a", "a/b", "a/b/c", "d"} {
			must(t, os.Mkdir(tv.Path(d), 0o755))
			for _, f := range []string{"x", "y", "z"} {
				must(t, os.WriteFile(tv.Path(d+"/"+f), []byte(f), 0o644))
			}
		}
		walk := func() []string {
			var paths []string
			must(t, filepath.WalkDir(tv.Mnt, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if _, err := d.Info(); err != nil {
					return err
				}
				paths = append(paths, p)
				return nil
			}))
			return paths
		}
		// The watcher invalidates what the kernel wrote itself
		// (passthrough): let it finish before counting.
		tv.Mount.SettleWatcherForTest()
		first := walk()
		walk()
		before := requests(tv)
		second := walk()
		if len(second) != len(first) {
			t.Fatalf("walks differ: %d then %d entries", len(first), len(second))
		}
		if d := delta(tv, before, "OPENDIR", "READDIR", "READDIRPLUS", "LOOKUP", "GETATTR"); len(d) != 0 {
			t.Errorf("a warm walk of an unchanged tree sent %v", d)
		}
		must(t, os.WriteFile(tv.Path("a/b/new"), nil, 0o644))
		if third := walk(); len(third) != len(first)+1 {
			t.Errorf("after a create, the walk found %d entries, want %d", len(third), len(first)+1)
		}
	})
}

// A name that is not there is asked for once: the kernel keeps the negative
// entry, and forgets it when the name appears, through the mount or behind
// its back.
func TestNegativeEntriesCached(t *testing.T) {
	forBothModes(t, func(t *testing.T, tv *testvault.Vault) {
		must(t, os.Mkdir(tv.Path("d"), 0o755))
		stored := newBackingEntry(t, filepath.Join(tv.Backing, backingNames(t, tv.Backing)[0]), func() {
			must(t, os.WriteFile(tv.Path("d/present"), []byte("p"), 0o644))
		})
		missing := func(name string) {
			t.Helper()
			if _, err := os.Stat(tv.Path("d/" + name)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("stat %s: %v, want ENOENT", name, err)
			}
		}
		missing("absent")
		before := requests(tv)
		for range 3 {
			missing("absent")
		}
		if d := delta(tv, before, "LOOKUP"); len(d) != 0 {
			t.Errorf("a cached negative entry was looked up again: %v", d)
		}
		// Through the mount.
		must(t, os.WriteFile(tv.Path("d/absent"), nil, 0o644))
		if _, err := os.Stat(tv.Path("d/absent")); err != nil {
			t.Errorf("created through the mount: %v", err)
		}
		// Behind its back: the vault entry of "present" moves away and
		// back while the kernel remembers the name as missing.
		must(t, os.Rename(stored, stored+".away"))
		tv.Mount.SettleWatcherForTest()
		missing("present")
		must(t, os.Rename(stored+".away", stored))
		tv.Mount.SettleWatcherForTest()
		if _, err := os.Stat(tv.Path("d/present")); err != nil {
			t.Errorf("restored behind the mount's back: %v", err)
		}
	})
}
