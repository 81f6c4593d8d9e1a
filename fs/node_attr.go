package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"cryptpt/crypt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fdHolder is implemented by this package's file handles.
type fdHolder interface {
	backingFile() *os.File
}

var _ = (gofs.NodeGetattrer)((*node)(nil))

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := n.getattrVault(f, out); errno != 0 {
		return errno
	}
	if vf := n.openView(f); vf != nil {
		// The view's kernel holds the size and times of what it has not
		// written back yet.
		var st syscall.Stat_t
		err := syscall.Fstat(int(vf.Fd()), &st)
		vf.Close()
		if err != nil {
			return toErrno(err)
		}
		out.Size, out.Blocks = uint64(st.Size), uint64(st.Blocks)
		out.Mtime, out.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
		if ctime := st.Ctim; ctime.Nano() > int64(out.Ctime)*1e9+int64(out.Ctimensec) {
			out.Ctime, out.Ctimensec = uint64(ctime.Sec), uint32(ctime.Nsec)
		}
	}
	return 0
}

// getattrVault reports the attributes of the vault entry.
func (n *node) getattrVault(f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if errno := n.onEntry(f, func(t entryTarget) error { return t.stat(n, &st) }); errno != 0 {
		return errno
	}
	n.fillAttr(&st, &out.Attr)
	out.SetTimeout(n.attrTimeout())
	return 0
}

// openView returns a duplicate of a view file of n, the handle's if it is
// one (view.go), or nil; the caller closes it.
func (n *node) openView(f gofs.FileHandle) *os.File {
	if n.v.view == nil || !n.isEnc() {
		return nil
	}
	if h, ok := f.(*viewFile); ok {
		if fd, err := unix.FcntlInt(h.f.Fd(), unix.F_DUPFD_CLOEXEC, 0); err == nil {
			return os.NewFile(uintptr(fd), h.f.Name())
		}
	}
	return n.dupView()
}

// setMtime sets the vault entry's mtime, leaving atime.
func (n *node) setMtime(mtime syscall.Timespec) {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, unix.Timespec(mtime)}
	n.onEntry(nil, func(t entryTarget) error {
		if err := t.ours(n); err != nil {
			return err
		}
		return unix.UtimesNanoAt(t.dirfd, t.name, ts, t.flags)
	})
}

// setattrInView changes size and times of an encrypted file open through
// the view there, so that the view's cache agrees (its kernel writes its
// own times back otherwise), and returns what is left to change.
// viewOwned are the attributes the view's kernel keeps for itself.
const viewOwned = fuse.FATTR_SIZE | fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW

func (n *node) setattrInView(ctx context.Context, vf *os.File, in *fuse.SetAttrIn) (*fuse.SetAttrIn, syscall.Errno) {
	const viewed = viewOwned
	if in.Valid&viewed == 0 {
		return in, 0
	}
	if size, ok := in.GetSize(); ok {
		if errno := n.refuseQuarantined("truncate"); errno != 0 {
			return nil, errno
		}
		if in.Valid&fuse.FATTR_KILL_SUIDGID != 0 {
			// The view's requests carry the daemon as caller: clear
			// here, for the caller the kernel asked for.
			if of := n.dupOpenFile(); of != nil {
				clearSetID(ctx, of)
				of.Close()
			}
		}
		if err := unix.Ftruncate(int(vf.Fd()), int64(size)); err != nil {
			return nil, toErrno(err)
		}
	}
	atime, aok := in.GetATime()
	mtime, mok := in.GetMTime()
	if aok || mok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.Timespec{Sec: atime.Unix(), Nsec: int64(atime.Nanosecond())}
		}
		if mok {
			ts[1] = unix.Timespec{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())}
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(vf), ts, 0); err != nil {
			return nil, toErrno(err)
		}
	}
	rest := *in
	rest.Valid &^= viewed
	return &rest, 0
}

