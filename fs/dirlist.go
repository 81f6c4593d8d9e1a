package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directory listings: the kernel caches them (cachingFS answers OPENDIR
// with ENOSYS) and asks for them with file handle 0. A listing outlives the
// handle made for one READDIR(PLUS) request (dirListing), so a large
// directory read in many requests is listed from the vault once, not once
// per request.

// dirListing is one listing of a directory: the entries as the mount shows
// them, offsets being positions in it, and where each is in the vault.
type dirListing struct {
	entries []fuse.DirEntry
	sources []entrySource // sources[i] for entries[i]; zero for . and ..
	// gen is the directory's change count when it was listed; a listing
	// of an older generation is not reused.
	gen uint64
	// backing is the backing directory's state when it was listed, to
	// notice changes made to the vault behind the daemon's back.
	backing backingState
}

// entrySource is where a listed entry is in the vault.
type entrySource struct {
	stored string
	enc    bool
}

var _ = (gofs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle gives each listing a dirHandle.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{n: n}, 0, 0
}

// dirHandle reads one directory listing; go-fuse serializes its calls.
type dirHandle struct {
	n    *node
	list *dirListing
	pos  int // index of the next entry
}

var _ = (gofs.FileReaddirenter)((*dirHandle)(nil))

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.list == nil {
		if errno := h.Seekdir(ctx, 0); errno != 0 {
			return nil, errno
		}
	}
	if h.pos >= len(h.list.entries) {
		return nil, 0
	}
	e := h.list.entries[h.pos]
	e.Off = uint64(h.pos + 1)
	h.pos++
	return &e, 0
}

var _ = (gofs.FileSeekdirer)((*dirHandle)(nil))

// Seekdir starts at offset off: a fresh listing at 0, else the listing that
// handed out that offset, if it is still the directory's current one.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	list, errno := h.n.listing(off != 0)
	if errno != 0 {
		return errno
	}
	h.list, h.pos = list, min(int(off), len(list.entries))
	return 0
}

var _ = (gofs.FileLookuper)((*dirHandle)(nil))

// Lookup serves READDIRPLUS for the entry Readdirent returned last, whose
// place in the vault the listing already knows: no name to encrypt again,
// no second form to try.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if h.list != nil && h.pos > 0 && h.list.entries[h.pos-1].Name == name {
		if src := h.list.sources[h.pos-1]; src.stored != "" {
			return h.n.lookupStored(ctx, name, src.stored, src.enc, out)
		}
	}
	return h.n.Lookup(ctx, name, out)
}

var _ = (gofs.FileFsyncdirer)((*dirHandle)(nil))

func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return h.n.Fsync(ctx, nil, flags)
}

// dirListings keeps the most recent listings, a few per mount: enough for
// the kernel to read a large directory in many requests from one listing,
// bounded so a walk over a huge tree holds no listing of every directory.
type dirListings struct {
	mu    sync.Mutex
	lists map[*node]*dirListing
	order []*node // oldest first
}

const maxListings = 32

func (d *dirListings) get(n *node) *dirListing {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lists[n]
}

func (d *dirListings) put(n *node, l *dirListing) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lists == nil {
		d.lists = map[*node]*dirListing{}
	}
	if _, ok := d.lists[n]; !ok {
		d.order = append(d.order, n)
	}
	d.lists[n] = l
	for len(d.order) > maxListings {
		delete(d.lists, d.order[0])
		d.order = d.order[1:]
	}
}

func (d *dirListings) drop(n *node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.lists[n]; !ok {
		return
	}
	delete(d.lists, n)
	for i, o := range d.order {
		if o == n {
			d.order = append(d.order[:i], d.order[i+1:]...)
			break
		}
	}
}
