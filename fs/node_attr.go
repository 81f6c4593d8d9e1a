package fs

import (
	"context"
	"os"
	"syscall"

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
	var st syscall.Stat_t
	if h, ok := f.(fdHolder); ok {
		if err := syscall.Fstat(int(h.backingFile().Fd()), &st); err != nil {
			return gofs.ToErrno(err)
		}
	} else {
		fd, stored, errno := n.at()
		if errno != 0 {
			return errno
		}
		if err := fstatat(fd, stored, &st); err != nil {
			return gofs.ToErrno(err)
		}
	}
	n.fillAttr(&st, &out.Attr)
	return 0
}

var _ = (gofs.NodeSetattrer)((*node)(nil))

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	fd, stored, errno := n.at()
	if errno != 0 {
		return errno
	}
	flags := atFlags(stored)
	if mode, ok := in.GetMode(); ok {
		if err := unix.Fchmodat(fd, stored, mode&07777, flags); err != nil {
			return gofs.ToErrno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := unix.Fchownat(fd, stored, u, g, flags); err != nil {
			return gofs.ToErrno(err)
		}
	}
	if size, ok := in.GetSize(); ok {
		if errno := n.truncate(ctx, f, int64(size), in.Valid&fuse.FATTR_KILL_SUIDGID != 0); errno != 0 {
			return errno
		}
	}
	atime, aok := in.GetATime()
	mtime, mok := in.GetMTime()
	if aok || mok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(atime.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mtime.UnixNano())
		}
		if err := unix.UtimesNanoAt(fd, stored, ts, flags); err != nil {
			return gofs.ToErrno(err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// truncate sets the size of a regular file, through the open handle when
// there is one.
func (n *node) truncate(ctx context.Context, f gofs.FileHandle, size int64, killSetID bool) syscall.Errno {
	var file *os.File
	if h, ok := f.(fdHolder); ok {
		file = h.backingFile()
	} else {
		opened, errno := n.openBacking(unix.O_RDWR)
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
		return gofs.ToErrno(err)
	}
	return n.truncateEnc(file, size)
}

// openBacking opens the node's backing file without following links.
func (n *node) openBacking(flags int) (*os.File, syscall.Errno) {
	fd, stored, errno := n.at()
	if errno != 0 {
		return nil, errno
	}
	bfd, err := unix.Openat(fd, stored, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	return os.NewFile(uintptr(bfd), stored), 0
}

var _ = (gofs.NodeStatfser)((*node)(nil))

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(n.v.rootFd, &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	// Encrypted names are longer than their plaintext; this is what is safe.
	out.NameLen = 255
	return 0
}