var _ = (gofs.NodeSetattrer)((*node)(nil))

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	return n.timesOfGone(n.setattr(ctx, f, in, out), in, out)
}

// timesOfGone turns ENOENT for a SETATTR of times alone into success. The
// kernel's writeback cache writes cached times back right after an unlink
// or a rename over the entry (fuse_flush_time_update), and turns a failure
// into EIO on the next close() of whoever still has the file open, or is
// opening it. The entry has no name and no open handle here: there is
// nothing left to stamp, which is success. The kernel ignores the
// attributes of that reply; they are marked as not cacheable.
func (n *node) timesOfGone(errno syscall.Errno, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if errno == syscall.ENOENT && timesOnly(in) {
		out.Attr = fuse.Attr{Ino: n.ino.Load(), Mode: n.StableAttr().Mode}
		out.SetTimeout(0)
		return 0
	}
	return errno
}

func (n *node) setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	vf := n.openView(f)
	if vf == nil && in.Valid&viewOwned != 0 && n.viewID.Load() != 0 {
		vf = n.openViewBriefly()
	}
	if vf != nil {
		rest, errno := n.setattrInView(ctx, vf, in)
		vf.Close()
		if errno != 0 {
			return errno
		}
		if killRequest(rest) && !killRequest(in) {
			// All it asked was the view's (a size or times): what is
			// left is no chown(-1, -1), whose set-id clearing it would
			// get below.
			return n.Getattr(ctx, f, out)
		}
		in = rest
		if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID) != 0 || killRequest(in) {
			// Changed in the vault below: the view asks again.
			defer n.v.view.invalidateAttrs(n)
		}
	} else if n.isEnc() && in.Valid&viewOwned != 0 {
		// The view keeps the size and times of what it holds cached:
		// after they change in the vault, it starts afresh.
		defer n.v.view.retire(n)
	}
	if errno := n.setattrVault(ctx, f, in); errno != 0 {
		return errno
	}
	return n.Getattr(ctx, f, out)
}

// openViewBriefly opens the node's file in the view for a change of size
// or times by name, or returns nil. The view still knows the file (it may
// write back what it cached after the last close, and keeps the size):
// changed below it, the view and the vault would disagree. The file it
// returns is the caller's to close.
func (n *node) openViewBriefly() *os.File {
	w := n.v.view
	if w == nil || !n.isEnc() {
		return nil
	}
	bf, errno := n.openBacking(unix.O_RDWR)
	if errno != 0 {
		return nil
	}
	h, _, errno := n.openThroughView(w, bf, unix.O_RDWR, 0)
	if errno != 0 {
		return nil
	}
	// The caller takes the view file over from the handle.
	vh := h.(*viewFile)
	if !w.track(vh, false) {
		return nil // the view closed it as the mount ended
	}
	n.trackView(vh.f, false)
	return vh.f
}

// setattrVault changes the attributes of the vault entry, all at the one
// entry onEntry reaches.
func (n *node) setattrVault(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn) syscall.Errno {
	return n.onEntry(f, func(t entryTarget) error {
		if err := t.ours(n); err != nil {
			return err
		}
		if mode, ok := in.GetMode(); ok {
			if err := unix.Fchmodat(t.dirfd, t.name, mode&07777, t.flags); err != nil {
				return err
			}
		}
		uid, uok := in.GetUID()
		gid, gok := in.GetGID()
		if uok || gok || killRequest(in) {
			u, g := -1, -1
			if uok {
				u = int(uid)
			}
			if gok {
				g = int(gid)
			}
			if errno := chown(ctx, t.dirfd, t.name, t.flags, u, g); errno != 0 {
				return errno
			}
		}
		if size, ok := in.GetSize(); ok {
			if errno := n.refuseQuarantined("truncate"); errno != 0 {
				return errno
			}
			if errno := n.truncate(ctx, f, t, int64(size), in.Valid&fuse.FATTR_KILL_SUIDGID != 0); errno != 0 {
				return errno
			}
		}
		atime, aok := in.GetATime()
		mtime, mok := in.GetMTime()
		if !aok && !mok {
			return nil
		}
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		// Seconds and nanoseconds apart: nanoseconds since 1970 overflow
		// an int64 before 1678 and after 2262.
		if aok {
			ts[0] = unix.Timespec{Sec: atime.Unix(), Nsec: int64(atime.Nanosecond())}
		}
		if mok {
			ts[1] = unix.Timespec{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())}
		}
		return unix.UtimesNanoAt(t.dirfd, t.name, ts, t.flags)
	})
}

