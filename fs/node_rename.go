package fs

import (
	"context"
	"syscall"

	"cryptpt/crypt"
	"cryptpt/layout"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// placement is the cross-mode rule, the centre of the design, for an entry
// of mode enc that gets a new name at path (a rename, a link, either side of
// an exchange): it keeps its mode. An encrypted entry may go anywhere and
// stays encrypted, which is drift where the policy says plaintext; a
// plaintext one may only go where the policy keeps plaintext, else EXDEV,
// so that tools fall back to copy and delete and the copy is created
// encrypted. Only migrate changes an entry's mode.
func (v *vault) placement(enc bool, path string, isDir bool) (drift bool, errno syscall.Errno) {
	plain := v.policy().Decide(path, isDir).Plaintext
	if !enc && !plain {
		return false, syscall.EXDEV
	}
	return enc && plain, 0
}

var _ = (gofs.NodeRenamer)((*node)(nil))

// Rename moves an entry as placement allows. Same-mode renames are one
// renameat2 in the vault: a directory's children are named under its own
// IV, so they are not touched.
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
	r := renameOp{src: n, dst: np, name: name, newName: newName, flags: flags}
	var errno syscall.Errno
	if r.enc, r.sstored, errno = n.existing(name); errno != 0 {
		return errno
	}
	var release func()
	if r.sfd, release, errno = n.dirfd(); errno != 0 {
		return errno
	}
	defer release()
	if r.dfd, release, errno = np.dirfd(); errno != 0 {
		return errno
	}
	defer release()
	if err := fstatat(r.sfd, r.sstored, &r.sst); err != nil {
		return toErrno(err)
	}
	r.isDir = r.sst.Mode&syscall.S_IFMT == syscall.S_IFDIR
	dstPath := np.childPath(newName)
	drift, errno := n.v.placement(r.enc, dstPath, r.isDir)
	if errno != 0 {
		return errno
	}
	if flags&unix.RENAME_EXCHANGE != 0 {
		return r.exchange()
	}

	np.treeMu.RLock()
	defer np.treeMu.RUnlock()
	if errno := r.target(); errno != 0 {
		return errno
	}
	if ch := np.childNode(newName); ch != nil && (r.overDir || (r.isDir && r.other != "")) {
		// Keep creators out of the replaced directory while its IV is
		// removed (as Rmdir does).
		ch.treeMu.Lock()
		defer ch.treeMu.Unlock()
	}
	if errno := r.move(); errno != 0 {
		return errno
	}
	r.removeReplaced()
	n.v.stats.forget(n.childPath(name))
	if drift {
		n.v.stats.note(&n.v.stats.drift, dstPath)
	}
	return 0
}

// renameOp is one rename as the vault sees it: the entry name of src,
// stored as sstored in the directory open at sfd, moving to newName in dst,
// open at dfd. Rename fills in the entry; target what it meets at its new
// place.
type renameOp struct {
	src, dst      *node
	name, newName string
	flags         uint32
	sfd, dfd      int
	sstored       string
	sst           syscall.Stat_t
	enc, isDir    bool

	dstored string // the entry's vault name at its new place
	sidecar []byte // dstored's long-name sidecar, or nil
	other   string // an entry of the other mode named newName, replaced
	overDir bool   // dstored is a directory of vault files only, replaced
}

// target finds the entry's vault name at its new place and what it
// replaces there, refusing as rename(2) would (EEXIST with
// RENAME_NOREPLACE, EISDIR, ENOTDIR, ENOTEMPTY). The caller holds
// dst.treeMu shared.
func (r *renameOp) target() syscall.Errno {
	var errno syscall.Errno
	if r.dstored, r.sidecar, errno = r.dst.newStoredName(r.newName, r.enc); errno != 0 {
		return errno
	}
	// An entry of the other mode at the destination is replaced after the
	// rename, as rename(2) would replace a same-mode one.
	if o, errno := r.dst.storedName(r.newName, !r.enc, false); errno == 0 {
		var ost syscall.Stat_t
		if fstatat(r.dfd, o, &ost) == nil {
			if r.flags&unix.RENAME_NOREPLACE != 0 {
				return syscall.EEXIST
			}
			oDir := ost.Mode&syscall.S_IFMT == syscall.S_IFDIR
			switch {
			case oDir && !r.isDir:
				return syscall.EISDIR
			case !oDir && r.isDir:
				return syscall.ENOTDIR
			}
			if oDir {
				// rename(2) demands an empty directory; it is
				// removed once the rename is done.
				if errno := vaultFilesOnly(r.dfd, o, false); errno != 0 {
					return errno
				}
			}
			r.other = o
		}
	}
	// rename(2) may replace an empty directory; ours still hold their IV,
	// which rename(2) would find not empty. Nothing is removed before the
	// rename is done (replaceDir): a failed rename must leave the target
	// as it was, IV included.
	if r.isDir {
		var dst syscall.Stat_t
		if fstatat(r.dfd, r.dstored, &dst) == nil && dst.Mode&syscall.S_IFMT == syscall.S_IFDIR && dst.Ino != r.sst.Ino {
			if r.flags&unix.RENAME_NOREPLACE != 0 {
				return syscall.EEXIST
			}
			if errno := vaultFilesOnly(r.dfd, r.dstored, false); errno != 0 {
				return errno
			}
			r.overDir = true
		}
	}
	return 0
}

