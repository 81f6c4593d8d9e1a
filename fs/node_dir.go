package fs

import (
	"context"
	"syscall"

	"cryptpt/crypt"
	"cryptpt/layout"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// sealSymlink seals the target of the encrypted symlink name in directory
// n for the vault, bound to that place (crypt.SymlinkAD).
func (n *node) sealSymlink(name string, target []byte) (string, syscall.Errno) {
	iv, errno := n.dirIV(true)
	if errno != 0 {
		return "", errno
	}
	return layout.SealSymlink(n.v.opts.Keys, n.v.format(), iv, name, target), 0
}

// openSymlink decrypts the stored target of the encrypted symlink name in
// directory n, sealed in either format (see openXattr).
func (n *node) openSymlink(name string, stored []byte) ([]byte, error) {
	iv, errno := n.dirIV(false)
	if errno != 0 {
		return nil, errno
	}
	return n.openSymlinkIV(iv, name, stored)
}

// openSymlinkIV is openSymlink for a link named under the directory IV iv.
func (n *node) openSymlinkIV(iv *[crypt.DirIVSize]byte, name string, stored []byte) ([]byte, error) {
	return layout.OpenSymlink(n.v.opts.Keys, layout.Formats(n.v.format()), iv, name, stored)
}

// readSymlink reads and decrypts the encrypted symlink stored in directory
// n (open at fd) under stored, whose plaintext name is name.
func (n *node) readSymlink(fd int, stored, name string) ([]byte, syscall.Errno) {
	buf := make([]byte, unix.PathMax)
	sz, err := unix.Readlinkat(fd, stored, buf)
	if err != nil {
		return nil, toErrno(err)
	}
	target, err := n.openSymlink(name, buf[:sz])
	if _, marker := crypt.SplitConflict(stored); err != nil && marker != "" {
		// A sync tool's copy of a link, sealed to the link it copies.
		if orig, _, ok := crypt.ParseConflictName(name); ok {
			target, err = n.openSymlink(orig, buf[:sz])
		}
	} else if err != nil {
		// Made on another device under the directory IV that it lost.
		if t, ok := n.openLostSymlink(fd, name, buf[:sz]); ok {
			target, err = t, nil
		}
	}
	if err != nil {
		return nil, n.v.authFailed(n.v.childName(n, name, stored), "symlink target", err)
	}
	return target, 0
}

// moveSymlink moves the encrypted symlink name of n (stored as sstored in
// sfd) to newName in np (stored as dstored in dfd), re-sealing its target
// for the new place: a new link is made under a temp name, renamed in with
// flags, and then the old one is removed. A crash leaves the old link, or
// both. It returns the new link's inode number.
func (n *node) moveSymlink(sfd int, sstored, name string, np *node, dfd int, dstored, newName string, flags uint) (uint64, syscall.Errno) {
	target, errno := n.readSymlink(sfd, sstored, name)
	if errno != 0 {
		return 0, errno
	}
	sealed, errno := np.sealSymlink(newName, target)
	if errno != 0 {
		return 0, errno
	}
	tmp, err := crypt.TempName()
	if err != nil {
		return 0, toErrno(err)
	}
	if err := unix.Symlinkat(sealed, dfd, tmp); err != nil {
		return 0, toErrno(err)
	}
	var st syscall.Stat_t
	if err := fstatat(dfd, tmp, &st); err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return 0, toErrno(err)
	}
	if err := unix.Renameat2(dfd, tmp, dfd, dstored, flags); err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return 0, toErrno(err)
	}
	if sfd != dfd || sstored != dstored {
		unix.Unlinkat(sfd, sstored, 0)
	}
	return st.Ino, 0
}

// encryptNew reports whether a new entry at name gets the encrypted mode.
func (n *node) encryptNew(name string, isDir bool) bool {
	return !n.v.policy().Decide(n.childPath(name), isDir).Plaintext
}

