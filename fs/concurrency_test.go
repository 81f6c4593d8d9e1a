package fs_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"cryptpt/crypt"
	"cryptpt/fs"

	"golang.org/x/sys/unix"
)

// These tests drive one in-process mount from many goroutines, so that
// `go test -race ./fs/` sees the daemon's locking under load.

const concBlock = 4096

// TestConcurrentBlockIO has writers put whole, uniform 4 KiB blocks into an
// encrypted file at overlapping offsets while readers (O_DIRECT, so every
// read is one request to the daemon) check that each block they see is
// uniform: a block is rewritten under the node's lock, so a mix of two
// writes inside one block means a torn block. A second region is written in
// 512-byte sectors at offsets that straddle blocks, each writer in its own
// byte range; its final content must be exactly the last sectors written,
// which catches a lost read-modify-write of a shared block.
func TestConcurrentBlockIO(t *testing.T) {
	tv := fs.NewTestVault(t, fs.TestOptions{})
	p := tv.Path("shared")
	const (
		alignedBlocks = 16
		unalignedBase = alignedBlocks * concBlock
		sliceLen      = 5 * 512 // per unaligned writer: never a multiple of 4096
		unalignedN    = 3
		writers       = 4
		readers       = 3
		opsPerWorker  = 300
	)
	size := unalignedBase + unalignedN*sliceLen
	init := bytes.Repeat([]byte{1}, size)
	for i := unalignedBase; i < size; i++ {
		init[i] = 0
	}
	must(t, os.WriteFile(p, init, 0o644))

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	final := make([][]byte, unalignedN) // last content of each unaligned slice
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				report(err)
				return
			}
			defer f.Close()
			for i := 0; i < opsPerWorker; i++ {
				b := rng.IntN(alignedBlocks)
				n := 1 + rng.IntN(3) // 1-3 whole blocks in one write
				n = min(n, alignedBlocks-b)
				buf := make([]byte, 0, n*concBlock)
				for k := 0; k < n; k++ {
					buf = append(buf, bytes.Repeat([]byte{byte(2 + rng.IntN(250))}, concBlock)...)
				}
				if _, err := f.WriteAt(buf, int64(b*concBlock)); err != nil {
					report(fmt.Errorf("aligned writer %d: %w", w, err))
					return
				}
			}
		}()
	}
	for u := 0; u < unalignedN; u++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(u), 2))
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				report(err)
				return
			}
			defer f.Close()
			cur := make([]byte, sliceLen)
			for i := 0; i < opsPerWorker; i++ {
				s0 := rng.IntN(5)
				s1 := s0 + 1 + rng.IntN(5-s0)
				for s := s0; s < s1; s++ {
					copy(cur[s*512:(s+1)*512], bytes.Repeat([]byte{byte(1 + rng.IntN(255))}, 512))
				}
				off := int64(unalignedBase + u*sliceLen + s0*512)
				if _, err := f.WriteAt(cur[s0*512:s1*512], off); err != nil {
					report(fmt.Errorf("unaligned writer %d: %w", u, err))
					return
				}
			}
			final[u] = cur
		}()
	}
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 3))
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
			if err != nil {
				report(err)
				return
			}
			defer f.Close()
			buf := make([]byte, size)
			for i := 0; i < opsPerWorker; i++ {
				off := rng.IntN(size)
				n := 1 + rng.IntN(min(size-off, 5*concBlock))
				if rng.IntN(2) == 0 { // aligned reads too
					off = concBlock * rng.IntN(size/concBlock)
					n = min(size-off, concBlock*(1+rng.IntN(4)))
				}
				got, err := f.ReadAt(buf[:n], int64(off))
				if err != nil {
					report(fmt.Errorf("reader %d at %d+%d: %w", r, off, n, err))
					return
				}
				if err := checkUniform(buf[:got], off, unalignedBase); err != nil {
					report(fmt.Errorf("reader %d: %w", r, err))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	checkFinal := func(when string) {
		got, err := os.ReadFile(p)
		must(t, err)
		if len(got) != size {
			t.Fatalf("%s: size %d, want %d", when, len(got), size)
		}
		if err := checkUniform(got, 0, unalignedBase); err != nil {
			t.Errorf("%s: %v", when, err)
		}
		for u, want := range final {
			at := unalignedBase + u*sliceLen
			if !bytes.Equal(got[at:at+sliceLen], want) {
				t.Errorf("%s: the slice of unaligned writer %d is not what it wrote last (lost update)", when, u)
			}
		}
	}
	checkFinal("after the run")
	tv.Unmount(t)
	tv.Remount(t)
	checkFinal("after a remount")
	if strings.Contains(tv.Log(), "authentication failed") {
		t.Errorf("daemon log:\n%s", tv.Log())
	}
}

// checkUniform checks buf, read at file offset off: every whole 4 KiB block
// below split is one nonzero byte repeated, every whole 512-byte sector from
// split on is one byte repeated.
func checkUniform(buf []byte, off, split int) error {
	for i := 0; i < len(buf); {
		pos := off + i
		unit := concBlock
		if pos >= split {
			unit = 512
			pos -= split
		}
		start := pos - pos%unit
		if pos != start || len(buf)-i < unit || (off+i < split && off+i+unit > split) {
			next := unit - pos%unit
			i += next
			continue
		}
		blk := buf[i : i+unit]
		if (unit == concBlock && blk[0] == 0) || !bytes.Equal(blk, bytes.Repeat(blk[:1], unit)) {
			return fmt.Errorf("torn %d-byte unit at file offset %d: starts with %d, first differing byte at %d",
				unit, off+i, blk[0], firstNonEqual(blk))
		}
		i += unit
	}
	return nil
}

func firstNonEqual(b []byte) int {
	for i := range b {
		if b[i] != b[0] {
			return i
		}
	}
	return -1
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
			tv := fs.NewTestVault(t, fs.TestOptions{Plaintext: tc.plaintext})
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

func concDirOps(t *testing.T, tv *fs.TestVault, dir string, workers, ops int) {
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
				var err error
				op := rng.IntN(5)
				switch op {
				case 0: // create exclusively with self-describing content
					var f *os.File
					f, err = os.OpenFile(pick(), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
					if err == nil {
						_, err = fmt.Fprintf(f, "file %d-%d\n", w, i)
						if cerr := f.Close(); err == nil {
							err = cerr
						}
					}
				case 1:
					err = os.Rename(pick(), pick())
				case 2:
					err = os.Link(pick(), pick())
				case 3:
					err = os.Remove(pick())
				case 4:
					var data []byte
					data, err = os.ReadFile(pick())
					if err == nil && len(data) > 0 && !strings.HasPrefix(string(data), "file ") {
						err = fmt.Errorf("read %q", data)
					}
				}
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
func checkDirConsistent(t *testing.T, tv *fs.TestVault, dir string) {
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
