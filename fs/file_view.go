package fs

import (
	"context"
	"io"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// viewFile is an encrypted file of the user's mount opened through the view
// (view.go). The kernel reads and writes the view's file instead of asking
// the daemon: its PassthroughFd is that file, decrypted by this daemon on
// the inner connection, and never a vault file (view.open checks the
// device). Nothing but the view hands out the fd it holds.
type viewFile struct {
	n *node
	f *os.File // a file of the view, owned
}

var _ = (gofs.FilePassthroughFder)((*viewFile)(nil))

func (h *viewFile) PassthroughFd() (int, bool) { return int(h.f.Fd()), true }

var _ = (gofs.FileReader)((*viewFile)(nil))

// Read serves a read the kernel sends after all: where it did not take the
// view file as a backing file (passthrough turned out to be off).
func (h *viewFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.f.ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

var _ = (gofs.FileWriter)((*viewFile)(nil))

func (h *viewFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.f.WriteAt(data, off)
	return uint32(n), toErrno(err)
}

var _ = (gofs.FileReleaser)((*viewFile)(nil))

// Release closes the view file; the view writes back what it still holds
// when its last open closes.
func (h *viewFile) Release(ctx context.Context) syscall.Errno {
	if !h.n.v.view.track(h, false) {
		return 0 // the view closed it when the mount ended
	}
	return h.close()
}

func (h *viewFile) close() syscall.Errno {
	h.n.trackView(h.f, false)
	return toErrno(h.f.Close())
}

// syncMtime gives the vault entry the view's mtime. The view keeps its own
// (the kernel's writeback cache trusts it over the daemon's, also after a
// close), and writes it back only when it changed on the kernel's coarse
// clock, while the vault's filesystem stamps every write back: after
// writing back, the vault must agree, or a stat by name (the vault's) and
// one through an open file (the view's) would differ.
func (h *viewFile) syncMtime() {
	var st syscall.Stat_t
	if syscall.Fstat(int(h.f.Fd()), &st) == nil {
		h.n.setMtime(st.Mtim)
	}
}

var _ = (gofs.FileFlusher)((*viewFile)(nil))

// Flush makes close() report what writing back failed with (a full disk),
// as on a local filesystem: closing a duplicate of the view file makes the
// view's kernel write back the file's dirty pages and wait for them.
func (h *viewFile) Flush(ctx context.Context) syscall.Errno {
	fd, err := unix.FcntlInt(h.f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return toErrno(err)
	}
	if err := unix.Close(fd); err != nil {
		return toErrno(err)
	}
	h.syncMtime()
	return 0
}

var _ = (gofs.FileFsyncer)((*viewFile)(nil))

func (h *viewFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if flags&1 != 0 { // FUSE_FSYNC_FDATASYNC
		return toErrno(unix.Fdatasync(int(h.f.Fd())))
	}
	return toErrno(h.f.Sync())
}

var _ = (gofs.FileAllocater)((*viewFile)(nil))

func (h *viewFile) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	return toErrno(unix.Fallocate(int(h.f.Fd()), mode, int64(off), int64(size)))
}

var _ = (gofs.FileLseeker)((*viewFile)(nil))

func (h *viewFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(int(h.f.Fd()), int64(off), int(whence))
	return uint64(n), toErrno(err)
}
