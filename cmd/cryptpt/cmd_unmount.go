package main

import (
	"os/exec"
	"path/filepath"
	"strings"

	"cryptpt/fs"
	"cryptpt/internal/mountinfo"

	"golang.org/x/sys/unix"
)

func runUnmount(args []string) error {
	fl := newFlags("unmount", "unmount [-z] MOUNTPOINT")
	var lazy bool
	fl.BoolVar(&lazy, "z", false, "lazy: detach the mount now, even while files under it are open; it goes away when the last one is closed")
	fl.BoolVar(&lazy, "lazy", false, "same as -z")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "unmount takes one argument, the mountpoint")
	}
	mp, _ := filepath.Abs(pos[0])
	if m, _ := fs.FindMount(mp); m != mp {
		return fail("", "%s is not a cryptpt mount", mp)
	}
	if lazy {
		if err := lazyUnmount(mp); err != nil {
			return fail("", "cannot detach %s: %v", mp, err)
		}
		return nil
	}
	backing := mountSource(mp)
	if err := unmount(mp); err != nil {
		return fail("close the files open under it (see \"fuser -vm "+mp+"\") and try again, or detach it now with \"cryptpt unmount -z "+mp+"\"", "cannot unmount %s: %v", mp, err)
	}
	waitVaultFree(backing)
	return nil
}

// mountSource returns the vault of the cryptpt mount at mp, or "".
func mountSource(mp string) string {
	mounts, _ := mountinfo.Read()
	for _, m := range mounts {
		if m.Point == mp && m.IsCryptpt() {
			return m.Source
		}
	}
	return ""
}

// waitVaultFree waits until the daemon of an unmounted vault has let go of
// the vault's lock (it does so as it exits, just after the kernel let go of
// the mount), so that whatever runs next finds the vault free.
func waitVaultFree(backing string) {
	if backing != "" {
		fs.CheckVaultLock(backing)
	}
}

// unmount unmounts directly where allowed (root, CAP_SYS_ADMIN), else
// through fusermount3.
func unmount(mp string) error {
	if fs.CanMount() {
		return unix.Unmount(mp, 0)
	}
	out, err := exec.Command("fusermount3", "-u", mp).CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return &userError{msg: msg}
		}
	}
	return err
}

// lazyUnmount detaches a busy mount; it goes away when its last user leaves.
func lazyUnmount(mp string) error {
	if fs.CanMount() {
		return unix.Unmount(mp, unix.MNT_DETACH)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", mp).CombinedOutput()
	if err != nil {
		if msg := strings.TrimSpace(string(out)); msg != "" {
			return &userError{msg: msg}
		}
	}
	return err
}
