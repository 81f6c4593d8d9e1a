package fs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"syscall"

	"cryptpt/crypt"
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// migrate converts the entry to the mode value ("encrypted" or
// "plaintext"); Mount.Migrate (control.go) is its only caller and picks the
// mode from the policy.
//
// Directories and special files only change the form of their vault name:
// one rename, since their children are named under their own IV. Files get
// a converted copy that is written and synced under a temp name, renamed to
// the new-form name, and only then is the old one removed; a crash leaves the
// old entry, or both (the next migrate removes the stale twin). Files open
// elsewhere (EBUSY) or with several hard links (EMLINK) are refused: a
// passthrough handle would keep writing to the replaced backing file.
func (n *node) migrate(ctx context.Context, value string, progress func(done int64)) syscall.Errno {
	var wantEnc bool
	switch value {
	case "encrypted":
		wantEnc = true
	case "plaintext":
	default:
		return syscall.EINVAL
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	if n.IsRoot() {
		return syscall.EINVAL
	}
	p, name, errno := n.parent()
	if errno != 0 {
		return errno
	}
	pfd, pfdRelease, errno := p.dirfd()
	if errno != 0 {
		return errno
	}
	defer pfdRelease()
	p.treeMu.RLock()
	defer p.treeMu.RUnlock()
	cur := n.isEnc()
	curStored, errno := p.storedName(name, cur, false)
	if errno != 0 {
		return errno
	}
	newStored, sidecar, errno := p.storedNameSidecar(name, wantEnc, true)
	if errno != 0 {
		return errno
	}
	if cur == wantEnc {
		// Already converted; remove a twin left by an interrupted run,
		// but only one with the same content: a twin that differs was
		// not made by migrate (it may have been planted) and may be the
		// only copy of something.
		var st syscall.Stat_t
		if other, errno := p.storedName(name, !cur, false); errno == 0 && fstatat(pfd, other, &st) == nil && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			same, errno := n.sameAsTwin(p, name, pfd, curStored, other)
			if errno != 0 {
				return errno
			}
			if !same {
				n.v.logf("not removed: %s is stored in both forms with different content; move one aside in the vault by hand", n.v.entryName(n))
				return syscall.EEXIST
			}
			unix.Unlinkat(pfd, other, 0)
			p.dropSidecar(pfd, other)
			syncDir(pfd)
		}
		n.v.stats.forgetTwin(n.relPath())
		return 0
	}
	var st syscall.Stat_t
	if err := fstatat(pfd, curStored, &st); err != nil {
		return toErrno(err)
	}
	if sidecar != nil {
		if err := layout.WriteSidecar(pfd, newStored, sidecar, nil); err != nil {
			return toErrno(err)
		}
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		errno = n.convertFile(pfd, curStored, newStored, &st, wantEnc, progress)
	case syscall.S_IFLNK:
		errno = n.convertSymlink(p, name, pfd, curStored, newStored, wantEnc)
	case syscall.S_IFDIR:
		// Nothing but the name to convert; an encrypted directory must
		// have its IV, which a plaintext one gets only with its first
		// encrypted entry.
		if wantEnc {
			if _, errno = n.dirIV(true); errno != 0 {
				return errno
			}
		}
		errno = toErrno(unix.Renameat2(pfd, curStored, pfd, newStored, unix.RENAME_NOREPLACE))
	default:
		// Fifos, sockets: nothing but the name to convert.
		errno = toErrno(unix.Renameat2(pfd, curStored, pfd, newStored, unix.RENAME_NOREPLACE))
	}
	if errno != 0 {
		return errno
	}
	p.dropSidecar(pfd, curStored)
	syncDir(pfd)
	n.enc.Store(wantEnc)
	n.injected.Store(false)
	if st.Mode&syscall.S_IFMT == syscall.S_IFREG || st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		// A converted file is a new backing file with a new inode number:
		// make the kernel look it up again. Not from this request, which
		// holds the directory's lock the invalidation needs.
		go p.NotifyEntry(name)
	}
	n.v.stats.forget(n.relPath())
	n.v.logf("migrated %s to %s", n.v.entryName(n), value)
	return 0
}

// sameAsTwin reports whether the entry name of directory p, stored as
// curStored in n's mode, holds what its twin other (the other mode) holds:
// the same file type and plaintext content or symlink target.
func (n *node) sameAsTwin(p *node, name string, pfd int, curStored, other string) (bool, syscall.Errno) {
	var a, b syscall.Stat_t
	if fstatat(pfd, curStored, &a) != nil || fstatat(pfd, other, &b) != nil {
		return false, syscall.ENOENT
	}
	if a.Mode&syscall.S_IFMT != b.Mode&syscall.S_IFMT {
		return false, 0
	}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		x, errno := n.readPlain(pfd, curStored, n.isEnc())
		if errno != 0 {
			return false, errno
		}
		y, errno := n.readPlain(pfd, other, !n.isEnc())
		if errno != 0 {
			return false, 0 // an unreadable twin is no copy of this one
		}
		return bytes.Equal(x, y), 0
	case syscall.S_IFLNK:
		x, errno := n.readTarget(p, name, pfd, curStored, n.isEnc())
		if errno != 0 {
			return false, errno
		}
		y, errno := n.readTarget(p, name, pfd, other, !n.isEnc())
		return errno == 0 && bytes.Equal(x, y), 0
	}
	return true, 0
}