// killRequest reports whether a SETATTR asks for no attribute: what the
// kernel sends for chown(2) with uid and gid -1 (which still clears set-id
// bits and changes ctime), and, under FUSE_HANDLE_KILLPRIV_V2, before a
// write or fallocate by a caller without CAP_FSETID to a file it knows to
// be set-id (file_remove_privs), passthrough writes included: the daemon's
// only chance to clear the bits for those. Both get chown's treatment.
// Under the writeback cache the request carries ctime, which the daemon
// cannot set (the backing filesystem sets it).
func killRequest(in *fuse.SetAttrIn) bool {
	const none = fuse.FATTR_FH | fuse.FATTR_LOCKOWNER | fuse.FATTR_CTIME | fuse.FATTR_KILL_SUIDGID
	return in.Valid&^none == 0
}

// chown changes the owner and group of the entry at dirfd/name (-1 keeps
// either), and clears the set-id bits chown(2) clears (chownKill), which
// the backing filesystem, called by the daemon, would not all clear:
// S_ISGID of a caller outside the file's group, and, for a daemon with
// CAP_FSETID, nothing beyond S_ISUID.
func chown(ctx context.Context, dirfd int, name string, flags int, uid, gid int) syscall.Errno {
	var pre syscall.Stat_t
	if err := fstatatFlags(dirfd, name, flags, &pre); err != nil {
		return toErrno(err)
	}
	if err := unix.Fchownat(dirfd, name, uid, gid, flags); err != nil {
		return toErrno(err)
	}
	kill := chownKill(ctx, &pre)
	if kill == 0 {
		return 0
	}
	var st syscall.Stat_t
	if err := fstatatFlags(dirfd, name, flags, &st); err != nil {
		return toErrno(err)
	}
	if st.Mode&kill != 0 {
		if err := unix.Fchmodat(dirfd, name, st.Mode&07777&^kill, flags); err != nil {
			return toErrno(err)
		}
	}
	return 0
}

// timesOnly reports whether a SETATTR only sets times, without a file
// handle: what the kernel sends to write back the times it cached.
func timesOnly(in *fuse.SetAttrIn) bool {
	const times = fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_CTIME | fuse.FATTR_ATIME_NOW | fuse.FATTR_MTIME_NOW
	return in.Valid != 0 && in.Valid&^times == 0
}

// entryTarget is where a request reaches a node's vault entry, for the *at
// calls: by name, dirfd and name with AT_SYMLINK_NOFOLLOW (the root: its fd
// and "" with AT_EMPTY_PATH); or through an open file, its /proc/self/fd
// magic link with flags 0 (followed), and file set.
type entryTarget struct {
	dirfd int
	name  string
	flags int
	file  *os.File
}

func fileTarget(f *os.File) entryTarget {
	return entryTarget{dirfd: unix.AT_FDCWD, name: fdPath(f), file: f}
}

