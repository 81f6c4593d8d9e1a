package fs_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"cryptpt/crypt"
	"cryptpt/fs"
	"cryptpt/internal/fstest"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// These tests drive one in-process mount from many goroutines, so that
// `go test -race ./fs/` sees the daemon's locking under load.

// TestConcurrentBlockIO has writers put whole blocks and block-straddling
// sectors into one encrypted file while O_DIRECT readers check that no block
// is ever torn; the end state must hold each owner's last write, also after
// a remount (see fstest.SharedFile).
func TestConcurrentBlockIO(t *testing.T) {
	// Write-through, as in tests.TestConcurrentSharedFile: the O_DIRECT
	// readers check what the daemon stored.
	tv := testvault.New(t, testvault.Options{Options: fs.Options{NoWriteback: true}})
	sf := fstest.SharedFile{Path: tv.Path("shared"), AlignedBlocks: 16, Unaligned: 3}
	must(t, sf.Create())
	final, err := sf.Run(4, 3, 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := sf.CheckFinal(final); err != nil {
		t.Errorf("after the run: %v", err)
	}
	tv.Unmount(t)
	tv.Remount(t)
	if err := sf.CheckFinal(final); err != nil {
		t.Errorf("after a remount: %v", err)
	}
	if strings.Contains(tv.Log(), "authentication failed") {
		t.Errorf("daemon log:\n%s", tv.Log())
	}
}

// TestConcurrentDirOps creates, writes, renames, links and deletes entries
// of one directory from many goroutines, then checks that the listing, stat,
// contents and the vault directory agree.
func TestConcurrentDirOps(t *testing.T) {
	for _, tc := range []struct {
		name      string
		plaintext []string
		dir       string
	}{
		{"encrypted", nil, "d"},
		{"mixed", []string{"media/"}, "media"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tv := testvault.New(t, testvault.Options{Plaintext: tc.plaintext})
			must(t, os.Mkdir(tv.Path(tc.dir), 0o755))
			concDirOps(t, tv, tc.dir, 6, 250)
			if t.Failed() {
				t.Logf("daemon log:\n%s", tv.Log())
			}
		})
	}
}

// concNames are the names the goroutines fight over: short ones and long
// ones that are stored under a hash plus a sidecar when encrypted.
func concNames() []string {
	var names []string
	for i := 0; i < 6; i++ {
		names = append(names, fmt.Sprintf("n%d", i))
		names = append(names, strings.Repeat("x", 200)+fmt.Sprint(i))
	}
	return names
}

func concDirOps(t *testing.T, tv *testvault.Vault, dir string, workers, ops int) {
	names := concNames()
	var wg sync.WaitGroup
	var mu sync.Mutex
	unexpected := map[string]int{}
	var succeeded [5]int
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 4))
			pick := func() string { return filepath.Join(tv.Mnt, dir, names[rng.IntN(len(names))]) }
			for i := 0; i < ops; i++ {
				op, err := fstest.DirOp(rng, pick, fmt.Sprintf("%d-%d", w, i))
				mu.Lock()
				if err == nil {
					succeeded[op]++
				} else if !os.IsNotExist(err) && !os.IsExist(err) {
					unexpected[fmt.Sprintf("op %d: %v", op, err)]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d operations; succeeded: %d creates, %d renames, %d links, %d unlinks, %d reads",
		workers*ops, succeeded[0], succeeded[1], succeeded[2], succeeded[3], succeeded[4])
	for msg, n := range unexpected {
		// ENOENT and EEXIST are the races one expects; anything else
		// (EIO above all) is a bug.
		t.Errorf("%d x %s", n, msg)
	}
	checkDirConsistent(t, tv, dir)
	tv.Unmount(t)
	tv.Remount(t)
	checkDirConsistent(t, tv, dir)
}

