package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"cryptpt/crypt"
	"cryptpt/internal/fstest"

	"golang.org/x/sys/unix"
)

// Concurrency against the CLI daemon: goroutines of this process and other
// processes (sh loops running dd, mv, ln, rm) share one encrypted file and
// one directory. fs/concurrency_test.go runs the in-process variant under
// the race detector.

// TestConcurrentSharedFile: whole uniform 4 KiB blocks written at
// overlapping offsets by goroutines and by dd processes; 512-byte sectors
// written at block-straddling offsets by goroutines that each own a byte
// range; O_DIRECT readers (goroutines and a dd process) check that no block
// or sector is ever a mix of two writes, and the end state must hold the
// last sectors each owner wrote, also after a remount.
func TestConcurrentSharedFile(t *testing.T) {
	ops, procOps := 400, 60
	if stressRun() {
		ops, procOps = 5000, 600
	}
	v := newCLIVault(t)
	// Write-through, so that the O_DIRECT readers see what the daemon
	// stored: with the writeback cache the kernel itself may send a page
	// that a buffered write is changing, and O_DIRECT reads are not
	// coherent with buffered writes on any Linux filesystem.
	// TestWritebackCloseNoEIO and the rest of the suite cover writeback.
	v.mount(t, "--writeback=false")
	sf := fstest.SharedFile{Path: v.path("shared"), AlignedBlocks: 32, Unaligned: 3}
	must(t, sf.Create())

	// dd writer processes, each with its own block value 250..251, above
	// the goroutine writers' values.
	dir := t.TempDir()
	var procs []*exec.Cmd
	rng := rand.New(rand.NewPCG(11, 11))
	for k := 0; k < 2; k++ {
		pat := filepath.Join(dir, fmt.Sprintf("pat%d", k))
		must(t, os.WriteFile(pat, bytes.Repeat([]byte{byte(250 + k)}, fstest.Block), 0o644))
		var script strings.Builder
		for i := 0; i < procOps; i++ {
			fmt.Fprintf(&script, "dd if=%s of=%s bs=4096 seek=%d count=1 conv=notrunc status=none || exit 1\n", pat, sf.Path, rng.IntN(sf.AlignedBlocks))
		}
		procs = append(procs, shScript(t, dir, script.String()))
	}
	// A dd reader process: O_DIRECT copies, checked afterwards.
	copies := filepath.Join(dir, "copies")
	must(t, os.Mkdir(copies, 0o755))
	var rscript strings.Builder
	for i := 0; i < procOps/2; i++ {
		fmt.Fprintf(&rscript, "dd if=%s of=%s/%d bs=1M iflag=direct status=none || exit 1\n", sf.Path, copies, i)
	}
	procs = append(procs, shScript(t, dir, rscript.String()))
	for _, c := range procs {
		must(t, c.Start())
	}
	final, err := sf.Run(3, 3, ops)
	if err != nil {
		t.Error(err)
	}
	for _, c := range procs {
		if err := c.Wait(); err != nil {
			t.Errorf("%s: %v", c.Args[1], err)
		}
	}
	ents, err := os.ReadDir(copies)
	must(t, err)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(copies, e.Name()))
		must(t, err)
		if len(data) != sf.Size() {
			t.Errorf("dd copy %s has %d bytes, want %d", e.Name(), len(data), sf.Size())
		} else if err := sf.CheckUniform(data, 0); err != nil {
			t.Errorf("dd copy %s: %v", e.Name(), err)
		}
	}
	if err := sf.CheckFinal(final); err != nil {
		t.Errorf("after the run: %v", err)
	}
	v.unmount(t)
	v.mount(t)
	if err := sf.CheckFinal(final); err != nil {
		t.Errorf("after a remount: %v", err)
	}
	if st := v.status(t); st.AuthFailures != 0 {
		t.Errorf("%d authentication failures", st.AuthFailures)
	}
	t.Logf("%d goroutine writes and reads, %d dd writes, %d dd copies checked", 9*ops, 2*procOps, len(ents))
}

// shScript writes script to a file in dir and returns the command running it.
func shScript(t *testing.T, dir, script string) *exec.Cmd {
	t.Helper()
	f, err := os.CreateTemp(dir, "script-*.sh")
	must(t, err)
	_, err = f.WriteString(script)
	must(t, err)
	must(t, f.Close())
	return exec.Command("sh", f.Name())
}