// prepareNew readies the creation of name in mode enc: it checks that no
// entry of the other mode already has this name, makes the directory IV and
// the long-name sidecar when needed, and returns where to create it, with
// the release of that directory fd (see dirfd), which the caller must call.
// The caller holds n.treeMu shared.
func (n *node) prepareNew(name string, enc bool) (int, string, func(), syscall.Errno) {
	if n.v.opts.ReadOnly {
		return -1, "", nil, syscall.EROFS
	}
	fd, release, errno := n.dirfd()
	if errno != 0 {
		return -1, "", nil, errno
	}
	stored, errno := n.prepareNewIn(fd, name, enc)
	if errno != 0 {
		release()
		return -1, "", nil, errno
	}
	return fd, stored, release, 0
}

func (n *node) prepareNewIn(fd int, name string, enc bool) (string, syscall.Errno) {
	if other, errno := n.storedName(name, !enc, false); errno == 0 {
		var st syscall.Stat_t
		if fstatat(fd, other, &st) == nil {
			return "", syscall.EEXIST
		}
	} else if errno != syscall.ENOENT && errno != syscall.EINVAL {
		return "", errno
	}
	stored, sidecar, errno := n.newStoredName(name, enc)
	if errno != 0 {
		return "", errno
	}
	if sidecar != nil {
		// The sidecar is deterministic, so replacing one is harmless.
		if err := layout.WriteSidecar(fd, stored, sidecar, nil); err != nil {
			return "", toErrno(err)
		}
	}
	return stored, 0
}

// newStoredName is storedNameSidecar for a name an entry is about to get
// (created, linked or renamed to), making the directory IV if needed; a
// reserved name is refused with a log line.
func (n *node) newStoredName(name string, enc bool) (string, []byte, syscall.Errno) {
	stored, sidecar, errno := n.storedNameSidecar(name, enc, true)
	if errno == syscall.EINVAL {
		n.v.logf("refused: a name in %s that the vault keeps for its own files (prefix %q) or a sync tool's", n.v.entryName(n), crypt.ReservedPrefix)
	}
	return stored, sidecar, errno
}

// existing returns the mode and vault name of the entry name in n.
func (n *node) existing(name string) (enc bool, stored string, errno syscall.Errno) {
	if ch := n.childNode(name); ch != nil {
		stored, errno := n.storedName(name, ch.isEnc(), false)
		return ch.isEnc(), stored, errno
	}
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return false, "", errno
	}
	defer fdRelease()
	for _, enc := range []bool{true, false} {
		stored, errno := n.storedName(name, enc, false)
		if errno != 0 {
			continue
		}
		var st syscall.Stat_t
		if fstatat(fd, stored, &st) == nil {
			return enc, stored, 0
		}
	}
	return false, "", syscall.ENOENT
}

// finishNew stats a new entry, gives it to the caller and returns its inode.
// mode is what the kernel asked for (0 for a symlink).
func (n *node) finishNew(ctx context.Context, fd int, stored string, enc bool, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.chownToCaller(ctx, fd, stored, mode)
	var st syscall.Stat_t
	gen, err := statGen(fd, stored, &st)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, enc, &st, gen, out), 0
}

var _ = (gofs.NodeMkdirer)((*node)(nil))

// Mkdir makes a directory with its own name IV, so later renames of it never
// touch its children.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	enc := n.encryptNew(name, true)
	fd, stored, release, errno := n.prepareNew(name, enc)
	if errno != 0 {
		return nil, errno
	}
	defer release()
	if !enc {
		// A plaintext directory gets its IV with its first encrypted
		// entry (dirIV): most never have one, and writing it costs an
		// fsync, about half of what a mkdir costs here.
		if err := unix.Mkdirat(fd, stored, mode); err != nil {
			return nil, toErrno(err)
		}
		return n.finishNew(ctx, fd, stored, enc, mode|syscall.S_IFDIR, out)
	}
	// The daemon writes the IV into the new directory: a daemon running
	// as the user needs owner write and search there for that moment.
	lent := uint32(0o300) &^ mode
	if err := unix.Mkdirat(fd, stored, mode|lent); err != nil {
		return nil, toErrno(err)
	}
	cfd, err := unix.Openat(fd, stored, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		_, err = layout.CreateDirIV(cfd, nil)
		var st syscall.Stat_t
		if err == nil && lent != 0 && syscall.Fstat(cfd, &st) == nil {
			err = unix.Fchmodat(fd, stored, st.Mode&07777&^lent, unix.AT_SYMLINK_NOFOLLOW)
		}
		unix.Close(cfd)
	}
	if err != nil {
		unix.Unlinkat(fd, stored, unix.AT_REMOVEDIR)
		return nil, toErrno(err)
	}
	return n.finishNew(ctx, fd, stored, enc, mode|syscall.S_IFDIR, out)
}

