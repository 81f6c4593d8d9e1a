package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// backingAccess picks how to open a backing file. Encrypted files need read
// access for read-modify-write, and a plaintext backing fd registered for
// passthrough is shared by every later open of the inode, so both ask for
// read-write whenever the mount is writable.
func (n *node) backingAccess(flags uint32) (want int, fallback int) {
	if n.v.opts.ReadOnly {
		return unix.O_RDONLY, -1
	}
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		return unix.O_RDWR, unix.O_RDONLY
	}
	return unix.O_RDWR, -1
}

var _ = (gofs.NodeOpener)((*node)(nil))

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	writes := flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0
	if n.v.opts.ReadOnly && writes {
		return nil, 0, syscall.EROFS
	}
	want, fallback := n.backingAccess(flags)
	if n.quarantined() {
		if writes {
			return nil, 0, n.refuseQuarantined("open for writing")
		}
		want, fallback = unix.O_RDONLY, -1
	}
	f, errno := n.openBackingFor(want, fallback)
	if errno != 0 {
		return nil, 0, errno
	}
	return n.handle(ctx, f, flags)
}

// openBackingFor opens the backing file with access want, else fallback
// (-1 for none), else as its owner (openBackingOwner).
func (n *node) openBackingFor(want, fallback int) (*os.File, syscall.Errno) {
	f, errno := n.openBacking(want)
	if (errno == syscall.EACCES || errno == syscall.EROFS || errno == syscall.EPERM) && fallback >= 0 {
		f, errno = n.openBacking(fallback)
	}
	if errno == syscall.EACCES {
		f, errno = n.openBackingOwner(want)
	}
	return f, errno
}

// handle wraps an opened backing file in the handle type the entry's mode
// calls for, after applying O_TRUNC. It takes ownership of f.
func (n *node) handle(ctx context.Context, f *os.File, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		clearSetID(ctx, f)
	}
	// A FLUSH at close does nothing here for a file opened read-only
	// (locks are the kernel's; nothing to write back): spare the round
	// trip, one of four per file for grep -r. The kernel still flushes
	// where it keeps a writeback cache.
	var fuseFlags uint32
	if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
		fuseFlags = fuse.FOPEN_NOFLUSH
	}
	if n.isEnc() {
		if w := n.v.view; w != nil {
			return n.openThroughView(w, f, flags, fuseFlags)
		}
		h, cacheFlags, errno := n.encHandle(f, flags)
		if errno != 0 {
			return nil, 0, errno
		}
		return h, fuseFlags | cacheFlags, 0
	}
	if flags&syscall.O_TRUNC != 0 {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, 0, toErrno(err)
		}
	}
	pf := newPlainFile(n, f)
	if n.trackOpenPlain(f) {
		n.v.stats.plainOpensPassthrough.Add(1)
		return &passthroughFile{pf}, fuseFlags, 0
	}
	n.v.stats.plainOpensDaemon.Add(1)
	// Served by the daemon: keep the page cache while unchanged, as for
	// encrypted files.
	n.contentMu.Lock()
	if n.keepCache(f) {
		fuseFlags |= fuse.FOPEN_KEEP_CACHE
	}
	n.contentMu.Unlock()
	return pf, fuseFlags, 0
}

// encHandle serves the encrypted backing file f decrypted by the daemon,
// and says whether the kernel may keep its cached pages. It takes
// ownership of f.
func (n *node) encHandle(f *os.File, flags uint32) (*encFile, uint32, syscall.Errno) {
	var fuseFlags uint32
	var errno syscall.Errno
	if flags&syscall.O_TRUNC != 0 {
		errno = n.truncateEnc(f, 0)
	}
	if errno == 0 {
		// No passthrough of ciphertext, so the kernel may keep the page
		// cache across opens while nobody else wrote the file.
		n.contentMu.Lock()
		if errno = n.loadHeader(f); errno == 0 && n.keepCache(f) {
			fuseFlags |= fuse.FOPEN_KEEP_CACHE
		}
		n.contentMu.Unlock()
	}
	if errno != 0 {
		f.Close()
		return nil, 0, errno
	}
	n.v.stats.encOpens.Add(1)
	n.trackOpen(f)
	h := newEncFile(n, f)
	// The kernel let the caller ask (owner or CAP_FOWNER).
	h.userNoatime = flags&syscall.O_NOATIME != 0
	return h, fuseFlags, 0
}

// openThroughView opens the encrypted file, whose backing file f the
// caller opened, through the view (view.go) and returns a viewFile. It
// takes ownership of f, which the view's handle gets.
func (n *node) openThroughView(w *view, f *os.File, flags, fuseFlags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.viewMu.Lock()
	id := w.number(n)
	w.setPending(id, f)
	vf, errno := w.open(n, flags)
	if left := w.takePending(id); left != nil {
		left.Close() // the view had it cached and opened no backing file
	}
	if errno == 0 {
		// Under viewMu, so that the watcher never retires the node
		// between the open and this (view.retireIdle).
		n.trackView(vf, true)
	}
	n.viewMu.Unlock()
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		// FLUSH brings the view's write-back errors to close().
		fuseFlags &^= fuse.FOPEN_NOFLUSH
	}
	h := &viewFile{n: n, f: vf}
	w.track(h, true)
	return h, fuseFlags, 0
}

var _ = (gofs.NodeCreater)((*node)(nil))

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	n.treeMu.RLock()
	defer n.treeMu.RUnlock()
	enc := n.encryptNew(name, false)
	fd, stored, release, errno := n.prepareNew(name, enc)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer release()
	oflags := unix.O_CREAT | unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC | int(flags&syscall.O_EXCL)
	bfd, err := unix.Openat(fd, stored, oflags, mode)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	f := os.NewFile(uintptr(bfd), stored)
	n.chownToCaller(ctx, fd, stored, mode|syscall.S_IFREG)
	var st syscall.Stat_t
	gen, err := statGen(bfd, "", &st)
	if err != nil {
		f.Close()
		return nil, nil, 0, toErrno(err)
	}
	if st.Size == 0 {
		// Just created (or empty anyway): O_TRUNC has nothing to do, and
		// doing it would move mtime past what we report.
		flags &^= syscall.O_TRUNC
	}
	ch := n.newChild(ctx, enc, &st, gen, out)
	fh, fuseFlags, errno := ch.Operations().(*node).handle(ctx, f, flags)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		// Report the attributes after truncation.
		if err := syscall.Fstat(bfd, &st); err == nil {
			ch.Operations().(*node).fillAttr(&st, &out.Attr)
		}
	}
	return ch, fh, fuseFlags, 0
}
