package fs

import (
	"context"
	"encoding/base64"
	"syscall"

	"cryptpt/crypt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// symlinkAD binds encrypted symlink targets to their purpose.
var symlinkAD = []byte("cryptpt symlink v1")

// encodeSymlink seals the target of an encrypted symlink for the vault.
func encodeSymlink(v *vault, target []byte) string {
	return base64.RawURLEncoding.EncodeToString(v.opts.Keys.SealMeta(target, symlinkAD))
}

// encryptNew reports whether a new entry at name gets the encrypted mode.
func (n *node) encryptNew(name string, isDir bool) bool {
	return !n.v.policy().Decide(n.childPath(name), isDir).Plaintext
}

// prepareNew readies the creation of name in mode enc: it checks that no
// entry of the other mode already has this name, makes the directory IV and
// the long-name sidecar when needed, and returns where to create it.
// The caller holds n.treeMu shared.
func (n *node) prepareNew(name string, enc bool) (int, string, syscall.Errno) {
	if n.v.opts.ReadOnly {
		return -1, "", syscall.EROFS
	}
	fd, errno := n.dirfd()
	if errno != 0 {
		return -1, "", errno
	}
	if other, errno := n.storedName(name, !enc, false); errno == 0 {
		var st syscall.Stat_t
		if fstatat(fd, other, &st) == nil {
			return -1, "", syscall.EEXIST
		}
	} else if errno != syscall.ENOENT && errno != syscall.EINVAL {
		return -1, "", errno
	}
	stored, sidecar, errno := n.storedNameSidecar(name, enc, true)
	if errno == syscall.EINVAL {
		n.v.logf("refused: a name in %s starts with the reserved prefix %q", n.v.entryName(n), crypt.ReservedPrefix)
	}
	if errno != 0 {
		return -1, "", errno
	}
	if sidecar != nil {
		// The sidecar is deterministic, so replacing one is harmless.
		if err := writeSmallFile(fd, crypt.SidecarName(stored), sidecar, false); err != nil {
			return -1, "", gofs.ToErrno(err)
		}
	}
	return fd, stored, 0
}

// existing returns the mode and vault name of the entry name in n.
func (n *node) existing(name string) (enc bool, stored string, errno syscall.Errno) {
	if ch := n.childNode(name); ch != nil {
		stored, errno := n.storedName(name, ch.isEnc(), false)
		return ch.isEnc(), stored, errno
	}
	fd, errno := n.dirfd()
	if errno != 0 {
		return false, "", errno
	}
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
func (n *node) finishNew(ctx context.Context, fd int, stored string, enc bool, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.chownToCaller(ctx, fd, stored)
	var st syscall.Stat_t
	gen, err := statGen(fd, stored, &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
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
	fd, stored, errno := n.prepareNew(name, enc)
	if errno != 0 {
		return nil, errno
	}
	if err := unix.Mkdirat(fd, stored, mode); err != nil {
		return nil, gofs.ToErrno(err)
	}
	cfd, err := unix.Openat(fd, stored, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		_, err = createDirIV(cfd)
		unix.Close(cfd)
	}
	if err != nil {
		unix.Unlinkat(fd, stored, unix.AT_REMOVEDIR)
		return nil, gofs.ToErrno(err)
	}
	return n.finishNew(ctx, fd, stored, enc, out)
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
	fd, errno := n.dirfd()
	if errno != 0 {
		return errno
	}
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
	return gofs.ToErrno(unix.Unlinkat(parentfd, stored, unix.AT_REMOVEDIR))
}

// clearVaultFiles empties a backing directory that holds only cryptpt's own
// files (directory IV, sidecars, temp files), or returns ENOTEMPTY.
func clearVaultFiles(parentfd int, stored string) syscall.Errno {
	dfd, err := unix.Openat(parentfd, stored, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return gofs.ToErrno(err)
	}
	defer unix.Close(dfd)
	ents, err := readDirents(dfd)
	if err != nil {
		return gofs.ToErrno(err)
	}
	for _, e := range ents {
		switch crypt.Classify(e.Name) {
		case crypt.DirIV, crypt.Sidecar, crypt.Temp:
		default:
			return syscall.ENOTEMPTY
		}
	}
	for _, e := range ents {
		unix.Unlinkat(dfd, e.Name, 0)
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
	fd, errno := n.dirfd()
	if errno != 0 {
		return errno
	}
	if err := unix.Unlinkat(fd, stored, 0); err != nil {
		return gofs.ToErrno(err)
	}
	n.dropSidecar(fd, stored)
	n.v.stats.forget(n.childPath(name))
	return 0
}

// dropSidecar removes the sidecar of a long name that no longer exists.
func (n *node) dropSidecar(fd int, stored string) {
	if crypt.Classify(stored) != crypt.Long {
		return
	}
	var st syscall.Stat_t
	if fstatat(fd, stored, &st) == nil {
		return // replaced in the meantime; the sidecar is still used
	}
	unix.Unlinkat(fd, crypt.SidecarName(stored), 0)
}

var _ = (gofs.NodeMknoder)((*node)(nil))

// Mknod makes fifos and sockets. Device nodes are refused: they would be
// real devices in the vault directory, which has no nodev protection.
func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK:
	default:
		return nil, syscall.EPERM
	}
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	enc := n.encryptNew(name, false)
	fd, stored, errno := n.prepareNew(name, enc)
	if errno != 0 {
		return nil, errno
	}
	if err := unix.Mknodat(fd, stored, mode, int(rdev)); err != nil {
		return nil, gofs.ToErrno(err)
	}
	return n.finishNew(ctx, fd, stored, enc, out)
}

var _ = (gofs.NodeSymlinker)((*node)(nil))

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	enc := n.encryptNew(name, false)
	storedTarget := target
	if enc {
		storedTarget = encodeSymlink(n.v, []byte(target))
		if len(storedTarget) >= unix.PathMax {
			return nil, syscall.ENAMETOOLONG
		}
	}
	fd, stored, errno := n.prepareNew(name, enc)
	if errno != 0 {
		return nil, errno
	}
	if err := unix.Symlinkat(storedTarget, fd, stored); err != nil {
		return nil, gofs.ToErrno(err)
	}
	return n.finishNew(ctx, fd, stored, enc, out)
}

var _ = (gofs.NodeReadlinker)((*node)(nil))

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	fd, stored, errno := n.at()
	if errno != 0 {
		return nil, errno
	}
	buf := make([]byte, unix.PathMax)
	sz, err := unix.Readlinkat(fd, stored, buf)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	buf = buf[:sz]
	if !n.isEnc() {
		return buf, 0
	}
	sealed, err := base64.RawURLEncoding.DecodeString(string(buf))
	if err == nil {
		var target []byte
		target, err = n.v.opts.Keys.OpenMeta(sealed, symlinkAD)
		if err == nil {
			return target, 0
		}
	}
	n.v.stats.authFailures.Add(1)
	n.v.logf("symlink %s (vault %q): target fails authentication: %v", n.v.entryName(n), stored, err)
	return nil, syscall.EIO
}

var _ = (gofs.NodeLinker)((*node)(nil))

// Link follows the rename rule: an encrypted entry may be linked anywhere and
// stays encrypted; a plaintext one may not get a name the policy encrypts.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok || t.v != n.v {
		return nil, syscall.EXDEV
	}
	path := n.childPath(name)
	plainPolicy := n.v.policy().Decide(path, false).Plaintext
	if !t.isEnc() && !plainPolicy {
		return nil, syscall.EXDEV
	}
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	sfd, sstored, errno := t.at()
	if errno != 0 {
		return nil, errno
	}
	fd, stored, errno := n.prepareNew(name, t.isEnc())
	if errno != 0 {
		return nil, errno
	}
	if err := unix.Linkat(sfd, sstored, fd, stored, 0); err != nil {
		return nil, gofs.ToErrno(err)
	}
	if t.isEnc() && plainPolicy {
		n.v.stats.note(&n.v.stats.drift, path)
	}
	var st syscall.Stat_t
	gen, err := statGen(fd, stored, &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return n.newChild(ctx, t.isEnc(), &st, gen, out), 0
}
