package fs

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"cryptpt/crypt"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is one file, directory, symlink or special file of the mount.
//
// A node does not store its backing name: it derives it from its parent and
// its name in go-fuse's tree, and from its mode (enc). That keeps renames and
// hard links consistent without bookkeeping of our own.
type node struct {
	gofs.Inode
	v *vault

	// enc is the entry's stored mode: encrypted name and content. It only
	// changes when migrate converts the entry.
	enc atomic.Bool
	// ino is the backing inode number, to recognise the entry under its
	// name; migrate changes it for a converted file.
	ino atomic.Uint64

	// Directories: an O_PATH fd of the backing directory, opened on first
	// use and closed when the kernel forgets the node; and the directory IV.
	dirMu sync.Mutex
	fd    int // -1 when not open
	ivMu  sync.Mutex
	iv    *[16]byte
	// treeMu is held shared while entries are created in the directory and
	// exclusively while it is removed, so no entry is ever encrypted under a
	// directory IV that is being deleted.
	treeMu sync.RWMutex

	// Encrypted regular files: contentMu serializes writers against
	// readers so no reader sees a half-rewritten block; hdr caches the file
	// header (nil for an empty file or before first use).
	contentMu sync.RWMutex
	hdr       *crypt.Header
	// cached is the backing file's state when this daemon last opened or
	// wrote it: an open that finds it unchanged keeps the kernel's page
	// cache. Guarded by contentMu.
	cached backingState

	// files are the backing files of this node's open handles: migrate
	// refuses to replace an open file, and attribute changes reach a file
	// that has no name any more through them.
	filesMu sync.Mutex
	files   map[*os.File]struct{}
}

func (n *node) trackOpen(f *os.File) {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	if n.files == nil {
		n.files = map[*os.File]struct{}{}
	}
	n.files[f] = struct{}{}
	n.v.openFiles.Add(1)
	n.v.touch()
}

func (n *node) trackClose(f *os.File) {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	delete(n.files, f)
	n.v.openFiles.Add(-1)
	n.v.touch()
}

func (n *node) openCount() int {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	return len(n.files)
}

// dupOpenFile returns a duplicate of the backing fd of one of the node's
// open handles, or nil. A duplicate, because the handle may be released,
// and its fd number reused, while the caller works; the caller closes it.
func (n *node) dupOpenFile() *os.File {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	for f := range n.files {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		return os.NewFile(uintptr(fd), f.Name())
	}
	return nil
}

func (v *vault) newNode(enc bool) *node {
	n := &node{v: v, fd: -1}
	n.enc.Store(enc)
	return n
}

func (n *node) isEnc() bool { return n.enc.Load() }

var _ = (gofs.NodeOnForgetter)((*node)(nil))

// OnForget closes the directory fd; the kernel holds no reference any more.
func (n *node) OnForget() {
	n.dirMu.Lock()
	defer n.dirMu.Unlock()
	if n.fd >= 0 && n.fd != n.v.rootFd {
		unix.Close(n.fd)
	}
	n.fd = -1
}

// parent returns the node's parent directory and its plaintext name there.
func (n *node) parent() (*node, string, syscall.Errno) {
	name, p := n.Inode.Parent()
	if p == nil {
		return nil, "", syscall.ENOENT
	}
	return p.Operations().(*node), name, 0
}

// dirfd returns the O_PATH fd of this directory's backing directory. The fd
// stays owned by the node.
func (n *node) dirfd() (int, syscall.Errno) {
	if n.IsRoot() {
		return n.v.rootFd, 0
	}
	n.dirMu.Lock()
	defer n.dirMu.Unlock()
	if n.fd >= 0 {
		return n.fd, 0
	}
	p, name, errno := n.parent()
	if errno != 0 {
		return -1, errno
	}
	pfd, errno := p.dirfd()
	if errno != 0 {
		return -1, errno
	}
	stored, errno := p.storedName(name, n.isEnc(), false)
	if errno != 0 {
		return -1, errno
	}
	fd, err := unix.Openat(pfd, stored, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, gofs.ToErrno(err)
	}
	n.fd = fd
	return fd, 0
}

// at returns where the node's backing entry is, for *at syscalls: a
// directory fd and a name in it, or, for the root, the root fd and "" to be
// used with AT_EMPTY_PATH.
func (n *node) at() (dirfd int, name string, errno syscall.Errno) {
	if n.IsRoot() {
		return n.v.rootFd, "", 0
	}
	p, plain, errno := n.parent()
	if errno != 0 {
		return -1, "", errno
	}
	fd, errno := p.dirfd()
	if errno != 0 {
		return -1, "", errno
	}
	stored, errno := p.storedName(plain, n.isEnc(), false)
	return fd, stored, errno
}

// atFlags returns AT_EMPTY_PATH for the root's "" name, else nofollow.
func atFlags(name string) int {
	if name == "" {
		return unix.AT_EMPTY_PATH
	}
	return unix.AT_SYMLINK_NOFOLLOW
}

// relPath is the node's path relative to the mount root, as the policy sees it.
func (n *node) relPath() string {
	return n.Path(nil)
}

func (n *node) childPath(name string) string {
	if n.IsRoot() {
		return name
	}
	return n.relPath() + "/" + name
}

// storedName translates a plaintext name in this directory to its name in
// the vault. With create set, a missing directory IV is made.
func (n *node) storedName(name string, enc bool, create bool) (string, syscall.Errno) {
	stored, _, errno := n.storedNameSidecar(name, enc, create)
	return stored, errno
}