// onEntry runs op on the node's vault entry: through the handle f when it
// is one of ours, else by name, and, when op finds no entry there (ENOENT),
// once more through a duplicate of one of the node's open files. An entry
// unlinked or renamed over while open keeps its attributes and xattrs, as
// a local file does (fstat, fchmod or fsetxattr of an unlinked file; the
// kernel's writeback of mtime at close). This is the one place that rule is
// written: Getattr, Setattr, the xattr calls and opens for a truncate or a
// file ID go through it.
func (n *node) onEntry(f gofs.FileHandle, op func(t entryTarget) error) syscall.Errno {
	if h, ok := f.(fdHolder); ok {
		return toErrno(op(fileTarget(h.backingFile())))
	}
	dirfd, name, release, errno := n.at()
	var err error = unix.ENOENT
	switch {
	case errno == 0:
		err = op(entryTarget{dirfd: dirfd, name: name, flags: atFlags(name)})
	case errno != syscall.ENOENT:
		release()
		return errno
	}
	release()
	if errors.Is(err, unix.ENOENT) {
		if of := n.dupOpenFile(); of != nil {
			err = op(fileTarget(of))
			of.Close()
		}
	}
	return toErrno(err)
}

// byName reports whether t reaches a non-root entry by its name.
func (t entryTarget) byName() bool { return t.flags&unix.AT_SYMLINK_NOFOLLOW != 0 }

// stat stats the entry at t. By name it is ENOENT when the name holds
// another entry than n's now (a rename over it that go-fuse's tree does
// not show yet): not n's to report or change.
func (t entryTarget) stat(n *node, st *syscall.Stat_t) error {
	if err := fstatatFlags(t.dirfd, t.name, t.flags, st); err != nil {
		return err
	}
	if t.byName() && st.Ino != n.ino.Load() {
		return unix.ENOENT
	}
	return nil
}

// ours is stat for a change: ENOENT when the name is n's no more; other
// failures are left to the change itself.
func (t entryTarget) ours(n *node) error {
	if !t.byName() {
		return nil
	}
	var st syscall.Stat_t
	if err := t.stat(n, &st); err == unix.ENOENT {
		return err
	}
	return nil
}

// openEntry opens the node's regular backing file as openBackingHow does,
// at the entry onEntry reaches: by name, else a duplicate of one of its
// open files (which has the flags that file was opened with). The caller
// closes it.
func (n *node) openEntry(flags int, asOwner bool) (f *os.File, errno syscall.Errno) {
	errno = n.onEntry(nil, func(t entryTarget) error {
		var errno syscall.Errno
		f, errno = n.openAt(t, flags, asOwner)
		return errOf(errno)
	})
	return f, errno
}

