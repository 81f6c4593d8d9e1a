package keys

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Steps of writeConfig, in order. A hook sees each name after the step is done.
const (
	stepCreate  = "create"  // temp file created, empty
	stepWrite   = "write"   // temp file holds the full new config
	stepSync    = "sync"    // temp file fsynced
	stepClose   = "close"   // temp file closed
	stepRename  = "rename"  // temp file renamed (or linked) over the config
	stepSyncDir = "syncdir" // directory fsynced
)

// errCrash is returned by a test hook to stop writeConfig where it is, as if
// the process had been killed: no cleanup runs.
var errCrash = errors.New("simulated crash")

// hookFunc is called after each step of writeConfig; a non-nil error stops it.
// Production callers pass nil.
type hookFunc func(step string) error

// writeConfig writes data as the config file of dir atomically: a temp file
// "~~t<16 hex>" in dir is written, fsynced and closed, then renamed over the
// config, then dir is fsynced. A kill at any point leaves either the old or
// the new config in place. With exclusive set (Create), an existing config is
// never replaced: the temp file is hard-linked to the config name, which fails
// if it exists, and the temp name is removed.
func writeConfig(dir string, data []byte, exclusive bool, hook hookFunc) (err error) {
	step := func(name string) error {
		if hook == nil {
			return nil
		}
		return hook(name)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(dir, TempPrefix+hex.EncodeToString(rnd[:]))
	dst := filepath.Join(dir, ConfigName)

	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	crashed := false
	defer func() {
		if err != nil && !crashed {
			f.Close()
			os.Remove(tmp)
		}
	}()
	check := func(name string) error {
		if e := step(name); e != nil {
			crashed = errors.Is(e, errCrash)
			return e
		}
		return nil
	}
	if err := check(stepCreate); err != nil {
		return err
	}
	// A replaced config keeps its owner: root changing the password of a
	// user's vault (a login password change through PAM) must not leave a
	// config the user's own daemon cannot read.
	if old, err := os.Lstat(dst); err == nil {
		if st, ok := old.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := check(stepWrite); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := check(stepSync); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := check(stepClose); err != nil {
		return err
	}
	if exclusive {
		if err := linkExclusive(tmp, dst); err != nil {
			return err
		}
	} else if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	if err := check(stepRename); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return check(stepSyncDir)
}

// linkExclusive makes dst name the file tmp without replacing an existing
// dst, then removes tmp. On filesystems without hard links it falls back to a
// check followed by rename.
func linkExclusive(tmp, dst string) error {
	err := os.Link(tmp, dst)
	switch {
	case err == nil:
		return os.Remove(tmp)
	case errors.Is(err, os.ErrExist):
		return fmt.Errorf("%w: %s", ErrExists, dst)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, dst)
	}
	return os.Rename(tmp, dst)
}

// syncDir fsyncs a directory so a rename in it is durable. Filesystems that
// cannot fsync a directory (EINVAL, ENOTSUP) are tolerated.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}