// TestConcurrentDirectory: goroutines and sh processes create, rename, link
// and delete entries of one directory (short and long names, in the
// encrypted and in the plaintext area); afterwards the listing, lstat,
// contents and the vault directory must agree.
func TestConcurrentDirectory(t *testing.T) {
	ops := 300
	if stressRun() {
		ops = 4000
	}
	v := newCLIVault(t, "media/")
	var names []string
	for i := 0; i < 5; i++ {
		names = append(names, fmt.Sprintf("n%d", i), strings.Repeat("y", 200)+fmt.Sprint(i))
	}
	for _, dir := range []string{"docs", "media"} {
		t.Run(dir, func(t *testing.T) {
			v.mount(t) // unmounted again when the subtest ends
			must(t, os.Mkdir(v.path(dir), 0o755))
			full := func(n string) string { return filepath.Join(v.path(dir), n) }
			rng := rand.New(rand.NewPCG(5, 5))
			var procs []*exec.Cmd
			for k := 0; k < 2; k++ {
				var s strings.Builder
				s.WriteString("exec 2>/dev/null\n")
				for i := 0; i < ops/3; i++ {
					a, b := full(names[rng.IntN(len(names))]), full(names[rng.IntN(len(names))])
					switch rng.IntN(4) {
					case 0:
						fmt.Fprintf(&s, "(set -C; echo 'file sh%d-%d' > '%s')\n", k, i, a)
					case 1:
						fmt.Fprintf(&s, "mv -f '%s' '%s'\n", a, b)
					case 2:
						fmt.Fprintf(&s, "ln '%s' '%s'\n", a, b)
					case 3:
						fmt.Fprintf(&s, "rm -f '%s'\n", a)
					}
				}
				procs = append(procs, shScript(t, t.TempDir(), s.String()))
			}
			for _, c := range procs {
				must(t, c.Start())
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			unexpected := map[string]int{}
			for w := 0; w < 6; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 6))
					pick := func() string { return full(names[rng.IntN(len(names))]) }
					for i := 0; i < ops; i++ {
						_, err := fstest.DirOp(rng, pick, fmt.Sprintf("g%d-%d", w, i))
						if err != nil && !os.IsNotExist(err) && !os.IsExist(err) {
							mu.Lock()
							unexpected[err.Error()]++
							mu.Unlock()
						}
					}
				}()
			}
			wg.Wait()
			for _, c := range procs {
				c.Wait() // failures of single commands are expected races
			}
			for msg, n := range unexpected {
				t.Errorf("%d x %s", n, msg)
			}
			if len(unexpected) > 0 {
				log, _ := os.ReadFile(v.log)
				t.Logf("daemon log:\n%s", log)
			}
			dirConsistent(t, v, dir, names)
			v.unmount(t)
			v.mount(t)
			dirConsistent(t, v, dir, names)
			t.Logf("%d goroutine operations and %d shell commands", 6*ops, 2*(ops/3))
		})
	}
}

// dirConsistent compares the listing of dir with lstat and contents, and
// with the vault directory that holds it.
func dirConsistent(t *testing.T, v *cliVault, dir string, names []string) {
	t.Helper()
	entries, err := os.ReadDir(v.path(dir))
	must(t, err)
	listed := map[string]bool{}
	inoOf := map[string]uint64{}
	for _, e := range entries {
		listed[e.Name()] = true
		p := filepath.Join(v.path(dir), e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%.12s... is listed but lstat fails: %v", e.Name(), err)
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil || (len(data) > 0 && !strings.HasPrefix(string(data), "file ")) {
			t.Errorf("%.12s...: content %q, %v", e.Name(), data, err)
			continue
		}
		if prev, ok := inoOf[string(data)]; ok && len(data) > 0 && prev != st.Ino {
			t.Errorf("content %q appears under two inodes", data)
		}
		inoOf[string(data)] = st.Ino
	}
	for _, n := range names {
		_, err := os.Lstat(filepath.Join(v.path(dir), n))
		if (err == nil) != listed[n] {
			t.Errorf("%.12s...: listed %v but lstat says %v", n, listed[n], err)
		}
	}
	// The vault directory: find it by its entry count of our kinds.
	var vdir string
	roots, err := os.ReadDir(v.backing)
	must(t, err)
	for _, r := range roots {
		if !r.IsDir() {
			continue
		}
		if r.Name() == dir || (crypt.Classify(r.Name()) != crypt.Plain && dir != "media") {
			vdir = filepath.Join(v.backing, r.Name())
		}
	}
	if vdir == "" {
		t.Fatalf("no vault directory for %s among %v", dir, roots)
	}
	vents, err := os.ReadDir(vdir)
	must(t, err)
	have := map[string]bool{}
	for _, e := range vents {
		have[e.Name()] = true
	}
	count := 0
	for _, e := range vents {
		switch k := crypt.Classify(e.Name()); k {
		case crypt.Plain, crypt.Encrypted:
			count++
		case crypt.Long:
			count++
			if !have[crypt.SidecarName(e.Name())] {
				t.Errorf("long entry %s has no sidecar", e.Name())
			}
		case crypt.Sidecar:
			if !have[crypt.LongPrefix+strings.TrimPrefix(e.Name(), crypt.SidecarPrefix)] {
				t.Errorf("orphan sidecar %s", e.Name())
			}
		case crypt.DirIV:
		default:
			t.Errorf("leftover %s entry %s in the vault directory", k, e.Name())
		}
	}
	if count != len(entries) {
		t.Errorf("the mount lists %d entries in %s, the vault directory holds %d", len(entries), dir, count)
	}
}
