package fs

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"cryptpt/crypt"
	"cryptpt/layout"

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
	// injected marks a plaintext-form entry found at a path the policy
	// encrypts: quarantined (see admit).
	injected atomic.Bool
	// known* are the backing size, mtime and ctime (ns) the daemon last
	// reported or wrote, for the watcher to tell outside changes from its
	// own (watch.go).
	knownSize, knownMtime, knownCtime atomic.Int64
	// wd is the inotify watch of a directory: 0 none yet, -1 none possible.
	// Guarded by the watcher's mu for writes.
	wd atomic.Int32

	// Directories: an O_PATH fd of the backing directory while it is in
	// the vault's bounded set (dirfds.go; guarded by v.dirs.mu), and the
	// directory IV.
	fd     int           // -1 when not open
	fdRefs int           // requests using fd; it is closed only at 0
	fdElem *list.Element // in v.dirs.lru while fd >= 0
	ivMu   sync.Mutex
	iv     *[16]byte
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
	// pin is an O_PATH fd of the vault entry whose inode number the node
	// shows, kept once the entry is replaced (an encrypted symlink
	// re-sealed by a rename), so that no new vault entry gets that number
	// while the mount still shows it; -1 without one (pinEntry, unpin).
	pin int
	// views are the view files of this node's open handles in a mixed
	// mount (view.go): sizes and times change through them. Guarded by
	// filesMu.
	views map[*os.File]struct{}
	// viewID is the node's file number in the view, 0 for none yet.
	viewID atomic.Uint64
	// viewMu serializes opens through the view, each of which hands the
	// view one backing file (view.pending).
	viewMu sync.Mutex
	// passthrough is the I/O mode of a plaintext file's open handles. The
	// kernel fails an open (EIO) that would mix passthrough and
	// daemon-served opens of one inode, so while any handle is open every
	// new one gets the same mode (trackOpenPlain). Guarded by filesMu.
	passthrough bool
}

func (n *node) trackOpen(f *os.File) {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	n.addFileLocked(f)
}

func (n *node) addFileLocked(f *os.File) {
	if n.files == nil {
		n.files = map[*os.File]struct{}{}
	}
	n.files[f] = struct{}{}
	n.v.openFiles.Add(1)
	n.v.touch()
}

