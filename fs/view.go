package fs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"cryptpt/internal/mountinfo"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The view: encrypted files through a writeback cache in a mixed mount.
//
// The kernel merges small writes in its page cache only on a connection
// with the writeback cache, and refuses passthrough on such a connection:
// a mount with plaintext areas (passthrough) would otherwise send every
// write() to an encrypted file to the daemon, one round trip per 4 KiB.
// So the daemon serves a second, inner FUSE connection, the view, with the
// writeback cache: one file per encrypted file the user's mount has open,
// named by a number, whose content is the decrypted content (encFile on
// the inner side). An encrypted open on the user's mount opens that file
// and hands it to the kernel as the passthrough backing file (viewFile):
// reads and writes then go from the user's mount straight into the view's
// page cache, and the view writes back merged pages to the daemon, which
// encrypts them into the vault. The vault's ciphertext never gets a
// backing fd; the view's files get one only as backing files of the
// user's mount.
//
// The view is mounted on a private temporary directory and detached at
// once (MNT_DETACH) after its root is opened: it is in no mount table and
// reachable by no path, only through that fd, which only this process
// holds (and it is not dumpable). It lives as long as the user's mount.

// view is the inner connection.
type view struct {
	v      *vault
	server *fuse.Server
	rootFd int    // O_PATH fd of the view's root, owned
	dev    uint64 // the view's device number, to check what it opens
	// requests counts what the kernel asks of the view.
	requests requestCounts
	// guard unsticks a daemon killed while waiting for the view
	// (viewguard.go).
	guard *viewGuard

	mu      sync.Mutex
	nodes   map[uint64]*node    // view file number -> node of the user's mount
	pending map[uint64]*os.File // backing file for the next open of a number
	files   map[*viewFile]bool  // open handles of the user's mount
	next    uint64
	rootIn  *gofs.Inode
}

// mountView mounts and detaches the view of v, or says why it cannot.
func mountView(v *vault) (*view, error) {
	dir, err := os.MkdirTemp(viewTempDir(), "cryptpt-view-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(dir)
	w := &view{v: v, rootFd: -1, nodes: map[uint64]*node{}, pending: map[uint64]*os.File{}, files: map[*viewFile]bool{}}
	root := &viewRoot{w: w}
	timeout := cacheTimeout
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      "cryptpt-view",
			Name:        mountinfo.Name,
			DirectMount: CanMount(),
			Logger:      v.log,
			MaxWrite:    maxRequest(),
			// Writeback: the point of the view. KILLPRIV_V2: else every
			// write costs a GETXATTR round trip here too; set-id bits
			// are cleared on the user's mount, which owns them.
			ExtraCapabilities: fuse.CAP_WRITEBACK_CACHE | capHandleKillprivV2,
		},
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		NullPermissions: true,
		Logger:          v.log,
	}
	before, err := fuseDeviceFds()
	if err != nil {
		return nil, err
	}
	server, err := fuse.NewServer(countingFS{gofs.NewNodeFS(root, opts), &w.requests}, dir, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return nil, err
	}
	w.server = server
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		var st unix.Stat_t
		if err = unix.Fstat(fd, &st); err == nil {
			w.dev = st.Dev
		}
	}
	if err != nil {
		server.Unmount()
		return nil, err
	}
	w.rootFd = fd
	dev, err := newFuseDeviceFd(before)
	if err == nil {
		w.guard, err = startViewGuard(dev, fd)
	}
	if err != nil {
		unix.Close(fd)
		server.Unmount()
		return nil, fmt.Errorf("start the view's guard: %w", err)
	}
	if err := tuneWriteback(w.dev); err != nil && v.opts.Debug {
		v.logf("view: the kernel's default share of dirty pages: %v", err)
	}
	if err := detach(dir); err != nil {
		w.guard.close()
		unix.Close(fd)
		server.Unmount()
		return nil, fmt.Errorf("detach the view: %w", err)
	}
	return w, nil
}

// viewTempDir is where the view is mounted for the moment before it is
// detached: the user's runtime directory, private to them.
func viewTempDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d
	}
	return os.TempDir()
}

// detach takes the view out of the mount tree; the root fd keeps it alive.
func detach(dir string) error {
	if CanMount() {
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u -z: %v: %s", err, out)
	}
	return nil
}

