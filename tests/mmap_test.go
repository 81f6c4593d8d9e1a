package tests

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"cryptpt/internal/testvault"
)

// TestMmapWriteUpdatesMtime writes through a shared mapping, as a database
// or an editor may, in both modes: mtime and ctime must move, as on ext4.
// A passthrough file's mapping belongs to the backing file, so the daemon
// sees none of it. The file's times are first set far in the past, so the
// check does not depend on the clock's granularity.
func TestMmapWriteUpdatesMtime(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"pub/"}})
	must(t, os.Mkdir(tv.Path("pub"), 0o755))
	old := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range []string{"enc", "pub/plain"} {
		p := tv.Path(name)
		must(t, os.WriteFile(p, make([]byte, 8192), 0o644))
		must(t, os.Chtimes(p, old, old))
		before, err := os.Stat(p)
		must(t, err)
		if !before.ModTime().Equal(old) {
			t.Fatalf("%s: mtime %v after setting it to %v", name, before.ModTime(), old)
		}
		// The mapping is still there when the first stat is checked.
		script := `import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.fstat(fd)
m = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[100:105] = b"hello"
m.flush()
if os.stat(sys.argv[1]).st_mtime <= 946684800:
    sys.exit("mtime unchanged while mapped")
m.close()
os.close(fd)`
		if out, err := exec.Command("python3", "-c", script, p).CombinedOutput(); err != nil {
			t.Fatalf("%s: mmap write: %v\n%s", name, err, out)
		}
		after, err := os.Stat(p)
		must(t, err)
		if !after.ModTime().After(old) {
			t.Errorf("%s: mtime %v after a write through a shared mapping, still the old one", name, after.ModTime())
		}
		data, err := os.ReadFile(p)
		must(t, err)
		if string(data[100:105]) != "hello" {
			t.Errorf("%s: the mapped write is not in the file: %q", name, data[100:105])
		}
	}
}
