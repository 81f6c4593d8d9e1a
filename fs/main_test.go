package fs_test

import (
	"os"
	"testing"

	cfs "cryptpt/fs"
)

// TestMain lets the test binary serve as the view's guard (viewguard.go),
// which the mounts it makes start by running their own executable again.
func TestMain(m *testing.M) {
	if cfs.IsViewGuard() {
		os.Exit(cfs.RunViewGuard())
	}
	os.Exit(m.Run())
}
