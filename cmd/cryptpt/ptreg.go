package main

import (
	"os"
	"path/filepath"

	"cryptpt/fs"
)

// helperName is the passthrough helper, installed with the capability
// cap_sys_admin+ep (see cmd/cryptpt-ptreg).
const helperName = "cryptpt-ptreg"

// passthroughHelper returns the helper a daemon without CAP_SYS_ADMIN uses
// for passthrough: $CRYPTPT_PTREG, else cryptpt-ptreg beside this program,
// else ../lib/cryptpt/cryptpt-ptreg from it (where make install puts it);
// "" when the daemon needs none or there is none.
func passthroughHelper() string {
	if fs.CanMount() {
		return ""
	}
	if p := os.Getenv("CRYPTPT_PTREG"); p != "" {
		return p
	}
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	dir := filepath.Dir(self)
	for _, p := range []string{filepath.Join(dir, helperName), filepath.Join(dir, "..", "lib", "cryptpt", helperName)} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return filepath.Clean(p)
		}
	}
	return ""
}