// storedNameSidecar is storedName that also returns the long-name sidecar
// content (nil for short names and plaintext entries).
func (n *node) storedNameSidecar(name string, enc bool, create bool) (string, []byte, syscall.Errno) {
	if len(name) > 255 {
		return "", nil, syscall.ENAMETOOLONG
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		// Never from the kernel; refused so no caller can step outside
		// the directory.
		return "", nil, syscall.EINVAL
	}
	if !enc {
		if strings.HasPrefix(name, crypt.ReservedPrefix) {
			return "", nil, syscall.EINVAL
		}
		return name, nil, 0
	}
	iv, errno := n.dirIV(create)
	if errno != 0 {
		return "", nil, errno
	}
	stored, sidecar, err := n.v.names.Encrypt(iv, name)
	if err != nil {
		return "", nil, syscall.EINVAL
	}
	return stored, sidecar, 0
}

// dirIV returns the directory's name IV, reading it from the vault on first
// use. With create set it makes one when the directory has none yet (a
// plaintext directory that never held an encrypted entry).
func (n *node) dirIV(create bool) (*[16]byte, syscall.Errno) {
	n.ivMu.Lock()
	defer n.ivMu.Unlock()
	if n.iv != nil {
		return n.iv, 0
	}
	fd, errno := n.dirfd()
	if errno != 0 {
		return nil, errno
	}
	iv, err := readDirIV(fd)
	if errors.Is(err, syscall.ENOENT) && create && !n.v.opts.ReadOnly {
		iv, err = createDirIV(fd)
	}
	if err != nil {
		if !errors.Is(err, syscall.ENOENT) {
			n.v.logf("directory IV of %s unreadable: %v", n.v.entryName(n), err)
			return nil, syscall.EIO
		}
		return nil, syscall.ENOENT
	}
	n.iv = iv
	return iv, 0
}

// fillAttr converts a backing stat into what the mount shows.
func (n *node) fillAttr(st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	if !n.isEnc() {
		return
	}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		size, err := crypt.PlainSize(st.Size)
		if err != nil {
			// Reads will fail authentication; show what can be read.
			size = 0
		}
		out.Size = uint64(size)
	case syscall.S_IFLNK:
		raw := base64.RawURLEncoding.DecodedLen(int(st.Size)) - (crypt.NonceSize + crypt.TagSize)
		if raw < 0 {
			raw = 0
		}
		out.Size = uint64(raw)
	}
}

// newChild makes (or finds) the inode of a child. gen tells apart files
// that got a recycled inode number, so a new file never inherits the node,
// and with it the mode, of a deleted one.
func (n *node) newChild(ctx context.Context, enc bool, st *syscall.Stat_t, gen uint64, out *fuse.EntryOut) *gofs.Inode {
	child := n.v.newNode(enc)
	child.ino.Store(st.Ino)
	child.fillAttr(st, &out.Attr)
	return n.NewInode(ctx, child, gofs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: st.Ino, Gen: gen})
}

// childNode returns the node of a child already known to the kernel.
func (n *node) childNode(name string) *node {
	ch := n.GetChild(name)
	if ch == nil {
		return nil
	}
	return ch.Operations().(*node)
}

// statGen stats an entry and returns its generation: the birth time in
// nanoseconds, or 1 where the filesystem keeps none.
func statGen(dirfd int, name string, st *syscall.Stat_t) (uint64, error) {
	var sx unix.Statx_t
	if err := unix.Statx(dirfd, name, atFlags(name), unix.STATX_BASIC_STATS|unix.STATX_BTIME, &sx); err != nil {
		return 0, err
	}
	*st = syscall.Stat_t{
		Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino, Nlink: uint64(sx.Nlink),
		Mode: uint32(sx.Mode), Uid: sx.Uid, Gid: sx.Gid,
		Rdev: unix.Mkdev(sx.Rdev_major, sx.Rdev_minor), Size: int64(sx.Size),
		Blksize: int64(sx.Blksize), Blocks: int64(sx.Blocks),
		Atim: syscall.Timespec{Sec: sx.Atime.Sec, Nsec: int64(sx.Atime.Nsec)},
		Mtim: syscall.Timespec{Sec: sx.Mtime.Sec, Nsec: int64(sx.Mtime.Nsec)},
		Ctim: syscall.Timespec{Sec: sx.Ctime.Sec, Nsec: int64(sx.Ctime.Nsec)},
	}
	if sx.Mask&unix.STATX_BTIME == 0 {
		return 1, nil
	}
	return uint64(sx.Btime.Sec)*1e9 + uint64(sx.Btime.Nsec), nil
}

func fstatat(dirfd int, name string, st *syscall.Stat_t) error {
	return fstatatFlags(dirfd, name, atFlags(name), st)
}

func fstatatFlags(dirfd int, name string, flags int, st *syscall.Stat_t) error {
	var ust unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &ust, flags); err != nil {
		return err
	}
	*st = statFromUnix(&ust)
	return nil
}

func statFromUnix(u *unix.Stat_t) syscall.Stat_t {
	return syscall.Stat_t{
		Dev: u.Dev, Ino: u.Ino, Nlink: u.Nlink, Mode: u.Mode, Uid: u.Uid, Gid: u.Gid,
		Rdev: u.Rdev, Size: u.Size, Blksize: u.Blksize, Blocks: u.Blocks,
		Atim: syscall.Timespec(u.Atim), Mtim: syscall.Timespec(u.Mtim), Ctim: syscall.Timespec(u.Ctim),
	}
}

// callerOwns chowns a new entry to the caller when the daemon runs as root,
// so files created through a root mount belong to whoever created them.
func (n *node) chownToCaller(ctx context.Context, dirfd int, name string) {
	if unix.Geteuid() != 0 {
		return
	}
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return
	}
	unix.Fchownat(dirfd, name, int(caller.Uid), int(caller.Gid), unix.AT_SYMLINK_NOFOLLOW)
}