// close ends the view once the user's mount is gone. It closes the view
// files the daemon still holds (whose RELEASE the user's mount never sent)
// while the view still answers: a process exiting with a file of its own
// FUSE connection open would wait forever for its FLUSH. With the root fd
// closed too, the kernel drops the detached mount and the server stops;
// if something in the kernel still holds it, close gives up waiting after
// a while rather than never return.
func (w *view) close() {
	if w == nil || w.rootFd < 0 {
		return
	}
	w.mu.Lock()
	files := w.files
	w.files = map[*viewFile]bool{}
	w.mu.Unlock()
	for h := range files {
		h.close()
	}
	w.guard.close()
	unix.Close(w.rootFd)
	w.rootFd = -1
	done := make(chan struct{})
	go func() {
		w.server.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(viewStopTimeout):
		w.v.logf("the view did not stop within %v after the mount ended", viewStopTimeout)
	}
}

// viewStopTimeout bounds how long close waits for the view's server.
const viewStopTimeout = 10 * time.Second

// track records an open handle of the user's mount, and with open false
// forgets it and reports whether it was still recorded (not yet closed by
// close).
func (w *view) track(h *viewFile, open bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if open {
		w.files[h] = true
		return true
	}
	was := w.files[h]
	delete(w.files, h)
	return was
}

// number returns n's file number in the view, registering it.
func (w *view) number(n *node) uint64 {
	if id := n.viewID.Load(); id != 0 {
		return id
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if id := n.viewID.Load(); id != 0 {
		return id
	}
	w.next++
	w.nodes[w.next] = n
	n.viewID.Store(w.next)
	return w.next
}

func (w *view) node(id uint64) *node {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id]
}

// forget drops a view file the kernel forgot.
func (w *view) forget(id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := w.nodes[id]; n != nil {
		delete(w.nodes, id)
		n.viewID.CompareAndSwap(id, 0)
	}
}

// setPending hands the view the backing file the user's mount opened for
// the open of number id that follows (with the caller's rights, which the
// view's own request does not carry).
func (w *view) setPending(id uint64, f *os.File) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending[id] = f
}

// takePending returns and forgets the backing file set for id, or nil.
func (w *view) takePending(id uint64) *os.File {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.pending[id]
	delete(w.pending, id)
	return f
}

// open opens n's view file and returns it, checked to be a file of the
// view.
func (w *view) open(n *node, flags uint32) (*os.File, syscall.Errno) {
	id := w.number(n)
	// Read-write whatever the caller asked: the first open's backing file
	// serves every later open of the inode while any is open (go-fuse
	// registers one per inode), and the page cache reads for partial
	// writes anyway. The kernel checked the caller's access.
	oflags := int(flags&syscall.O_TRUNC) | unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW
	fd, err := unix.Openat(w.rootFd, strconv.FormatUint(id, 10), oflags, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != w.dev || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, syscall.EIO
	}
	return os.NewFile(uintptr(fd), "view:"+strconv.FormatUint(id, 10)), 0
}

// invalidate makes the view's kernel forget what it caches of n (pages
// and attributes): after the vault file changed other than through the
// view. Never call it from a request of the view itself.
func (w *view) invalidate(n *node) {
	if w == nil {
		return
	}
	if id := n.viewID.Load(); id != 0 {
		if in := w.inode(id); in != nil {
			in.NotifyContent(0, 0)
		}
	}
}

// invalidateAttrs makes the view's kernel ask again for n's attributes,
// keeping its pages: after a change of mode or owner in the vault.
func (w *view) invalidateAttrs(n *node) {
	if w == nil {
		return
	}
	if id := n.viewID.Load(); id != 0 {
		if in := w.inode(id); in != nil {
			in.NotifyContent(-1, 0)
		}
	}
}

// retire takes n out of the view after migrate converted it: a later
// encrypted open gets a new number, with nothing cached.
func (w *view) retire(n *node) {
	if w == nil {
		return
	}
	id := n.viewID.Swap(0)
	if id == 0 {
		return
	}
	w.forget(id)
	if in := w.inode(id); in != nil {
		in.NotifyContent(0, 0)
	}
}

// retireIdle retires n unless it is open in the view, atomically with
// respect to opens (openThroughView): two view files of one vault file at
// once would each cache a size of their own.
func (w *view) retireIdle(n *node) {
	if w == nil {
		return
	}
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	if !n.viewOpen() {
		w.retire(n)
	}
}

