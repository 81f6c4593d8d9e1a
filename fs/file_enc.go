package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"

	"cryptpt/crypt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// encFile is an open encrypted file. It encrypts and decrypts in the daemon
// and deliberately has no PassthroughFd method: the kernel can never be given
// the ciphertext fd of an encrypted file.
type encFile struct {
	n *node
	f *os.File // backing file, owned; opened O_RDWR unless read-only
	// locks forwards lock requests to the backing fd. It is a field, not an
	// embedded type, so none of LoopbackFile's other methods leak in.
	locks *gofs.LoopbackFile
	// userReads says that f is without O_NOATIME, as it is while it serves
	// the user's reads, so the backing filesystem updates atime as its
	// mount options say (relatime), as for any file; the daemon's own
	// reads (the header at open, the blocks a write or truncate
	// re-encrypts) go with O_NOATIME, as ext4 does not count a write as an
	// access. quiet says whether f may have O_NOATIME at all.
	userReads atomic.Bool
	quiet     bool
	// userNoatime: the user opened with O_NOATIME, so its reads keep it.
	userNoatime bool
	// inView says the handle serves the view (view.go): the writes and
	// allocations it gets are the view's write-back, whose writers the
	// user's mount checked and cleared set-id bits for (killRequest); the
	// view's own requests carry the daemon as caller.
	inView bool
}

// newEncFile makes a handle of f, which openBacking opened with O_NOATIME
// where it could. It takes ownership of f.
func newEncFile(n *node, f *os.File) *encFile {
	h := &encFile{n: n, f: f, locks: gofs.NewLoopbackFileFromOS(f)}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	h.quiet = err == nil && fl&unix.O_NOATIME != 0
	h.userReads.Store(!h.quiet)
	return h
}

// forUser lifts O_NOATIME before a read for the user. Readers hold
// contentMu shared; two of them may both lift it, to the same effect.
func (h *encFile) forUser() {
	if !h.userNoatime && !h.userReads.Load() && setFlag(h.f, unix.O_NOATIME, false) {
		h.userReads.Store(true)
	}
}

// forDaemon puts O_NOATIME back before the daemon reads for itself; the
// caller holds contentMu exclusively.
func (h *encFile) forDaemon() {
	if h.quiet && h.userReads.Load() && setFlag(h.f, unix.O_NOATIME, true) {
		h.userReads.Store(false)
	}
}

// setFlag sets or clears a file status flag (F_SETFL) of f.
func setFlag(f *os.File, flag int, on bool) bool {
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return false
	}
	if on {
		fl |= flag
	} else {
		fl &^= flag
	}
	_, err = unix.FcntlInt(f.Fd(), unix.F_SETFL, fl)
	return err == nil
}

func (h *encFile) backingFile() *os.File { return h.f }

// size returns the backing (ciphertext) size.
func (h *encFile) size() (int64, syscall.Errno) {
	st, err := h.f.Stat()
	if err != nil {
		return 0, toErrno(err)
	}
	return st.Size(), 0
}

// loadHeader reads and caches the file header. The caller holds
// n.contentMu exclusively.
func (n *node) loadHeader(f *os.File) syscall.Errno {
	st, err := f.Stat()
	if err != nil {
		return toErrno(err)
	}
	h, errno := n.readHeader(f, st.Size())
	n.hdr = h
	return errno
}

// readHeader reads the header of a file of the given ciphertext size; an
// empty file has none. A cut-off last block fails here, so that an open
// fails instead of the kernel trusting the size we report.
func (n *node) readHeader(f *os.File, size int64) (*crypt.Header, syscall.Errno) {
	h, err := crypt.ReadHeader(f, size)
	return h, n.contentErrno(f, err)
}

// store is an encrypted backing file as the crypt package stores content.
type store struct{ *os.File }

