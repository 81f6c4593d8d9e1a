package fstest

import (
	"os"
	"testing"
)

// RequireFUSE skips the test when this machine cannot mount FUSE filesystems,
// except when CRYPTPT_REQUIRE_FUSE=1 (CI), where it fails instead: a skipped
// mount test would hide a broken product.
func RequireFUSE(tb testing.TB) {
	tb.Helper()
	why := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "no /dev/fuse"
	} else if os.Geteuid() != 0 {
		if _, err := os.Stat("/usr/bin/fusermount3"); err != nil {
			why = "not root and no fusermount3"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CRYPTPT_REQUIRE_FUSE") == "1" {
		tb.Fatalf("cannot mount FUSE (%s) but CRYPTPT_REQUIRE_FUSE=1", why)
	}
	tb.Skipf("cannot mount FUSE: %s", why)
}