func (w *view) inode(id uint64) *gofs.Inode {
	root := w.rootInode()
	if root == nil {
		return nil
	}
	return root.GetChild(strconv.FormatUint(id, 10))
}

func (w *view) rootInode() *gofs.Inode {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rootIn
}

// viewRoot is the view's root directory: a file per number, found by name
// only (it lists nothing).
type viewRoot struct {
	gofs.Inode
	w *view
}

var _ = (gofs.NodeOnAdder)((*viewRoot)(nil))

func (r *viewRoot) OnAdd(ctx context.Context) {
	r.w.mu.Lock()
	r.w.rootIn = &r.Inode
	r.w.mu.Unlock()
}

var _ = (gofs.NodeLookuper)((*viewRoot)(nil))

func (r *viewRoot) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	id, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return nil, syscall.ENOENT
	}
	n := r.w.node(id)
	if n == nil {
		return nil, syscall.ENOENT
	}
	f := &viewNode{w: r.w, n: n, id: id}
	if errno := f.attrForLookup(ctx, out); errno != 0 {
		return nil, errno
	}
	return r.NewInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: id}), 0
}

// viewNode is the view's file for the encrypted file n of the user's mount.
type viewNode struct {
	gofs.Inode
	w  *view
	n  *node
	id uint64
}

// attrForLookup fills in the attributes of a lookup: from the backing file
// the user's mount is opening, which may not have its name in the mount's
// tree yet (a create), else from the vault.
func (f *viewNode) attrForLookup(ctx context.Context, out *fuse.EntryOut) syscall.Errno {
	f.w.mu.Lock()
	bf := f.w.pending[f.id]
	var st syscall.Stat_t
	var err error
	if bf != nil {
		err = syscall.Fstat(int(bf.Fd()), &st)
	}
	f.w.mu.Unlock()
	if bf != nil {
		if err != nil {
			return toErrno(err)
		}
		f.n.fillAttr(&st, &out.Attr)
		out.Ino = f.id
		return 0
	}
	var attr fuse.AttrOut
	if errno := f.Getattr(ctx, nil, &attr); errno != 0 {
		return errno
	}
	out.Attr = attr.Attr
	return 0
}

var _ = (gofs.NodeOnForgetter)((*viewNode)(nil))

func (f *viewNode) OnForget() { f.w.forget(f.id) }

var _ = (gofs.NodeGetattrer)((*viewNode)(nil))

// Getattr reports n's attributes (the plaintext size) under the view's
// number. In the writeback cache the view's kernel keeps size and times of
// its own while it holds dirty pages.
func (f *viewNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if errno := f.n.getattrVault(fh, out); errno != 0 {
		return errno
	}
	out.Ino = f.id
	return 0
}

var _ = (gofs.NodeSetattrer)((*viewNode)(nil))

// Setattr applies what the view's kernel writes back (sizes and times) to
// the vault; never through the view itself, which is waiting for it.
func (f *viewNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if f.n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	// Set-id bits are the user's mount's to clear (encFile.inView).
	rest := *in
	rest.Valid &^= fuse.FATTR_KILL_SUIDGID
	if killRequest(&rest) {
		return f.Getattr(ctx, fh, out)
	}
	errno := f.n.setattrVault(ctx, fh, &rest)
	if errno == 0 {
		if h, ok := fh.(*encFile); ok {
			// The view's own change (a size or times it writes back):
			// its cached pages stay good (keepCache).
			f.n.contentMu.Lock()
			f.n.cached = stateOf(h.f)
			f.n.contentMu.Unlock()
		}
		errno = f.Getattr(ctx, fh, out)
	}
	return f.n.timesOfGone(errno, in, out)
}

var _ = (gofs.NodeOpener)((*viewNode)(nil))

// Open serves the vault file decrypted (encFile): the one the user's
// mount opened for this open; else, for the kernel's own opens (it opens
// the backing file again for every passthrough open of the user's mount),
// the file already open opened again (reopenOpenFile), which is the same
// file however the names in the vault changed meanwhile; else one opened
// by name.
func (f *viewNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	bf := f.w.takePending(f.id)
	if bf == nil {
		bf = f.n.reopenOpenFile()
	}
	if bf == nil {
		var errno syscall.Errno
		if bf, errno = f.n.openBackingFor(f.n.backingAccess(flags)); errno != 0 {
			return nil, 0, errno
		}
	}
	h, fuseFlags, errno := f.n.encHandle(bf, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	h.inView = true
	return h, fuseFlags, 0
}