// trackOpenPlain is trackOpen for a plaintext handle, and reports whether
// it uses kernel passthrough: the mode of the node's open handles, or, when
// it has none, what the file calls for now. What calls for the daemon (see
// needsDaemonIO) may change while handles are open; the kernel then still
// upholds the rules it is there for: it asks the daemon to clear set-id
// bits before a write to a set-id file (killRequest), and the backing
// filesystem drops file capabilities at every write.
func (n *node) trackOpenPlain(f *os.File) bool {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	if len(n.files) == 0 {
		n.passthrough = n.v.passthrough() && !n.quarantined() && !n.needsDaemonIO(f)
	}
	n.addFileLocked(f)
	return n.passthrough
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

// trackView records an open (or, with open false, closed) view file of n.
func (n *node) trackView(f *os.File, open bool) {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	if !open {
		delete(n.views, f)
		return
	}
	if n.views == nil {
		n.views = map[*os.File]struct{}{}
	}
	n.views[f] = struct{}{}
}

// viewOpen reports whether the node has an open handle in the view.
func (n *node) viewOpen() bool {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	return len(n.views) > 0
}

// dupView returns a duplicate of one of the node's open view files, or
// nil; the caller closes it.
func (n *node) dupView() *os.File {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	for f := range n.views {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		return os.NewFile(uintptr(fd), f.Name())
	}
	return nil
}

// reopenOpenFile opens the backing file of one of the node's open handles
// once more, as openBacking would (read-write, O_NOATIME for an encrypted
// file), through its /proc magic link: the same file whatever happened to
// its name. Where the daemon may not open it so, it returns a duplicate of
// the fd (which shares its flags); nil without open handles.
func (n *node) reopenOpenFile() *os.File {
	of := n.dupOpenFile()
	if of == nil {
		return nil
	}
	how := unix.O_RDWR | unix.O_CLOEXEC | unix.O_NONBLOCK
	if n.isEnc() {
		how |= unix.O_NOATIME
	}
	fd, err := unix.Open(fdPath(of), how, 0)
	if err == unix.EPERM {
		fd, err = unix.Open(fdPath(of), how&^unix.O_NOATIME, 0)
	}
	var a, b unix.Stat_t
	if err == nil && (unix.Fstat(fd, &a) != nil || unix.Fstat(int(of.Fd()), &b) != nil || a.Ino != b.Ino || a.Dev != b.Dev) {
		unix.Close(fd)
		err = unix.ESTALE
	}
	if err != nil {
		return of
	}
	name := of.Name()
	of.Close()
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
		unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	return os.NewFile(uintptr(fd), name)
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
	n := &node{v: v, fd: -1, pin: -1}
	n.enc.Store(enc)
	return n
}

func (n *node) isEnc() bool { return n.enc.Load() }

// quarantined reports whether writes to the entry are refused: a plaintext
// entry that may have been planted where the policy encrypts (admit).
func (n *node) quarantined() bool { return !n.isEnc() && n.injected.Load() }

// refuseQuarantined logs and returns EACCES for a write to a quarantined
// entry, or returns 0.
func (n *node) refuseQuarantined(what string) syscall.Errno {
	if !n.quarantined() {
		return 0
	}
	n.v.logf("refused: %s of plaintext entry %s at a path the policy encrypts (injected; \"cryptpt migrate\" encrypts it)", what, n.v.entryName(n))
	return syscall.EACCES
}

var _ = (gofs.NodeOnForgetter)((*node)(nil))

// OnForget closes the directory fd and the pin, and drops a kept listing;
// the kernel holds no reference any more.
func (n *node) OnForget() {
	n.v.watch.unwatch(n)
	n.forgetFd()
	n.unpin()
	n.v.listings.drop(n)
}

// maxPins bounds the pins (see node.pin) a mount holds, in fds.
const maxPins = 1024

// pinEntry keeps the vault entry at dirfd/name, which is about to be
// replaced, from giving its inode number to another entry while the node
// still shows it: the node's own number, once its entry is replaced, as
// the kernel and go-fuse know the node by it. It is held until the kernel
// forgets the node, or not at all past maxPins (a rename of more symlinks
// than that while all stay cached).
func (n *node) pinEntry(dirfd int, name string, ino uint64) {
	if n.StableAttr().Ino != ino {
		return
	}
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	if n.pin >= 0 || n.v.pins.Load() >= maxPins {
		return
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	n.pin = fd
	n.v.pins.Add(1)
}

func (n *node) unpin() {
	n.filesMu.Lock()
	defer n.filesMu.Unlock()
	if n.pin >= 0 {
		unix.Close(n.pin)
		n.pin = -1
		n.v.pins.Add(-1)
	}
}

// parent returns the node's parent directory and its plaintext name there.
func (n *node) parent() (*node, string, syscall.Errno) {
	name, p := n.Inode.Parent()
	if p == nil {
		return nil, "", syscall.ENOENT
	}
	return p.Operations().(*node), name, 0
}

// at returns where the node's backing entry is, for *at syscalls: a
// directory fd and a name in it, or, for the root, the root fd and "" to be
// used with AT_EMPTY_PATH; and the release of that fd (see dirfd), which
// the caller must call, also on error.
func (n *node) at() (dirfd int, name string, release func(), errno syscall.Errno) {
	if n.IsRoot() {
		return n.v.rootFd, "", func() {}, 0
	}
	p, plain, errno := n.parent()
	if errno != 0 {
		return -1, "", func() {}, errno
	}
	fd, release, errno := p.dirfd()
	if errno != 0 {
		return -1, "", func() {}, errno
	}
	stored, errno := p.storedName(plain, n.isEnc(), false)
	return fd, stored, release, errno
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

// checkName refuses a name that no entry can have: one longer than
// crypt.MaxNameLen bytes (ENAMETOOLONG; the kernel passes up to 1024), or
// one that would step outside the directory (EINVAL; never from the kernel).
func checkName(name string) syscall.Errno {
	if len(name) > crypt.MaxNameLen {
		return syscall.ENAMETOOLONG
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return syscall.EINVAL
	}
	return 0
}

// storedNameSidecar is storedName that also returns the long-name sidecar
// content (nil for short names and plaintext entries).
//
// A reserved name, one starting with crypt.ReservedPrefix or kept by a sync
// tool (syncToolName), has no plaintext form: EINVAL. So where entries are
// plaintext, giving an entry such a name is EINVAL (newStoredName) and
// looking one up finds nothing (ENOENT); where they are encrypted, it is an
// ordinary name (docs/format.md).
func (n *node) storedNameSidecar(name string, enc bool, create bool) (string, []byte, syscall.Errno) {
	if errno := checkName(name); errno != 0 {
		return "", nil, errno
	}
	if !enc {
		if strings.HasPrefix(name, crypt.ReservedPrefix) || syncToolName(n.IsRoot(), name) {
			return "", nil, syscall.EINVAL
		}
		return name, nil, 0
	}
	iv, errno := n.dirIV(create)
	if errno != 0 {
		return "", nil, errno
	}
	if copyStored, ok := n.conflictStoredName(iv, name); ok {
		// A sync tool's conflict copy (node_lookup.go): it shares its
		// base's sidecar.
		return copyStored, nil, 0
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
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return nil, errno
	}
	defer fdRelease()
	iv, err := layout.ReadDirIV(fd)
	if errors.Is(err, syscall.ENOENT) {
		// Only a plaintext directory that never held an encrypted entry
		// may lack one: every directory made through the mount has one.
		// A fresh IV anywhere else would silently re-key (orphan) the
		// entries named under the lost one.
		switch {
		case n.isEnc():
			err = errors.New("missing in an encrypted directory")
		case holdsEncryptedNames(fd):
			err = errors.New("missing in a directory that holds encrypted entries")
		case !create || n.v.opts.ReadOnly:
			return nil, syscall.ENOENT
		default:
			iv, err = layout.CreateDirIV(fd, nil)
		}
	}
	if err != nil {
		return nil, n.v.authFailed(n.v.entryName(n), "directory IV", fmt.Errorf("%w (restore %s from a backup; \"cryptpt fsck\" reports it)", err, crypt.DirIVName))
	}
	n.iv = iv
	return iv, 0
}

// holdsEncryptedNames reports whether the directory open at fd (O_PATH)
// lists any encrypted-form name.
func holdsEncryptedNames(fd int) bool {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true // cannot tell: do not make an IV
	}
	ents, err := readDirents(dfd)
	unix.Close(dfd)
	if err != nil {
		return true
	}
	for _, e := range ents {
		if layout.IsEncrypted(e.Name) {
			return true
		}
	}
	return false
}

// fillAttr converts a backing stat into what the mount shows. The inode
// number is the node's: an entry the daemon replaced in the vault (an
// encrypted symlink re-sealed by a rename, a migrated file) keeps the number
// the kernel knows it by, as go-fuse would insist anyway.
func (n *node) fillAttr(st *syscall.Stat_t, out *fuse.Attr) {
	n.saw(st)
	out.FromStat(st)
	if ino := n.StableAttr().Ino; ino != 0 {
		out.Ino = ino
	}
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
		out.Size = uint64(layout.SymlinkSize(st.Size))
	}
}

// newChild makes (or finds) the inode of a child. gen tells apart files
// that got a recycled inode number, so a new file never inherits the node,
// and with it the mode, of a deleted one.
func (n *node) newChild(ctx context.Context, enc bool, st *syscall.Stat_t, gen uint64, out *fuse.EntryOut) *gofs.Inode {
	child := n.v.newNode(enc)
	child.ino.Store(st.Ino)
	child.fillAttr(st, &out.Attr)
	out.SetEntryTimeout(n.entryTimeout())
	out.SetAttrTimeout(n.entryTimeout())
	ch := n.NewInode(ctx, child, gofs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: st.Ino, Gen: gen})
	// The kernel may already hold this file under another node (a hard
	// link): that node reported these attributes now.
	ch.Operations().(*node).saw(st)
	return ch
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

// chownToCaller gives a new entry what creating it through the kernel
// would: the caller as owner when the daemon runs as root (so files created
// through a root mount belong to whoever created them), the group of a
// set-group-ID parent (which the backing filesystem already gave it), and
// the permission bits the kernel asked for (mode, with the caller's umask
// applied), which the daemon's own umask and a chown by root (clearing
// set-id bits) may have changed. mode 0 is for symlinks: no mode to fix.
// Under a default ACL the backing filesystem's mode is the right one (the
// ACL's mask in the group bits; a chmod would widen it).
func (n *node) chownToCaller(ctx context.Context, dirfd int, name string, mode uint32) {
	var parent syscall.Stat_t
	sgid := syscall.Fstat(dirfd, &parent) == nil && parent.Mode&syscall.S_ISGID != 0
	if caller, ok := fuse.FromContext(ctx); ok && unix.Geteuid() == 0 {
		gid := int(caller.Gid)
		if sgid {
			gid = -1
		}
		unix.Fchownat(dirfd, name, int(caller.Uid), gid, unix.AT_SYMLINK_NOFOLLOW)
	}
	if mode == 0 {
		return
	}
	want := mode & 07777
	if mode&syscall.S_IFMT == syscall.S_IFDIR && sgid {
		want |= syscall.S_ISGID
	}
	var st syscall.Stat_t
	if fstatat(dirfd, name, &st) == nil && st.Mode&07777 != want && !hasDefaultACL(dirfd) {
		unix.Fchmodat(dirfd, name, want, unix.AT_SYMLINK_NOFOLLOW)
	}
}

// hasDefaultACL reports whether a backing directory (an O_PATH fd) has a
// default ACL, or whether that cannot be told.
func hasDefaultACL(dirfd int) bool {
	_, err := unix.Getxattr(fmt.Sprintf("/proc/self/fd/%d", dirfd), "system.posix_acl_default", nil)
	return err != unix.ENODATA && err != unix.EOPNOTSUPP
}