// checkDirConsistent compares the listing of dir with stat and contents, and
// with the vault directory behind it.
func checkDirConsistent(t *testing.T, tv *testvault.Vault, dir string) {
	t.Helper()
	entries, err := os.ReadDir(tv.Path(dir))
	must(t, err)
	byContent := map[string][]uint64{}
	for _, e := range entries {
		p := filepath.Join(tv.Path(dir), e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s is listed but lstat fails: %v", e.Name(), err)
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%s is listed but cannot be read: %v", e.Name(), err)
			continue
		}
		if !strings.HasPrefix(string(data), "file ") && len(data) != 0 {
			t.Errorf("%s holds %q", e.Name(), data)
		}
		if len(data) > 0 {
			byContent[string(data)] = append(byContent[string(data)], st.Ino)
		}
	}
	// One content, one inode: hard links share it, nothing is duplicated.
	for content, inos := range byContent {
		for _, ino := range inos {
			if ino != inos[0] {
				t.Errorf("content %q appears under different inodes %v", strings.TrimSpace(content), inos)
				break
			}
		}
	}
	for _, name := range concNames() {
		_, err := os.Lstat(filepath.Join(tv.Path(dir), name))
		listed := false
		for _, e := range entries {
			listed = listed || e.Name() == name
		}
		if (err == nil) != listed {
			t.Errorf("%.20s...: listed %v, but lstat says %v", name, listed, err)
		}
	}
	// The vault directory holds one entry per listed name, a sidecar for
	// each long name and nothing else of ours.
	vdir := tv.Backing
	if dir != "" {
		// Find the vault directory: the one holding our stored entries.
		var found []string
		ents, err := os.ReadDir(tv.Backing)
		must(t, err)
		for _, e := range ents {
			if e.IsDir() {
				found = append(found, e.Name())
			}
		}
		if len(found) != 1 {
			t.Fatalf("vault root holds directories %v, want one", found)
		}
		vdir = filepath.Join(tv.Backing, found[0])
	}
	vents, err := os.ReadDir(vdir)
	must(t, err)
	have := map[string]bool{}
	var stored, kinds []string
	for _, e := range vents {
		have[e.Name()] = true
	}
	for _, e := range vents {
		k := crypt.Classify(e.Name())
		kinds = append(kinds, k.String())
		switch k {
		case crypt.Plain, crypt.Encrypted:
			stored = append(stored, e.Name())
		case crypt.Long:
			stored = append(stored, e.Name())
			if !have[crypt.SidecarName(e.Name())] {
				t.Errorf("long entry %s has no sidecar", e.Name())
			}
		case crypt.Sidecar:
			long := crypt.LongPrefix + strings.TrimPrefix(e.Name(), crypt.SidecarPrefix)
			if !have[long] {
				t.Errorf("orphan sidecar %s", e.Name())
			}
		case crypt.DirIV:
		default:
			t.Errorf("unexpected %s entry %s in the vault directory", k, e.Name())
		}
	}
	if len(stored) != len(entries) {
		sort.Strings(kinds)
		t.Errorf("the mount lists %d entries, the vault directory holds %d (%v)", len(entries), len(stored), kinds)
	}
}

// TestWritebackCloseNoEIO truncates, writes and closes files while other
// goroutines unlink and rename the same names, on a mount with the kernel's
// writeback cache. The kernel writes cached times back right after each
// unlink or rename, and a failure there came back as EIO from an unrelated
// close(): that must never happen. CRYPTPT_STRESS=1 runs it ten times longer.
func TestWritebackCloseNoEIO(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	if !tv.Mount.Status().WritebackCache {
		t.Fatal("an all-encrypted mount did not get the writeback cache")
	}
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	ops := 300
	if os.Getenv("CRYPTPT_STRESS") == "1" {
		ops = 3000
	}
	names := []string{"a", "b", "c", "d", "e", "f"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	unexpected := map[string]int{}
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			pick := func() string { return tv.Path("d/" + names[rng.IntN(len(names))]) }
			for i := range ops {
				var err error
				switch rng.IntN(3) {
				case 0:
					var f *os.File
					if f, err = os.OpenFile(pick(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err == nil {
						_, err = fmt.Fprintf(f, "file %d %d\n", w, i)
						if cerr := f.Close(); err == nil && cerr != nil {
							err = cerr
						}
					}
				case 1:
					err = os.Rename(pick(), pick())
				case 2:
					err = os.Remove(pick())
				}
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					mu.Lock()
					unexpected[err.Error()]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for msg, n := range unexpected {
		t.Errorf("%d x %s", n, msg)
	}
	checkDirConsistent(t, tv, "d")
}
