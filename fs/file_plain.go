package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// plainFile is an open plaintext file served by the daemon: used when kernel
// passthrough is unavailable, turned off, or refused for this file. No
// crypto is involved; bytes go straight to the backing file.
type plainFile struct {
	n  *node
	f  *os.File // owned
	lf *gofs.LoopbackFile
}

func newPlainFile(n *node, f *os.File) *plainFile {
	return &plainFile{n: n, f: f, lf: gofs.NewLoopbackFileFromOS(f)}
}

func (h *plainFile) backingFile() *os.File { return h.f }

var _ = (gofs.FileReader)((*plainFile)(nil))

func (h *plainFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.n.v.stats.plainReads.Add(1)
	res, errno := h.lf.Read(ctx, dest, off)
	if errno == 0 {
		h.n.v.stats.plainBytes.Add(int64(res.Size()))
	}
	return res, errno
}

var _ = (gofs.FileWriter)((*plainFile)(nil))

func (h *plainFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.v.stats.plainWrites.Add(1)
	h.n.contentMu.Lock()
	defer h.n.contentMu.Unlock()
	n, errno := h.lf.Write(ctx, data, off)
	h.n.v.stats.plainBytes.Add(int64(n))
	h.n.afterWrite(ctx, h.f, true)
	return n, errno
}

var _ = (gofs.FileFsyncer)((*plainFile)(nil))

func (h *plainFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.lf.Fsync(ctx, flags)
}

var _ = (gofs.FileFlusher)((*plainFile)(nil))

func (h *plainFile) Flush(ctx context.Context) syscall.Errno { return h.lf.Flush(ctx) }

var _ = (gofs.FileReleaser)((*plainFile)(nil))

func (h *plainFile) Release(ctx context.Context) syscall.Errno {
	h.n.trackClose(h.f)
	return h.lf.Release(ctx)
}

var _ = (gofs.FileAllocater)((*plainFile)(nil))

func (h *plainFile) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	// Like a write, every fallocate mode clears set-id bits (killpriv.go).
	clearSetID(ctx, h.f)
	return h.lf.Allocate(ctx, off, size, mode)
}

var _ = (gofs.FileLseeker)((*plainFile)(nil))

func (h *plainFile) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return h.lf.Lseek(ctx, off, whence)
}

var _ = (gofs.FileGetlker)((*plainFile)(nil))

func (h *plainFile) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return h.lf.Getlk(ctx, owner, lk, flags, out)
}

var _ = (gofs.FileSetlker)((*plainFile)(nil))

func (h *plainFile) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlk(ctx, owner, lk, flags)
}

var _ = (gofs.FileSetlkwer)((*plainFile)(nil))

func (h *plainFile) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.lf.Setlkw(ctx, owner, lk, flags)
}

// passthroughFile is a plaintext file whose reads and writes the kernel
// does itself on the backing fd. The daemon methods of plainFile remain for
// the case where the kernel declines.
type passthroughFile struct {
	*plainFile
}

var _ = (gofs.FilePassthroughFder)((*passthroughFile)(nil))

// PassthroughFd hands the backing fd to the kernel. go-fuse asks only for
// the first open of an inode and shares the registration among later ones.
func (h *passthroughFile) PassthroughFd() (int, bool) {
	return int(h.f.Fd()), true
}
