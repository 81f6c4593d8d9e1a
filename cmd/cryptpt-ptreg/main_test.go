package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRegisterLimit: with maxBacking ids registered, the next backing file
// is refused with EMFILE before the kernel is asked; one fewer, and the
// request goes on to the ioctl (which fails here on an fd that is not a
// FUSE device: EBADF or ENOTTY, never EMFILE).
func TestRegisterLimit(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "backing"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	notFuse, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer notFuse.Close()

	registered := make(map[int32]bool, maxBacking)
	for id := int32(1); id <= maxBacking; id++ {
		registered[id] = true
	}
	if got := open(int(notFuse.Fd()), int(f.Fd()), registered); got != -int32(unix.EMFILE) {
		t.Errorf("backing file number %d: %d, want -EMFILE", maxBacking+1, got)
	}
	delete(registered, 1)
	if got := open(int(notFuse.Fd()), int(f.Fd()), registered); got == -int32(unix.EMFILE) || got >= 0 {
		t.Errorf("backing file number %d: %d, want the ioctl's error", maxBacking, got)
	}
	if len(registered) != maxBacking-1 {
		t.Errorf("a failed ioctl changed the registered set: %d ids", len(registered))
	}
}
