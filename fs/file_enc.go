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
// empty file has none.
func (n *node) readHeader(f *os.File, size int64) (*crypt.Header, syscall.Errno) {
	if size == 0 {
		return nil, 0
	}
	if _, err := crypt.PlainSize(size); err != nil {
		// A cut-off last block: fail the open, or the kernel would trust
		// the size we report and never ask for the broken block.
		return nil, n.authFailed(f, err)
	}
	buf := make([]byte, crypt.HeaderSize)
	if _, err := f.ReadAt(buf, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, n.authFailed(f, errors.New("file shorter than its header"))
		}
		return nil, toErrno(err)
	}
	h, err := crypt.ParseHeader(buf)
	if err != nil {
		return nil, n.authFailed(f, err)
	}
	return &h, 0
}

var _ = (gofs.FileReader)((*encFile)(nil))

func (h *encFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := h.n
	n.v.stats.encReads.Add(1)
	n.contentMu.RLock()
	defer n.contentMu.RUnlock()
	h.forUser()
	size, errno := h.size()
	if errno != 0 {
		return nil, errno
	}
	hdr := n.hdr
	if hdr == nil && size > 0 {
		// Written from outside this handle's view; read without caching.
		if hdr, errno = n.readHeader(h.f, size); errno != 0 {
			return nil, errno
		}
	}
	if size == 0 {
		return fuse.ReadResultData(nil), 0
	}
	cnt, err := n.v.content.ReadAt(h.f, hdr, dest, off, size)
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
	size, errno := h.size()
	if errno != 0 {
		return 0, errno
	}
	oldSize := size
	if size <= crypt.HeaderSize {
		if errno := n.freshHeader(h.f, size); errno != 0 {
			return 0, errno
		}
		size = 0
	} else if n.hdr == nil {
		if errno := n.loadHeader(h.f); errno != 0 {
			return 0, errno
		}
	}
	if errno := h.reserve(off, int64(len(data))); errno != 0 {
		return 0, errno
	}
	tail := h.saveTail(size, off+int64(len(data)))
	if _, err := n.v.content.WriteAt(h.f, n.hdr, data, off, size); err != nil {
		if !isAuthFailure(err) {
			// Nothing was written when the old blocks failed.
			h.restoreTail(oldSize, tail)
		}
		return 0, n.contentErrno(h.f, err)
	}
	n.v.stats.encBytes.Add(int64(len(data)))
	n.afterWrite(ctx, h.f, !h.inView)
	return uint32(len(data)), 0
}

// freshHeader gives a file without data blocks (cipherSize 0, or a header
// alone) a new random file ID before its first data is written, so that no
// block of another file, or of an earlier content, can ever be replayed
// into it: an attacker who copies another file's header into an empty one
// must not get the user to write blocks under that file's ID. The caller
// writes the header with the data (cipherSize 0 for crypt) and holds
// n.contentMu.
func (n *node) freshHeader(f *os.File, cipherSize int64) syscall.Errno {
	var old *crypt.Header
	if cipherSize == crypt.HeaderSize {
		old, _ = n.readHeader(f, cipherSize)
	}
	hdr, err := crypt.NewHeader(n.v.format())
	if err != nil {
		return toErrno(err)
	}
	if old != nil && old.Version != crypt.FormatV1 {
		if errno := n.resealXattrs(f, &old.ID, &hdr.ID); errno != 0 {
			return errno
		}
	}
	n.hdr = &hdr
	return 0
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

// reserve makes the vault's filesystem allocate the blocks a write of
// length bytes at plaintext offset off will store, before it stores any:
// a full disk then fails the write with nothing written. Without it, a
// block written into a hole (a sparse file, or the writeback cache writing
// pages back out of order) could be cut off by ENOSPC half-way and fail
// authentication from then on. Filesystems that cannot reserve (no
// fallocate) go without.
func (h *encFile) reserve(off, length int64) syscall.Errno {
	start := crypt.CipherOffset(crypt.BlockNo(off))
	end := crypt.CipherSize(off + length)
	err := unix.Fallocate(int(h.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, start, end-start)
	if err == unix.ENOSPC || err == unix.EDQUOT {
		return toErrno(err)
	}
	return 0
}

// saveTail keeps a copy of the partial last block before a write that
// extends the file: the write re-encrypts it padded, and if the write then
// fails (a full disk) restoreTail puts the file back as it was, instead of
// leaving a torn block that would fail authentication.
func (h *encFile) saveTail(cipherSize, end int64) []byte {
	if cipherSize <= crypt.HeaderSize {
		return nil
	}
	plain, err := crypt.PlainSize(cipherSize)
	if err != nil || end <= plain || plain%crypt.BlockSize == 0 {
		return nil
	}
	start := crypt.CipherOffset(crypt.BlockNo(plain))
	tail := make([]byte, cipherSize-start)
	if _, err := h.f.ReadAt(tail, start); err != nil {
		return nil
	}
	return tail
}

// restoreTail undoes a failed write: it cuts the file to its old size and
// writes back the old last block. Both only rewrite space the file had.
func (h *encFile) restoreTail(cipherSize int64, tail []byte) {
	if err := h.f.Truncate(cipherSize); err != nil {
		h.n.v.logf("cannot undo a failed write to %s: %v", h.n.v.entryName(h.n), err)
		return
	}
	if tail != nil {
		if _, err := h.f.WriteAt(tail, cipherSize-int64(len(tail))); err != nil {
			h.n.v.logf("cannot undo a failed write to %s: %v", h.n.v.entryName(h.n), err)
		}
	}
}

// truncateEnc sets the plaintext size of an encrypted file.
func (n *node) truncateEnc(f *os.File, size int64) syscall.Errno {
	n.contentMu.Lock()
	defer n.contentMu.Unlock()
	return n.truncateEncLocked(f, size)
}

// truncateEncLocked is truncateEnc for a caller that holds contentMu.
func (n *node) truncateEncLocked(f *os.File, size int64) syscall.Errno {
	st, err := f.Stat()
	if err != nil {
		return toErrno(err)
	}
	cs := st.Size()
	if ps, err := crypt.PlainSize(cs); err == nil && cs > crypt.HeaderSize && ps == size {
		// Nothing to re-encrypt, but truncate(2) changes mtime and
		// ctime whatever the size, as on ext4.
		err := unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(f), []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}, 0)
		n.cached = stateOf(f)
		return toErrno(err)
	}
	if size == 0 {
		// Sealed xattrs are bound to the file ID: keep the header for
		// them. The next write gives the file a fresh ID all the same.
		keep := int64(0)
		if cs >= crypt.HeaderSize && hasUserXattrs(f) {
			keep = crypt.HeaderSize
		} else {
			n.hdr = nil
		}
		err := f.Truncate(keep)
		n.cached = stateOf(f)
		return toErrno(err)
	}
	if cs <= crypt.HeaderSize {
		if errno := n.freshHeader(f, cs); errno != 0 {
			return errno
		}
		if _, err := f.WriteAt(n.hdr.Marshal(), 0); err != nil {
			return toErrno(err)
		}
		cs = crypt.HeaderSize
	} else if n.hdr == nil {
		if errno := n.loadHeader(f); errno != 0 {
			return errno
		}
	}
	if _, err := n.v.content.Truncate(f, n.hdr, size, cs); err != nil {
		return n.contentErrno(f, err)
	}
	n.cached = stateOf(f)
	return 0
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
