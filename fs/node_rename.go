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
	if errno := checkName(newName); errno != 0 {
		return errno
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
	dstored, sidecar, errno := np.newStoredName(newName, enc)
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
			if oDir {
				// rename(2) demands an empty directory; it is
				// removed once the rename is done.
				if errno := vaultFilesOnly(dfd, o, false); errno != 0 {
					return errno
				}
			}
			other = o
		}
	}
	// rename(2) may replace an empty directory; ours still hold their IV,
	// which rename(2) would find not empty. Nothing is removed before the
	// rename is done (replaceDir): a failed rename must leave the target
	// as it was, IV included.
	overDir := false
	if isDir {
		var dst syscall.Stat_t
		if fstatat(dfd, dstored, &dst) == nil && dst.Mode&syscall.S_IFMT == syscall.S_IFDIR && dst.Ino != sst.Ino {
			if flags&unix.RENAME_NOREPLACE != 0 {
				return syscall.EEXIST
			}
			if errno := vaultFilesOnly(dfd, dstored, false); errno != 0 {
				return errno
			}
			overDir = true
		}
	}
	if overDir || (isDir && other != "") {
		if ch := np.childNode(newName); ch != nil {
			// Keep creators out of the replaced directory while its
			// IV is removed (as Rmdir does).
			ch.treeMu.Lock()
			defer ch.treeMu.Unlock()
		}
	}
	if sidecar != nil {
		if err := writeSmallFile(dfd, crypt.SidecarName(dstored), sidecar, false); err != nil {
			return toErrno(err)
		}
	}
	// RENAME_WHITEOUT leaves a 0/0 character device at the old name (the
	// kernel allows it only to callers with CAP_MKNOD).
	switch {
	case enc && sst.Mode&syscall.S_IFMT == syscall.S_IFLNK && (n != np || name != newName):
		// An encrypted target is sealed to its place: re-seal it there.
		ch := n.childNode(name)
		if ch != nil {
			ch.pinEntry(sfd, sstored, sst.Ino)
		}
		ino, errno := n.moveSymlink(sfd, sstored, name, np, dfd, dstored, newName, uint(flags&unix.RENAME_NOREPLACE))
		if errno != 0 {
			return errno
		}
		if ch != nil {
			ch.ino.Store(ino)
		}
		if flags&unix.RENAME_WHITEOUT != 0 {
			if err := unix.Mknodat(sfd, sstored, syscall.S_IFCHR, 0); err != nil {
				return toErrno(err)
			}
		}
	case overDir:
		if errno := n.replaceDir(sfd, sstored, dfd, dstored, flags&unix.RENAME_WHITEOUT != 0); errno != 0 {
			return errno
		}
	default:
		if err := unix.Renameat2(sfd, sstored, dfd, dstored, uint(flags&(unix.RENAME_NOREPLACE|unix.RENAME_WHITEOUT))); err != nil {
			return toErrno(err)
		}
	}
	if other != "" {
		if isDir {
			if errno := removeDir(dfd, other); errno != 0 {
				n.v.logf("rename into %s: cannot remove the replaced directory %q: %v", n.v.entryName(np), other, errno)
			}
		} else {
			unix.Unlinkat(dfd, other, 0)
		}
		np.dropSidecar(dfd, other)
	}
	n.dropSidecar(sfd, sstored)
	n.v.stats.forget(n.childPath(name))
	if enc && plainPolicy {
		n.v.stats.note(&n.v.stats.drift, dstPath)
	}
	return 0
}

// replaceDir renames the directory sstored in sfd over the directory
// dstored in dfd, which holds only vault files (its IV), so that rename(2)
// would find it not empty, without removing anything before the rename is
// done: the two are exchanged (RENAME_EXCHANGE), then the old target, now
// at the source's name, is removed; if that fails they are exchanged back.
// The kernel holds both parents locked meanwhile, so the mount never shows
// the steps between; a crash between them leaves the old, empty target at
// the source's name. Where the vault's filesystem cannot exchange, the
// target is moved aside under a temp name instead (fsck reports a crash's
// leftover).
func (n *node) replaceDir(sfd int, sstored string, dfd int, dstored string, whiteout bool) syscall.Errno {
	err := unix.Renameat2(sfd, sstored, dfd, dstored, unix.RENAME_EXCHANGE)
	if err == unix.EINVAL || err == unix.EOPNOTSUPP || err == unix.ENOSYS {
		return replaceDirAside(sfd, sstored, dfd, dstored, whiteout)
	}
	if err != nil {
		return toErrno(err)
	}
	if errno := removeDir(sfd, sstored); errno != 0 {
		if err := unix.Renameat2(sfd, sstored, dfd, dstored, unix.RENAME_EXCHANGE); err != nil {
			n.v.logf("rename: cannot undo a half-done rename over a directory in %s: %v (the replaced, empty directory is at the source's name)", n.v.entryName(n), err)
		}
		return errno
	}
	if whiteout {
		return toErrno(unix.Mknodat(sfd, sstored, syscall.S_IFCHR, 0))
	}
	return 0
}

// replaceDirAside is replaceDir without RENAME_EXCHANGE: the target is
// renamed to a temp name, the source over its place, and the target removed.
func replaceDirAside(sfd int, sstored string, dfd int, dstored string, whiteout bool) syscall.Errno {
	tmp, err := crypt.TempName()
	if err != nil {
		return toErrno(err)
	}
	if err := unix.Renameat2(dfd, dstored, dfd, tmp, unix.RENAME_NOREPLACE); err != nil {
		return toErrno(err)
	}
	rflags := uint(unix.RENAME_NOREPLACE)
	if whiteout {
		rflags |= unix.RENAME_WHITEOUT
	}
	if err := unix.Renameat2(sfd, sstored, dfd, dstored, rflags); err != nil {
		unix.Renameat2(dfd, tmp, dfd, dstored, unix.RENAME_NOREPLACE)
		return toErrno(err)
	}
	removeDir(dfd, tmp)
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
		if src != nil {
			src.pinEntry(dfd, dstored, sst.Ino)
		}
		ino, errno := n.moveSymlink(dfd, dstored, name, np, dfd, dstored, newName, 0)
		if errno != 0 {
			return errno
		}
		if src != nil {
			src.ino.Store(ino)
		}
	}
	if dst.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		if dstNode != nil {
			dstNode.pinEntry(sfd, sstored, dst.Ino)
		}
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
