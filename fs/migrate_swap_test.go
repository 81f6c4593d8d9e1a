package fs_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// TestMigrateRechecksTypeAfterOpen: a plaintext file that the vault
// replaces, between migrate's stat and its open, by a FIFO (nobody writing
// it) or by another file is refused with EIO: migrate neither blocks on the
// FIFO nor converts what it did not look at. convertFile is called with
// the stat taken before the swap, as that race leaves it.
func TestMigrateRechecksTypeAfterOpen(t *testing.T) {
	for _, swap := range []string{"fifo", "other file"} {
		t.Run(swap, func(t *testing.T) {
			tv := testvault.New(t, testvault.Options{Plaintext: []string{"pub/"}})
			if err := os.Mkdir(tv.Path("pub"), 0o755); err != nil {
				t.Fatal(err)
			}
			// Made in the vault, so that no handle of the mount (whose
			// release the kernel sends later) makes migrate say EBUSY.
			if err := os.WriteFile(filepath.Join(tv.Backing, "pub", "f"), []byte("plaintext to be encrypted"), 0o644); err != nil {
				t.Fatal(err)
			}
			var backing, dst string
			planted := make(chan string, 1) // backing, for the timeout's path
			// Moved aside, not removed: a new file could reuse a freed inode
			// number.
			plant := func(cur, converted string) error {
				backing = filepath.Join(tv.Backing, "pub", cur)
				dst = converted
				planted <- backing
				if err := os.Rename(backing, backing+".moved"); err != nil {
					return err
				}
				if swap == "fifo" {
					return unix.Mkfifo(backing, 0o644)
				}
				return os.WriteFile(backing, []byte("planted by someone else"), 0o644)
			}

			type result struct {
				errno syscall.Errno
				err   error
			}
			done := make(chan result, 1)
			go func() {
				errno, err := tv.Mount.ConvertRacedForTest("pub/f", plant)
				done <- result{errno, err}
			}()
			var got result
			select {
			case got = <-done:
			case <-time.After(time.Minute):
				// Not a timing check: the open waits for a writer that never
				// comes. Be one, so the goroutine ends.
				if w, err := os.OpenFile(<-planted, os.O_WRONLY, 0); err == nil {
					w.Close()
				}
				<-done
				t.Fatal("migrate blocked opening a FIFO swapped into the vault")
			}
			if got.err != nil {
				t.Fatal(got.err)
			}
			if got.errno != syscall.EIO {
				t.Errorf("convertFile of a swapped-in %s = %v, want EIO", swap, got.errno)
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