// move moves the entry to its new vault name, with its sidecar first.
func (r *renameOp) move() syscall.Errno {
	if r.sidecar != nil {
		if err := layout.WriteSidecar(r.dfd, r.dstored, r.sidecar, nil); err != nil {
			return toErrno(err)
		}
	}
	// RENAME_WHITEOUT leaves a 0/0 character device at the old name (the
	// kernel allows it only to callers with CAP_MKNOD).
	whiteout := r.flags&unix.RENAME_WHITEOUT != 0
	switch {
	case r.enc && r.sst.Mode&syscall.S_IFMT == syscall.S_IFLNK && (r.src != r.dst || r.name != r.newName):
		// An encrypted target is sealed to its place: re-seal it there.
		ch := r.src.childNode(r.name)
		if ch != nil {
			ch.pinEntry(r.sfd, r.sstored, r.sst.Ino)
		}
		ino, errno := r.src.moveSymlink(r.sfd, r.sstored, r.name, r.dst, r.dfd, r.dstored, r.newName, uint(r.flags&unix.RENAME_NOREPLACE))
		if errno != 0 {
			return errno
		}
		if ch != nil {
			ch.ino.Store(ino)
		}
		if whiteout {
			return toErrno(unix.Mknodat(r.sfd, r.sstored, syscall.S_IFCHR, 0))
		}
		return 0
	case r.overDir:
		return r.src.replaceDir(r.sfd, r.sstored, r.dfd, r.dstored, whiteout)
	}
	return toErrno(unix.Renameat2(r.sfd, r.sstored, r.dfd, r.dstored, uint(r.flags&(unix.RENAME_NOREPLACE|unix.RENAME_WHITEOUT))))
}

// removeReplaced removes, once the rename is done, the entry of the other
// mode it replaced and the sidecars no name uses any more.
func (r *renameOp) removeReplaced() {
	if r.other != "" {
		if r.isDir {
			if errno := removeDir(r.dfd, r.other); errno != 0 {
				r.src.v.logf("rename into %s: cannot remove the replaced directory %q: %v", r.src.v.entryName(r.dst), r.other, errno)
			}
		} else {
			unix.Unlinkat(r.dfd, r.other, 0)
		}
		r.dst.dropSidecar(r.dfd, r.other)
	}
	r.src.dropSidecar(r.sfd, r.sstored)
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

// exchange swaps two entries (RENAME_EXCHANGE), each placed as placement
// allows at the other's place; Rename checked the source's. Their vault
// names stay where they are and only what they point to swaps, so both
// must be of one mode (else EXDEV): a name's form is its entry's mode.
func (r *renameOp) exchange() syscall.Errno {
	n, np := r.src, r.dst
	denc, dstored, errno := np.existing(r.newName)
	if errno != 0 {
		return errno
	}
	if denc != r.enc {
		return syscall.EXDEV
	}
	var dst syscall.Stat_t
	if err := fstatat(r.dfd, dstored, &dst); err != nil {
		return toErrno(err)
	}
	if _, errno := n.v.placement(denc, n.childPath(r.name), dst.Mode&syscall.S_IFMT == syscall.S_IFDIR); errno != 0 {
		return errno
	}
	if err := unix.Renameat2(r.sfd, r.sstored, r.dfd, dstored, unix.RENAME_EXCHANGE); err != nil {
		return toErrno(err)
	}
	if !r.enc {
		return 0
	}
	// Encrypted symlink targets are sealed to their place: re-seal each
	// where it now is. The vault names stayed; the links behind them moved.
	src, dstNode := n.childNode(r.name), np.childNode(r.newName)
	if r.sst.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		if src != nil {
			src.pinEntry(r.dfd, dstored, r.sst.Ino)
		}
		ino, errno := n.moveSymlink(r.dfd, dstored, r.name, np, r.dfd, dstored, r.newName, 0)
		if errno != 0 {
			return errno
		}
		if src != nil {
			src.ino.Store(ino)
		}
	}
	if dst.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		if dstNode != nil {
			dstNode.pinEntry(r.sfd, r.sstored, dst.Ino)
		}
		ino, errno := np.moveSymlink(r.sfd, r.sstored, r.newName, n, r.sfd, r.sstored, r.name, 0)
		if errno != 0 {
			return errno
		}
		if dstNode != nil {
			dstNode.ino.Store(ino)
		}
	}
	return 0
}