var _ = (gofs.NodeRmdirer)((*node)(nil))

// Rmdir removes a directory that holds nothing but cryptpt's own files.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	_, stored, errno := n.existing(name)
	if errno != 0 {
		return errno
	}
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return errno
	}
	defer fdRelease()
	if ch := n.childNode(name); ch != nil {
		// Keep creators inside out while its IV is removed.
		ch.treeMu.Lock()
		defer ch.treeMu.Unlock()
	}
	return removeDir(fd, stored)
}

// removeDir removes a backing directory and the vault files in it, or
// returns ENOTEMPTY when it holds anything else.
func removeDir(parentfd int, stored string) syscall.Errno {
	if errno := clearVaultFiles(parentfd, stored); errno != 0 {
		return errno
	}
	return toErrno(unix.Unlinkat(parentfd, stored, unix.AT_REMOVEDIR))
}

// clearVaultFiles empties a backing directory that holds only cryptpt's own
// files (directory IV, sidecars, temp files), or returns ENOTEMPTY.
func clearVaultFiles(parentfd int, stored string) syscall.Errno {
	return vaultFilesOnly(parentfd, stored, true)
}

// vaultFilesOnly returns ENOTEMPTY unless the backing directory holds only
// cryptpt's own files (directory IV, sidecars, temp files), which it
// removes with clear set.
func vaultFilesOnly(parentfd int, stored string, clear bool) syscall.Errno {
	dfd, err := unix.Openat(parentfd, stored, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(dfd)
	ents, err := readDirents(dfd)
	if err != nil {
		return toErrno(err)
	}
	for _, e := range ents {
		switch crypt.Classify(e.Name) {
		case crypt.DirIV, crypt.Sidecar, crypt.Temp:
		default:
			if crypt.DirIVConflictMarker(e.Name) == "" { // a sync tool's copy of the IV goes too
				return syscall.ENOTEMPTY
			}
		}
	}
	if clear {
		for _, e := range ents {
			unix.Unlinkat(dfd, e.Name, 0)
		}
	}
	return 0
}

var _ = (gofs.NodeUnlinker)((*node)(nil))

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	_, stored, errno := n.existing(name)
	if errno != 0 {
		return errno
	}
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return errno
	}
	defer fdRelease()
	if err := unix.Unlinkat(fd, stored, 0); err != nil {
		return toErrno(err)
	}
	n.dropSidecar(fd, stored)
	n.v.stats.forget(n.childPath(name))
	return 0
}

// dropSidecar removes the sidecar of a long name that no longer exists,
// nor any conflict copy of it.
func (n *node) dropSidecar(fd int, stored string) {
	base, _ := crypt.SplitConflict(stored)
	if crypt.Classify(base) != crypt.Long || sidecarInUse(fd, base) {
		return // replaced in the meantime, or a copy still uses it
	}
	unix.Unlinkat(fd, crypt.SidecarName(base), 0)
}

var _ = (gofs.NodeMknoder)((*node)(nil))

// Mknod makes fifos, sockets and device nodes, as regular vault entries
// (encrypted names where the policy encrypts). The kernel lets only callers
// with CAP_MKNOD ask for a device node, and the mount is nodev (go-fuse and
// fusermount3 both mount so), so no device opens through the mount; in
// the vault directory a device node is one like any other (threat model).
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	enc := n.encryptNew(name, false)
	fd, stored, release, errno := n.prepareNew(name, enc)
	if errno != 0 {
		return nil, errno
	}
	defer release()
	if err := unix.Mknodat(fd, stored, mode, int(rdev)); err != nil {
		return nil, toErrno(err)
	}
	return n.finishNew(ctx, fd, stored, enc, mode, out)
}

