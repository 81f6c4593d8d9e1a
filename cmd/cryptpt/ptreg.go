package main

import (
	"encoding/binary"
	"os"
	"path/filepath"

	"cryptpt/fs"

	"golang.org/x/sys/unix"
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
	return findHelper()
}

// findHelper looks for the helper where passthroughHelper does, whatever
// this process's capabilities.
func findHelper() string {
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

// installedHelper is where "make install" puts the helper by default.
const installedHelper = "/usr/local/lib/cryptpt/" + helperName

// hasSysAdminCap reports whether the file at path carries CAP_SYS_ADMIN as
// a permitted and effective file capability (setcap cap_sys_admin+ep): the
// security.capability xattr, struct vfs_cap_data of linux/capability.h.
func hasSysAdminCap(path string) bool {
	buf := make([]byte, 24)
	n, err := unix.Getxattr(path, "security.capability", buf)
	if err != nil || n < 12 {
		return false
	}
	magic := binary.LittleEndian.Uint32(buf[0:4])
	permitted := binary.LittleEndian.Uint32(buf[4:8]) // bits 0-31
	const effective = 0x000001                        // VFS_CAP_FLAGS_EFFECTIVE
	return magic&effective != 0 && permitted&(1<<unix.CAP_SYS_ADMIN) != 0
}