func (s store) Size() (int64, error) {
	st, err := s.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Reserve makes the vault's filesystem allocate the blocks a write will
// store, before it stores any: a full disk then fails the write with
// nothing written. Without it, a block written into a hole (a sparse file,
// or the writeback cache writing pages back out of order) could be cut off
// by ENOSPC half-way and fail authentication from then on. Filesystems
// that cannot reserve (no fallocate) go without.
func (s store) Reserve(off, length int64) error {
	err := unix.Fallocate(int(s.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, length)
	if err == unix.ENOSPC || err == unix.EDQUOT {
		return err
	}
	return nil
}

// encContent returns the plaintext view of n's encrypted backing file f,
// starting from the header n has cached. The caller holds contentMu; one
// that holds it exclusively keeps the header (n.hdr = Header()) for the
// next request. User xattrs are sealed to the file ID: an emptied file
// keeps its header for them, and a new ID re-seals them.
func (n *node) encContent(f *os.File) *crypt.File {
	c := crypt.NewFile(n.v.content, store{f}, n.hdr, n.v.format())
	c.Bound = func() bool { return hasUserXattrs(f) }
	c.Rebind = func(old, new *crypt.Header) error {
		if errno := n.resealXattrs(f, &old.ID, &new.ID); errno != 0 {
			return errno
		}
		return nil
	}
	return c
}

var _ = (gofs.FileReader)((*encFile)(nil))

func (h *encFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := h.n
	n.v.stats.encReads.Add(1)
	n.contentMu.RLock()
	defer n.contentMu.RUnlock()
	h.forUser()
	// A header read here (the file was written from outside this
	// handle's view) is not kept: contentMu is held shared.
	cnt, err := n.encContent(h.f).ReadAt(dest, off)
	if err != nil && err != io.EOF {
		return nil, n.contentErrno(h.f, err)
	}
	n.v.stats.encBytes.Add(int64(cnt))
	return fuse.ReadResultData(dest[:cnt]), 0
}

var _ = (gofs.FileWriter)((*encFile)(nil))

func (h *encFile) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n := h.n
	n.v.stats.encWrites.Add(1)
	n.contentMu.Lock()
	defer n.contentMu.Unlock()
	h.forDaemon()
	c := n.encContent(h.f)
	_, err := c.WriteAt(data, off)
	n.hdr = c.Header()
	if err != nil {
		var ue *crypt.UndoError
		if errors.As(err, &ue) {
			n.v.logf("cannot undo a failed write to %s: %v", n.v.entryName(n), ue.Undo)
		}
		return 0, n.contentErrno(h.f, err)
	}
	n.v.stats.encBytes.Add(int64(len(data)))
	n.afterWrite(ctx, h.f, !h.inView)
	return uint32(len(data)), 0
}

// backingState identifies a version of a backing file.
type backingState struct {
	size         int64
	mtime, ctime syscall.Timespec
	valid        bool
}

func stateOf(f *os.File) backingState {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil {
		return backingState{}
	}
	return stateFromStat(&st)
}

func stateFromStat(st *syscall.Stat_t) backingState {
	return backingState{size: st.Size, mtime: st.Mtim, ctime: st.Ctim, valid: true}
}

// keepCache records the backing file's state at an open and reports whether
// the kernel's cached pages are still good: nothing but this daemon has
// written the file since it last saw it. The caller holds contentMu.
func (n *node) keepCache(f *os.File) bool {
	now := stateOf(f)
	keep := now.valid && now == n.cached && !n.v.opts.SharedStorage
	n.cached = now
	return keep
}

// truncateEnc sets the plaintext size of an encrypted file.
func (n *node) truncateEnc(f *os.File, size int64) syscall.Errno {
	n.contentMu.Lock()
	defer n.contentMu.Unlock()
	return n.truncateEncLocked(f, size)
}

// truncateEncLocked is truncateEnc for a caller that holds contentMu.
func (n *node) truncateEncLocked(f *os.File, size int64) syscall.Errno {
	c := n.encContent(f)
	changed, err := c.Truncate(size)
	n.hdr = c.Header()
	unchanged := err == nil && !changed
	if unchanged {
		// Nothing to re-encrypt, but truncate(2) changes mtime and
		// ctime whatever the size, as on ext4.
		err = unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(f), []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}, 0)
	}
	if err == nil || unchanged || (changed && size == 0) {
		n.cached = stateOf(f)
	}
	return n.contentErrno(f, err)
}

var _ = (gofs.FileAllocater)((*encFile)(nil))

// Allocate honours plain fallocate (mode 0 or KEEP_SIZE): it reserves the
// ciphertext range, and without KEEP_SIZE extends the file with zeros.
// Punching holes or zeroing ranges would need re-encryption: EOPNOTSUPP.
func (h *encFile) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	if mode&^unix.FALLOC_FL_KEEP_SIZE != 0 {
		return syscall.EOPNOTSUPP
	}
	if !h.inView {
		clearSetID(ctx, h.f)
	}
	end := int64(off + size)
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
		// The size is read and extended under one hold of contentMu,
		// or a write that extends the file in between would be cut
		// back.
		h.n.contentMu.Lock()
		h.forDaemon()
		cur, errno := h.plainSize()
		if errno == 0 && end > cur {
			errno = h.n.truncateEncLocked(h.f, end)
		}
		h.n.contentMu.Unlock()
		if errno != 0 {
			return errno
		}
	}
	first := crypt.CipherOffset(crypt.BlockNo(int64(off)))
	last := crypt.CipherSize(end)
	if last <= first {
		return 0
	}
	return toErrno(unix.Fallocate(int(h.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, first, last-first))
}

func (h *encFile) plainSize() (int64, syscall.Errno) {
	cs, errno := h.size()
	if errno != 0 {
		return 0, errno
	}
	ps, err := crypt.PlainSize(cs)
	if err != nil {
		return 0, h.n.authFailed(h.f, err)
	}
	return ps, 0
}

var _ = (gofs.FileFsyncer)((*encFile)(nil))

func (h *encFile) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return toErrno(h.f.Sync())
}

var _ = (gofs.FileFlusher)((*encFile)(nil))

func (h *encFile) Flush(ctx context.Context) syscall.Errno { return h.locks.Flush(ctx) }

var _ = (gofs.FileReleaser)((*encFile)(nil))

func (h *encFile) Release(ctx context.Context) syscall.Errno {
	h.n.trackClose(h.f)
	return toErrno(h.f.Close())
}

var _ = (gofs.FileGetlker)((*encFile)(nil))

func (h *encFile) Getlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32, out *fuse.FileLock) syscall.Errno {
	return h.locks.Getlk(ctx, owner, lk, flags, out)
}

var _ = (gofs.FileSetlker)((*encFile)(nil))

func (h *encFile) Setlk(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.locks.Setlk(ctx, owner, lk, flags)
}

var _ = (gofs.FileSetlkwer)((*encFile)(nil))

func (h *encFile) Setlkw(ctx context.Context, owner uint64, lk *fuse.FileLock, flags uint32) syscall.Errno {
	return h.locks.Setlkw(ctx, owner, lk, flags)
}
