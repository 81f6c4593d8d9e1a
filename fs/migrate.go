package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"cryptpt/crypt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
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
func (n *node) migrate(ctx context.Context, value string) syscall.Errno {
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
	pfd, errno := p.dirfd()
	if errno != 0 {
		return errno
	}
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
		// Already converted; remove a twin left by an interrupted run.
		var st syscall.Stat_t
		if other, errno := p.storedName(name, !cur, false); errno == 0 && fstatat(pfd, other, &st) == nil && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			unix.Unlinkat(pfd, other, 0)
			p.dropSidecar(pfd, other)
			syncDir(pfd)
		}
		return 0
	}
	var st syscall.Stat_t
	if err := fstatat(pfd, curStored, &st); err != nil {
		return gofs.ToErrno(err)
	}
	if sidecar != nil {
		if err := writeSmallFile(pfd, crypt.SidecarName(newStored), sidecar, false); err != nil {
			return gofs.ToErrno(err)
		}
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		errno = n.convertFile(pfd, curStored, newStored, &st, wantEnc)
	case syscall.S_IFLNK:
		errno = n.convertSymlink(pfd, curStored, newStored, wantEnc)
	default:
		// Directories, fifos, sockets: nothing but the name to convert.
		errno = gofs.ToErrno(unix.Renameat2(pfd, curStored, pfd, newStored, unix.RENAME_NOREPLACE))
	}
	if errno != 0 {
		return errno
	}
	p.dropSidecar(pfd, curStored)
	syncDir(pfd)
	n.enc.Store(wantEnc)
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

// convertFile writes a copy of a file in the other mode and puts it in
// place of the original. The caller holds the parent's treeMu shared.
func (n *node) convertFile(pfd int, curStored, newStored string, st *syscall.Stat_t, wantEnc bool) syscall.Errno {
	if n.openCount() > 0 {
		return syscall.EBUSY
	}
	if st.Nlink > 1 {
		return syscall.EMLINK
	}
	n.contentMu.Lock()
	defer n.contentMu.Unlock()
	sfd, err := unix.Openat(pfd, curStored, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return gofs.ToErrno(err)
	}
	src := os.NewFile(uintptr(sfd), curStored)
	defer src.Close()
	tmp, err := crypt.TempName()
	if err != nil {
		return gofs.ToErrno(err)
	}
	dfd, err := unix.Openat(pfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return gofs.ToErrno(err)
	}
	dst := os.NewFile(uintptr(dfd), tmp)
	ok := false
	defer func() {
		dst.Close()
		if !ok {
			unix.Unlinkat(pfd, tmp, 0)
		}
	}()
	if errno := n.copyContent(src, dst, st.Size, wantEnc); errno != 0 {
		return errno
	}
	if errno := n.copyXattrs(src, dst, wantEnc); errno != 0 {
		return errno
	}
	if unix.Geteuid() == 0 {
		dst.Chown(int(st.Uid), int(st.Gid))
	}
	// After chown, which clears set-id bits.
	if err := unix.Fchmod(dfd, st.Mode&07777); err != nil {
		return gofs.ToErrno(err)
	}
	times := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", dfd), times, 0)
	if err := dst.Sync(); err != nil {
		return gofs.ToErrno(err)
	}
	if err := unix.Renameat2(pfd, tmp, pfd, newStored, unix.RENAME_NOREPLACE); err != nil {
		return gofs.ToErrno(err)
	}
	ok = true
	var nst syscall.Stat_t
	if syscall.Fstat(dfd, &nst) == nil {
		n.ino.Store(nst.Ino)
	}
	syncDir(pfd)
	if err := unix.Unlinkat(pfd, curStored, 0); err != nil {
		return gofs.ToErrno(err)
	}
	n.hdr = nil
	return 0
}

