package fs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// testNode returns the node of rel in m, looking it up as Mount.Migrate
// does.
func testNode(t *testing.T, m *Mount, rel string) *node {
	t.Helper()
	cur := m.root
	for _, name := range strings.Split(rel, "/") {
		ch := cur.GetChild(name)
		if ch == nil {
			var out fuse.EntryOut
			var errno syscall.Errno
			if ch, errno = cur.Lookup(context.Background(), name, &out); errno != 0 {
				t.Fatalf("lookup %s: %v", name, errno)
			}
			if !cur.AddChild(name, ch, false) {
				ch = cur.GetChild(name)
			}
		}
		cur = ch.Operations().(*node)
	}
	return cur
}

// TestMigrateRechecksTypeAfterOpen: a plaintext file that the vault
// replaces, between migrate's stat and its open, by a FIFO (nobody writing
// it) or by another file is refused with EIO: migrate neither blocks on the
// FIFO nor converts what it did not look at. convertFile is called with
// the stat taken before the swap, as that race leaves it.
func TestMigrateRechecksTypeAfterOpen(t *testing.T) {
	for _, swap := range []string{"fifo", "other file"} {
		t.Run(swap, func(t *testing.T) {
			tv := NewTestVault(t, TestOptions{Plaintext: []string{"pub/"}})
			if err := os.Mkdir(tv.Path("pub"), 0o755); err != nil {
				t.Fatal(err)
			}
			// Made in the vault, so that no handle of the mount (whose
			// release the kernel sends later) makes migrate say EBUSY.
			if err := os.WriteFile(filepath.Join(tv.Backing, "pub", "f"), []byte("plaintext to be encrypted"), 0o644); err != nil {
				t.Fatal(err)
			}
			n := testNode(t, tv.Mount, "pub/f")
			p, name, errno := n.parent()
			if errno != 0 {
				t.Fatal(errno)
			}
			pfd, release, errno := p.dirfd()
			if errno != 0 {
				t.Fatal(errno)
			}
			defer release()
			cur, errno := p.storedName(name, false, false)
			if errno != 0 {
				t.Fatal(errno)
			}
			dst, _, errno := p.storedNameSidecar(name, true, true)
			if errno != 0 {
				t.Fatal(errno)
			}
			var st syscall.Stat_t
			if err := fstatat(pfd, cur, &st); err != nil {
				t.Fatal(err)
			}

			// Moved aside, not removed: a new file could reuse a freed inode
			// number.
			backing := filepath.Join(tv.Backing, "pub", cur)
			if err := os.Rename(backing, backing+".moved"); err != nil {
				t.Fatal(err)
			}
			if swap == "fifo" {
				if err := unix.Mkfifo(backing, 0o644); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(backing, []byte("planted by someone else"), 0o644); err != nil {
				t.Fatal(err)
			}

			done := make(chan syscall.Errno, 1)
			go func() {
				p.treeMu.RLock()
				defer p.treeMu.RUnlock()
				done <- n.convertFile(pfd, cur, dst, &st, true, nil)
			}()
			var got syscall.Errno
			select {
			case got = <-done:
			case <-time.After(time.Minute):
				// Not a timing check: the open waits for a writer that never
				// comes. Be one, so the goroutine ends.
				if w, err := os.OpenFile(backing, os.O_WRONLY, 0); err == nil {
					w.Close()
				}
				<-done
				t.Fatal("migrate blocked opening a FIFO swapped into the vault")
			}
			if got != syscall.EIO {
				t.Errorf("convertFile of a swapped-in %s = %v, want EIO", swap, got)
			}
			if _, err := os.Lstat(filepath.Join(tv.Backing, "pub", dst)); err == nil {
				t.Errorf("a converted copy of the swapped-in %s was put in place", swap)
			}
			var now syscall.Stat_t
			if err := syscall.Lstat(backing, &now); err != nil {
				t.Errorf("the swapped-in %s is gone: %v", swap, err)
			}
			if !strings.Contains(tv.Log(), "replaced in the vault during migrate") {
				t.Errorf("nothing logged:\n%s", tv.Log())
			}
		})
	}
}