var _ = (gofs.NodeSymlinker)((*node)(nil))

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	enc := n.encryptNew(name, false)
	storedTarget := target
	if enc {
		var errno syscall.Errno
		if storedTarget, errno = n.sealSymlink(name, []byte(target)); errno != 0 {
			return nil, errno
		}
		if len(storedTarget) >= unix.PathMax {
			return nil, syscall.ENAMETOOLONG
		}
	}
	fd, stored, release, errno := n.prepareNew(name, enc)
	if errno != 0 {
		return nil, errno
	}
	defer release()
	if err := unix.Symlinkat(storedTarget, fd, stored); err != nil {
		return nil, toErrno(err)
	}
	return n.finishNew(ctx, fd, stored, enc, 0, out)
}

var _ = (gofs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	fd, stored, release, errno := n.at()
	defer release()
	if errno != 0 {
		return nil, errno
	}
	if n.isEnc() {
		p, name, errno := n.parent()
		if errno != 0 {
			return nil, errno
		}
		return p.readSymlink(fd, stored, name)
	}
	if n.quarantined() {
		n.v.logf("refused: readlink of plaintext-form symlink %s at a path the policy encrypts (injected; \"cryptpt migrate\" converts it)", n.v.entryName(n))
		return nil, syscall.EIO
	}
	buf := make([]byte, unix.PathMax)
	sz, err := unix.Readlinkat(fd, stored, buf)
	if err != nil {
		return nil, toErrno(err)
	}
	return buf[:sz], 0
}

var _ = (gofs.NodeLinker)((*node)(nil))

// Link gives an entry a second name as placement allows (the kernel links
// no directories).
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok || t.v != n.v {
		return nil, syscall.EXDEV
	}
	path := n.childPath(name)
	drift, errno := n.v.placement(t.isEnc(), path, false)
	if errno != 0 {
		return nil, errno
	}
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	sfd, sstored, srelease, errno := t.at()
	defer srelease()
	if errno != 0 {
		return nil, errno
	}
	fd, stored, release, errno := n.prepareNew(name, t.isEnc())
	if errno != 0 {
		return nil, errno
	}
	defer release()
	if t.isEnc() && t.StableAttr().Mode == syscall.S_IFLNK {
		// An encrypted target is sealed to one place, so a second name
		// gets a link of its own with the same target (symlinks cannot
		// change, so only the link count tells).
		tp, tname, errno := t.parent()
		if errno != 0 {
			return nil, errno
		}
		target, errno := tp.readSymlink(sfd, sstored, tname)
		if errno != 0 {
			return nil, errno
		}
		sealed, errno := n.sealSymlink(name, target)
		if errno != 0 {
			return nil, errno
		}
		if err := unix.Symlinkat(sealed, fd, stored); err != nil {
			return nil, toErrno(err)
		}
	} else if err := unix.Linkat(sfd, sstored, fd, stored, 0); err != nil {
		return nil, toErrno(err)
	}
	if drift {
		n.v.stats.note(&n.v.stats.drift, path)
	}
	var st syscall.Stat_t
	gen, err := statGen(fd, stored, &st)
	if err != nil {
		return nil, toErrno(err)
	}
	return n.newChild(ctx, t.isEnc(), &st, gen, out), 0
}

var _ = (gofs.NodeFsyncer)((*node)(nil))

// Fsync serves fsync(2) on directories (FSYNCDIR, which go-fuse routes
// here) by syncing the backing directory: programs that save a file by
// temp file, rename and fsync of the directory rely on it. go-fuse asks
// the node first for files too; they sync through their handle.
func (n *node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	if fs, ok := f.(gofs.FileFsyncer); ok {
		return fs.Fsync(ctx, flags)
	}
	if !n.IsDir() {
		return syscall.EBADF
	}
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return errno
	}
	defer fdRelease()
	// An O_PATH fd cannot be synced; open the directory itself.
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return toErrno(err)
	}
	defer unix.Close(dfd)
	return toErrno(unix.Fsync(dfd))
}