// openAt is openEntry at t.
func (n *node) openAt(t entryTarget, flags int, asOwner bool) (*os.File, syscall.Errno) {
	if t.file == nil {
		return n.openBackingAt(t.dirfd, t.name, flags, asOwner)
	}
	fd, err := unix.FcntlInt(t.file.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	return os.NewFile(uintptr(fd), t.file.Name()), 0
}

// errOf is errno as an error: nil for 0.
func errOf(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

// fdPath names an open file for the *at calls that lack an fd form
// (utimensat with nanoseconds, fchmodat2). The magic link is the file itself.
func fdPath(f *os.File) string { return fmt.Sprintf("/proc/self/fd/%d", f.Fd()) }

// truncate sets the size of a regular file, through the open handle f when
// there is one, else at t.
func (n *node) truncate(ctx context.Context, f gofs.FileHandle, t entryTarget, size int64, killSetID bool) syscall.Errno {
	var file *os.File
	if h, ok := f.(fdHolder); ok {
		file = h.backingFile()
		if eh, ok := h.(*encFile); ok {
			n.contentMu.Lock()
			eh.forDaemon()
			n.contentMu.Unlock()
		}
	} else {
		opened, errno := n.openAt(t, unix.O_RDWR, true)
		if errno != 0 {
			return errno
		}
		defer opened.Close()
		file = opened
	}
	if killSetID {
		clearSetID(ctx, file)
	}
	if !n.isEnc() {
		n.contentMu.Lock()
		defer n.contentMu.Unlock()
		err := file.Truncate(size)
		n.cached = stateOf(file)
		return toErrno(err)
	}
	return n.truncateEnc(file, size)
}

// openBacking opens the node's regular backing file without following
// links. O_NONBLOCK and a type check after the open make sure that a FIFO
// or device swapped in after the lookup is never waited on or used. An
// encrypted file is opened with O_NOATIME where the daemon may (owner or
// CAP_FOWNER): the daemon's own reads (headers, the blocks a write
// re-encrypts) are no access by the user; an encrypted handle lifts it for
// the user's reads (encFile.forUser).
func (n *node) openBacking(flags int) (*os.File, syscall.Errno) {
	return n.openBackingHow(flags, false)
}

// openBackingOwner is openBacking that, as a last resort, uses the owner's
// right to change the mode (openAsOwner).
//
// A daemon that runs as the file's owner (a user's own mount) may lack the
// access it needs where the caller has it: an encrypted file is read for
// every write, a plaintext one opened read-write to be shared by
// passthrough, and mode 0 files must still be served to root. The kernel
// has already checked the caller (default_permissions), so the daemon then
// grants itself owner read and write for the moment of the open and puts
// the mode back, as gocryptfs does for write-only files. A chmod racing
// with that moment may be undone; the mode never stays wider than before.
// It is a last resort because it changes the file's ctime.
func (n *node) openBackingOwner(flags int) (*os.File, syscall.Errno) {
	return n.openBackingHow(flags, true)
}

func (n *node) openBackingHow(flags int, asOwner bool) (*os.File, syscall.Errno) {
	fd, stored, release, errno := n.at()
	defer release()
	if errno != 0 {
		return nil, errno
	}
	return n.openBackingAt(fd, stored, flags, asOwner)
}

// openBackingAt is openBackingHow of the node's entry stored in dirfd.
func (n *node) openBackingAt(fd int, stored string, flags int, asOwner bool) (*os.File, syscall.Errno) {
	how := flags | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	if n.isEnc() {
		how |= unix.O_NOATIME
	}
	bfd, err := unix.Openat(fd, stored, how, 0)
	if err == unix.EPERM && how&unix.O_NOATIME != 0 {
		how &^= unix.O_NOATIME
		bfd, err = unix.Openat(fd, stored, how, 0)
	}
	if err == unix.EACCES && asOwner {
		bfd, err = openAsOwner(fd, stored, how)
	}
	if err != nil {
		return nil, toErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(bfd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(bfd)
		if err != nil {
			return nil, toErrno(err)
		}
		n.v.logf("refused: %s is no longer a regular file in the vault (mode %o)", n.v.entryName(n), st.Mode)
		return nil, syscall.EIO
	}
	if flags&unix.O_NONBLOCK == 0 {
		fl, err := unix.FcntlInt(uintptr(bfd), unix.F_GETFL, 0)
		if err == nil {
			_, err = unix.FcntlInt(uintptr(bfd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
		}
		if err != nil {
			unix.Close(bfd)
			return nil, toErrno(err)
		}
	}
	return os.NewFile(uintptr(bfd), stored), 0
}

// openAsOwner opens a regular file the daemon owns with owner read and
// write added to its mode for the moment of the open (see openBacking).
func openAsOwner(dirfd int, name string, flags int) (int, error) {
	var st syscall.Stat_t
	if err := fstatat(dirfd, name, &st); err != nil {
		return -1, err
	}
	if st.Uid != uint32(unix.Geteuid()) || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Mode&0o600 == 0o600 {
		return -1, unix.EACCES
	}
	mode := st.Mode & 07777
	if err := unix.Fchmodat(dirfd, name, mode|0o600, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, unix.EACCES
	}
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if err == nil {
		err = unix.Fchmod(fd, mode)
	} else {
		unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil && fd >= 0 {
		unix.Close(fd)
		return -1, err
	}
	return fd, err
}

var _ = (gofs.NodeStatfser)((*node)(nil))

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(n.v.rootFd, &st); err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&st)
	// What checkName accepts in both modes: the vault stores longer
	// encrypted names as long names (docs/format.md).
	out.NameLen = crypt.MaxNameLen
	return 0
}