// copyContent copies plaintext bytes from src (in the current mode) to dst
// (in the wanted mode), 1 MiB at a time.
func (n *node) copyContent(src, dst *os.File, srcSize int64, wantEnc bool) syscall.Errno {
	buf := make([]byte, 1<<20)
	var readHdr *crypt.Header
	var plainSize int64 = srcSize
	if !wantEnc {
		// The source is encrypted.
		var errno syscall.Errno
		if readHdr, errno = n.readHeader(src, srcSize); errno != 0 {
			return errno
		}
		ps, err := crypt.PlainSize(srcSize)
		if err != nil {
			n.authFailed(src, err)
			return syscall.EIO
		}
		plainSize = ps
	}
	var writeHdr crypt.Header
	if wantEnc {
		h, err := crypt.NewHeader()
		if err != nil {
			return gofs.ToErrno(err)
		}
		writeHdr = h
	}
	var cipherSize int64
	for off := int64(0); off < plainSize; {
		var cnt int
		var err error
		if wantEnc {
			cnt, err = src.ReadAt(buf, off)
		} else {
			cnt, err = n.v.content.ReadAt(src, readHdr, buf, off, srcSize)
		}
		if err != nil && err != io.EOF {
			if errors.Is(err, crypt.ErrAuth) || errors.Is(err, crypt.ErrSize) {
				n.authFailed(src, err)
				return syscall.EIO
			}
			return gofs.ToErrno(err)
		}
		if cnt == 0 {
			break
		}
		if wantEnc {
			cipherSize, err = n.v.content.WriteAt(dst, &writeHdr, buf[:cnt], off, cipherSize)
		} else {
			_, err = dst.WriteAt(buf[:cnt], off)
		}
		if err != nil {
			return gofs.ToErrno(err)
		}
		off += int64(cnt)
	}
	return 0
}

// copyXattrs copies extended attributes, re-sealing user.* values.
func (n *node) copyXattrs(src, dst *os.File, wantEnc bool) syscall.Errno {
	list := make([]byte, 64*1024)
	sz, err := unix.Flistxattr(int(src.Fd()), list)
	if err != nil {
		if err == unix.ENOTSUP {
			return 0
		}
		return gofs.ToErrno(err)
	}
	for _, attr := range strings.Split(string(list[:sz]), "\x00") {
		if attr == "" {
			continue
		}
		val := make([]byte, 64*1024)
		vs, err := unix.Fgetxattr(int(src.Fd()), attr, val)
		if err != nil {
			return gofs.ToErrno(err)
		}
		val = val[:vs]
		if strings.HasPrefix(attr, "user.") {
			if !wantEnc {
				if val, err = n.v.opts.Keys.OpenMeta(val, xattrAD(attr)); err != nil {
					n.authFailed(src, err)
					return syscall.EIO
				}
			} else {
				val = n.v.opts.Keys.SealMeta(val, xattrAD(attr))
			}
		}
		if err := unix.Fsetxattr(int(dst.Fd()), attr, val, 0); err != nil {
			return gofs.ToErrno(err)
		}
	}
	return 0
}

func (n *node) convertSymlink(pfd int, curStored, newStored string, wantEnc bool) syscall.Errno {
	target, errno := n.Readlink(context.Background())
	if errno != 0 {
		return errno
	}
	stored := string(target)
	if wantEnc {
		stored = encodeSymlink(n.v, target)
	}
	tmp, err := crypt.TempName()
	if err != nil {
		return gofs.ToErrno(err)
	}
	if err := unix.Symlinkat(stored, pfd, tmp); err != nil {
		return gofs.ToErrno(err)
	}
	var nst syscall.Stat_t
	if fstatat(pfd, tmp, &nst) == nil {
		n.ino.Store(nst.Ino)
	}
	if err := unix.Renameat2(pfd, tmp, pfd, newStored, unix.RENAME_NOREPLACE); err != nil {
		unix.Unlinkat(pfd, tmp, 0)
		return gofs.ToErrno(err)
	}
	return gofs.ToErrno(unix.Unlinkat(pfd, curStored, 0))
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
