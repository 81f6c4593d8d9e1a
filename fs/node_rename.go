package fs

import (
	"context"
	"syscall"

	"cryptpt/crypt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

var _ = (gofs.NodeRenamer)((*node)(nil))

// Rename follows the design's asymmetric rule. An encrypted entry may move
// anywhere and stays encrypted (drift where the policy says plaintext); a
// plaintext entry moved to a path the policy encrypts gets EXDEV, so tools
// fall back to copy + delete and the copy is created encrypted. Same-mode
// renames are one renameat2 in the vault: a directory's children are named
// under its own IV, so they are not touched.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok || np.v != n.v {
		return syscall.EXDEV
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	if len(newName) > 255 {
		return syscall.ENAMETOOLONG
	}
	enc, sstored, errno := n.existing(name)
	if errno != 0 {
		return errno
	}
	sfd, sfdRelease, errno := n.dirfd()
	if errno != 0 {
		return errno
	}
	defer sfdRelease()
	dfd, dfdRelease, errno := np.dirfd()
	if errno != 0 {
		return errno
	}
	defer dfdRelease()
	var sst syscall.Stat_t
	if err := fstatat(sfd, sstored, &sst); err != nil {
		return toErrno(err)
	}
	isDir := sst.Mode&syscall.S_IFMT == syscall.S_IFDIR
	dstPath := np.childPath(newName)
	plainPolicy := n.v.policy().Decide(dstPath, isDir).Plaintext
	if !enc && !plainPolicy {
		return syscall.EXDEV
	}

	if flags&unix.RENAME_EXCHANGE != 0 {
		return n.exchange(sfd, sstored, enc, np, dfd, name, newName)
	}

	np.treeMu.RLock()
	defer np.treeMu.RUnlock()
	dstored, sidecar, errno := np.storedNameSidecar(newName, enc, true)
	if errno != 0 {
		return errno
	}
	// An entry of the other mode at the destination is replaced after the
	// rename, as rename(2) would replace a same-mode one.
	var other string
	if o, errno := np.storedName(newName, !enc, false); errno == 0 {
		var ost syscall.Stat_t
		if fstatat(dfd, o, &ost) == nil {
			if flags&unix.RENAME_NOREPLACE != 0 {
				return syscall.EEXIST
			}
			oDir := ost.Mode&syscall.S_IFMT == syscall.S_IFDIR
			switch {
			case oDir && !isDir:
				return syscall.EISDIR
			case !oDir && isDir:
				return syscall.ENOTDIR
			}
			other = o
		}
	}
	if other != "" && isDir {
		// Clear the way first: rename(2) demands an empty directory.
		if errno := removeDir(dfd, other); errno != 0 {
			return errno
		}
		other = ""
	}
	if isDir && other == "" {
		// rename(2) may replace an empty directory; ours still hold their
		// IV. Clear it, or get ENOTEMPTY for a directory with entries.
		var dst syscall.Stat_t
		if fstatat(dfd, dstored, &dst) == nil && dst.Mode&syscall.S_IFMT == syscall.S_IFDIR && dst.Ino != sst.Ino {
			if errno := clearVaultFiles(dfd, dstored); errno != 0 {
				return errno
			}
		}
	}
	if sidecar != nil {
		if err := writeSmallFile(dfd, crypt.SidecarName(dstored), sidecar, false); err != nil {
			return toErrno(err)
		}
	}
	// RENAME_WHITEOUT leaves a 0/0 character device at the old name (the
	// kernel allows it only to callers with CAP_MKNOD).
	if enc && sst.Mode&syscall.S_IFMT == syscall.S_IFLNK && (n != np || name != newName) {
		// An encrypted target is sealed to its place: re-seal it there.
		ino, errno := n.moveSymlink(sfd, sstored, name, np, dfd, dstored, newName, uint(flags&unix.RENAME_NOREPLACE))
		if errno != 0 {
			return errno
		}
		if ch := n.childNode(name); ch != nil {
			ch.ino.Store(ino)
		}
		if flags&unix.RENAME_WHITEOUT != 0 {
			if err := unix.Mknodat(sfd, sstored, syscall.S_IFCHR, 0); err != nil {
				return toErrno(err)
			}
		}
	} else if err := unix.Renameat2(sfd, sstored, dfd, dstored, uint(flags&(unix.RENAME_NOREPLACE|unix.RENAME_WHITEOUT))); err != nil {
		return toErrno(err)
	}
	if other != "" {
		unix.Unlinkat(dfd, other, 0)
		np.dropSidecar(dfd, other)
	}
	n.dropSidecar(sfd, sstored)
	n.v.stats.forget(n.childPath(name))
	if enc && plainPolicy {
		n.v.stats.note(&n.v.stats.drift, dstPath)
	}
	return 0
}

// exchange swaps two entries of the same mode. Their vault names stay where
// they are and only what they point to swaps, so both names stay valid.
func (n *node) exchange(sfd int, sstored string, enc bool, np *node, dfd int, name, newName string) syscall.Errno {
	denc, dstored, errno := np.existing(newName)
	if errno != 0 {
		return errno
	}
	if denc != enc {
		return syscall.EXDEV
	}
	var dst syscall.Stat_t
	if err := fstatat(dfd, dstored, &dst); err != nil {
		return toErrno(err)
	}
	dIsDir := dst.Mode&syscall.S_IFMT == syscall.S_IFDIR
	if !denc && !n.v.policy().Decide(n.childPath(name), dIsDir).Plaintext {
		return syscall.EXDEV
	}
	var sst syscall.Stat_t
	if err := fstatat(sfd, sstored, &sst); err != nil {
		return toErrno(err)
	}
	if err := unix.Renameat2(sfd, sstored, dfd, dstored, unix.RENAME_EXCHANGE); err != nil {
		return toErrno(err)
	}
	if !enc {
		return 0
	}
	// Encrypted symlink targets are sealed to their place: re-seal each
	// where it now is. The vault names stayed; the links behind them moved.
	src, dstNode := n.childNode(name), np.childNode(newName)
	if sst.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		ino, errno := n.moveSymlink(dfd, dstored, name, np, dfd, dstored, newName, 0)
		if errno != 0 {
			return errno
		}
		if src != nil {
			src.ino.Store(ino)
		}
	}
	if dst.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		ino, errno := np.moveSymlink(sfd, sstored, newName, n, sfd, sstored, name, 0)
		if errno != 0 {
			return errno
		}
		if dstNode != nil {
			dstNode.ino.Store(ino)
		}
	}
	return 0
}
