package keys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"cryptpt/crypt"
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// hookFunc is called after each step of writeConfig (layout.StepCreate…); an
// error stops it there as a kill would. Production callers pass nil.
type hookFunc = func(step string) error

// writeConfig writes data as the config file of dir atomically
// (layout.WriteFile: temp file, fsync, rename, directory fsync). A kill at
// any point leaves either the old or the new config in place. With
// exclusive set (Create), an existing config is never replaced (ErrExists).
func writeConfig(dir string, data []byte, exclusive bool, hook hookFunc) error {
	dst := filepath.Join(dir, crypt.VaultConfigName)
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirfd)
	o := layout.WriteOptions{Perm: 0o600, NoReplace: exclusive, Hook: hook}
	// A replaced config keeps its owner: root changing the password of a
	// user's vault (a login password change through PAM) must not leave a
	// config the user's own daemon cannot read.
	if old, err := os.Lstat(dst); err == nil {
		if st, ok := old.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			o.Prepare = func(fd int) error { return unix.Fchown(fd, int(st.Uid), int(st.Gid)) }
		}
	}
	err = layout.WriteFile(dirfd, crypt.VaultConfigName, data, o)
	switch {
	case err == nil:
		return nil
	case exclusive && errors.Is(err, os.ErrExist):
		return fmt.Errorf("%w: %s", ErrExists, dst)
	}
	return &os.PathError{Op: "write", Path: dst, Err: err}
}