// maxTwinCompare bounds the files sameAsTwin compares in memory; bigger
// twins are left for the user to resolve.
const maxTwinCompare = 256 << 20

// readPlain reads the whole plaintext of the regular file stored in dirfd.
func (n *node) readPlain(dirfd int, stored string, enc bool) ([]byte, syscall.Errno) {
	fd, err := unix.Openat(dirfd, stored, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	f := os.NewFile(uintptr(fd), stored)
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxTwinCompare {
		return nil, syscall.EFBIG
	}
	size := st.Size()
	if !enc {
		buf := make([]byte, size)
		if _, err := f.ReadAt(buf, 0); err != nil && err != io.EOF {
			return nil, toErrno(err)
		}
		return buf, 0
	}
	if size == 0 {
		return []byte{}, 0
	}
	h, errno := n.readHeader(f, size)
	if errno != 0 {
		return nil, errno
	}
	plain, _ := crypt.PlainSize(size)
	buf := make([]byte, plain)
	if _, err := n.v.content.ReadAt(f, h, buf, 0, size); err != nil && err != io.EOF {
		return nil, syscall.EIO
	}
	return buf, 0
}

// readTarget reads the target of the symlink name of directory p, stored
// in dirfd, in either mode.
func (n *node) readTarget(p *node, name string, dirfd int, stored string, enc bool) ([]byte, syscall.Errno) {
	if enc {
		return p.readSymlink(dirfd, stored, name)
	}
	buf := make([]byte, unix.PathMax)
	sz, err := unix.Readlinkat(dirfd, stored, buf)
	if err != nil {
		return nil, toErrno(err)
	}
	return buf[:sz], 0
}

// convertFile writes a copy of a file in the other mode and puts it in
// place of the original. The caller holds the parent's treeMu shared.
func (n *node) convertFile(pfd int, curStored, newStored string, st *syscall.Stat_t, wantEnc bool, progress func(int64)) syscall.Errno {
	if n.openCount() > 0 {
		return syscall.EBUSY
	}
	if st.Nlink > 1 {
		return syscall.EMLINK
	}
	n.contentMu.Lock()
	defer n.contentMu.Unlock()
	// O_NONBLOCK and the check after the open: the name may have been
	// replaced in the vault since st was taken, and a FIFO or device
	// swapped in is never waited on or read, nor another file.
	sfd, err := unix.Openat(pfd, curStored, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return toErrno(err)
	}
	src := os.NewFile(uintptr(sfd), curStored)
	defer src.Close()
	var now unix.Stat_t
	if err := unix.Fstat(sfd, &now); err != nil {
		return toErrno(err)
	}
	if now.Mode&unix.S_IFMT != unix.S_IFREG || now.Ino != st.Ino || now.Dev != st.Dev {
		n.v.logf("not migrated: %s was replaced in the vault during migrate (now mode %o)", n.v.entryName(n), now.Mode)
		return syscall.EIO
	}
	tmp, err := crypt.TempName()
	if err != nil {
		return toErrno(err)
	}
	dfd, err := unix.Openat(pfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return toErrno(err)
	}
	dst := os.NewFile(uintptr(dfd), tmp)
	ok := false
	defer func() {
		dst.Close()
		if !ok {
			unix.Unlinkat(pfd, tmp, 0)
		}
	}()
	hdr, errno := n.copyContent(src, dst, st.Size, wantEnc, progress)
	if errno != 0 {
		return errno
	}
	if errno := n.copyXattrs(src, st.Size, dst, hdr); errno != 0 {
		return errno
	}
	if unix.Geteuid() == 0 {
		dst.Chown(int(st.Uid), int(st.Gid))
	}
	// After chown, which clears set-id bits.
	if err := unix.Fchmod(dfd, st.Mode&07777); err != nil {
		return toErrno(err)
	}
	times := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", dfd), times, 0)
	if err := dst.Sync(); err != nil {
		return toErrno(err)
	}
	if err := unix.Renameat2(pfd, tmp, pfd, newStored, unix.RENAME_NOREPLACE); err != nil {
		return toErrno(err)
	}
	ok = true
	var nst syscall.Stat_t
	if syscall.Fstat(dfd, &nst) == nil {
		n.ino.Store(nst.Ino)
	}
	syncDir(pfd)
	if err := unix.Unlinkat(pfd, curStored, 0); err != nil {
		return toErrno(err)
	}
	n.hdr = nil
	return 0
}

// copyContent copies the plaintext of src (in the current mode) to dst (in
// the wanted mode) 1 MiB at a time, from a decrypting reader or to an
// encrypting writer. Converting to encrypted, it returns the header dst got.
func (n *node) copyContent(src, dst *os.File, srcSize int64, wantEnc bool, progress func(int64)) (*crypt.Header, syscall.Errno) {
	var r io.ReaderAt = src
	var w io.WriterAt = dst
	plainSize := srcSize
	var enc *crypt.File
	if wantEnc {
		enc = crypt.NewFile(n.v.content, store{dst}, nil, n.v.format())
		w = enc
	} else {
		h, errno := n.readHeader(src, srcSize)
		if errno != 0 {
			return nil, errno
		}
		plainSize, _ = crypt.PlainSize(srcSize) // readHeader checked it
		r = crypt.NewFile(n.v.content, store{src}, h, n.v.format())
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < plainSize; {
		cnt, err := r.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return nil, n.contentErrno(src, err)
		}
		if cnt == 0 {
			break
		}
		if _, err := w.WriteAt(buf[:cnt], off); err != nil {
			return nil, toErrno(err)
		}
		off += int64(cnt)
		if progress != nil {
			progress(off)
		}
	}
	if !wantEnc {
		return nil, 0
	}
	if h := enc.Header(); h != nil {
		return h, 0
	}
	// Nothing was written: an empty file, which gets a header so that its
	// xattrs can be sealed to its ID.
	h, err := crypt.NewHeader(n.v.format())
	if err == nil {
		_, err = dst.WriteAt(h.Marshal(), 0)
	}
	if err != nil {
		return nil, toErrno(err)
	}
	return &h, 0
}

// copyXattrs copies extended attributes, re-sealing user.* values: opened
// with the header of src (srcSize bytes) when it is encrypted (hdr nil),
// sealed to dst's header hdr when converting to encrypted. The caller holds
// n.contentMu, so src's header is read here, not through fileID.
func (n *node) copyXattrs(src *os.File, srcSize int64, dst *os.File, hdr *crypt.Header) syscall.Errno {
	names, err := layout.ListXattrs(int(src.Fd()))
	if err != nil {
		if err == unix.ENOTSUP {
			return 0
		}
		return toErrno(err)
	}
	srcID := new([16]byte) // an empty encrypted file has no header
	if hdr == nil && srcSize > 0 {
		h, errno := n.readHeader(src, srcSize)
		if errno != 0 {
			return errno
		}
		srcID = &h.ID
	}
	for _, attr := range names {
		val, err := layout.GetXattr(int(src.Fd()), attr)
		if err != nil {
			return toErrno(err)
		}
		if layout.SealsXattr(attr) {
			if hdr == nil {
				var errno syscall.Errno
				if val, errno = n.openXattrOf(attr, val, srcID); errno != 0 {
					return errno
				}
			} else {
				val = layout.SealXattr(n.v.opts.Keys, hdr.Version, attr, &hdr.ID, val)
			}
		}
		if err := unix.Fsetxattr(int(dst.Fd()), attr, val, 0); err != nil {
			return toErrno(err)
		}
	}
	return 0
}

// convertSymlink writes the symlink name of directory p in the other mode
// under a temp name and puts it in place of the original.
func (n *node) convertSymlink(p *node, name string, pfd int, curStored, newStored string, wantEnc bool) syscall.Errno {
	var target []byte
	if n.isEnc() {
		var errno syscall.Errno
		if target, errno = p.readSymlink(pfd, curStored, name); errno != 0 {
			return errno
		}
	} else {
		// Read as stored: a quarantined link's target is EIO through the
		// mount, and migrate is what takes it out of quarantine.
		buf := make([]byte, unix.PathMax)
		sz, err := unix.Readlinkat(pfd, curStored, buf)
		if err != nil {
			return toErrno(err)
		}
		target = buf[:sz]
	}
	stored := string(target)
	if wantEnc {
		var errno syscall.Errno
		if stored, errno = p.sealSymlink(name, target); errno != 0 {
			return errno
		}
	}
	tmp, err := crypt.TempName()
	if err != nil {
		return toErrno(err)
	}
	if err := unix.Symlinkat(stored, pfd, tmp); err != nil {
		return toErrno(err)
	}
	var nst syscall.Stat_t
	if fstatat(pfd, tmp, &nst) == nil {
		n.ino.Store(nst.Ino)
	}
	if err := unix.Renameat2(pfd, tmp, pfd, newStored, unix.RENAME_NOREPLACE); err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		return toErrno(err)
	}
	return toErrno(unix.Unlinkat(pfd, curStored, 0))
}

// syncDir makes renames and unlinks in a directory durable.
func syncDir(dirfd int) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Fsync(fd)
	unix.Close(fd)
}
