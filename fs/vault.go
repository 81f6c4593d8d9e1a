package fs

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cryptpt/config"
	"cryptpt/crypt"
	"cryptpt/internal/mountinfo"

	"golang.org/x/sys/unix"
)

// Options configure one mount.
type Options struct {
	// Backing is the vault directory.
	Backing string
	// Keys are derived from the vault's master key.
	Keys *crypt.Keys
	// Policy decides the mode of new entries.
	Policy *config.Policy
	// ReadOnly mounts the vault read-only.
	ReadOnly bool
	// AllowOther lets other users in, with kernel permission checks.
	AllowOther bool
	// NoPassthrough serves plaintext files through the daemon even where
	// kernel passthrough would work (for benchmarks and debugging).
	NoPassthrough bool
	// UntrustedStorage hides plaintext-form entries found at paths the policy
	// encrypts instead of only flagging them.
	UntrustedStorage bool
	// Logger receives one line per notable event (authentication failures,
	// hidden entries). Nil means log.Default().
	Logger *log.Logger
	// Debug logs every FUSE request.
	Debug bool
	// SharedStorage is for a vault that another machine or a sync tool may
	// change while it is mounted: the kernel caches no names, attributes or
	// file contents, so every change shows at once, at a cost in speed.
	SharedStorage bool
	// FormatVersion is the vault's format (the vault config's version):
	// new encrypted files, symlink targets and xattr values are written in
	// it. Zero means crypt.FormatVersion. Both formats are always read.
	FormatVersion uint16
	// MaxDirFds bounds the directory fds the daemon keeps open (dirfds.go);
	// zero means a quarter of the fd limit, at most 4096.
	MaxDirFds int
	// NoWriteback turns off the kernel's writeback cache, which is on
	// wherever passthrough would not be used anyway (see useWriteback).
	NoWriteback bool
	// LogNames lets log lines name entries by their plaintext path. Off by
	// default: lines then name an entry by its inode number, which
	// "find MOUNTPOINT -inum N" turns back into a path for whoever may
	// see it, and a log readable by others (syslog) learns no names.
	LogNames bool
	// Ptreg, for a daemon without CAP_SYS_ADMIN, is the path of
	// cryptpt-ptreg, which registers passthrough backing files for it.
	Ptreg string
}

// vault is the state shared by every node of one mount.
type vault struct {
	opts    Options
	content *crypt.Content
	names   *crypt.Names
	log     *log.Logger
	rootFd  int    // O_PATH fd of the vault root; owned here
	lockFd  int    // fd of the vault root holding the read-write lock, or -1; owned here
	dirs    dirFds // the bounded set of open directory fds
	stats   stats
	// requests counts what the kernel asks, by opcode (requests.go).
	requests requestCounts
	// listings keeps recent directory listings (dirlist.go).
	listings dirListings
	// watch turns outside changes into kernel invalidations (watch.go);
	// nil with SharedStorage, which caches nothing.
	watch *watcher
	// view serves encrypted files through a writeback cache in a mixed
	// mount (view.go); nil where it is not used.
	view *view

	// lastActive is the Unix time of the last request that shows someone
	// is using the mount; openFiles counts open handles (see Mount.Idle).
	lastActive atomic.Int64
	openFiles  atomic.Int64
	pins       atomic.Int64 // node.pin fds held

	// pol is the policy for new entries; SetPolicy replaces it while
	// mounted (cryptpt reload).
	pol atomic.Pointer[config.Policy]

	ptMu      sync.Mutex
	writeback bool // the kernel granted the writeback cache
	// ptActive is true once the mount has verified that the kernel
	// accepts backing files from this process; until then, and when it
	// fails, plaintext files are served by the daemon. ptReason says
	// why, on or off, for status. Both guarded by ptMu (setPassthrough).
	ptActive   bool
	ptReason   string
	mountpoint string
}

func newVault(o Options) (*vault, error) {
	if o.Logger == nil {
		o.Logger = log.Default()
	}
	if o.Policy == nil {
		o.Policy, _ = config.NewPolicy(nil)
	}
	abs, err := filepath.Abs(o.Backing)
	if err != nil {
		return nil, err
	}
	o.Backing = abs
	fd, err := unix.Open(abs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open vault %s: %w", abs, err)
	}
	if o.FormatVersion == 0 {
		o.FormatVersion = crypt.FormatVersion
	}
	v := &vault{
		opts:     o,
		content:  o.Keys.Content(),
		names:    o.Keys.Names(),
		log:      o.Logger,
		rootFd:   fd,
		lockFd:   -1,
		ptReason: "not probed yet",
	}
	v.pol.Store(o.Policy)
	v.dirs.max = o.MaxDirFds
	if v.dirs.max <= 0 {
		v.dirs.max = dirFdBudget()
	}
	return v, nil
}

// format is the content format new encrypted entries are written in.
func (v *vault) format() uint16 { return v.opts.FormatVersion }

// policy returns the policy in force for new entries.
func (v *vault) policy() *config.Policy { return v.pol.Load() }

// touch records activity for the idle timer.
func (v *vault) touch() { v.lastActive.Store(time.Now().Unix()) }

func (v *vault) close() {
	v.watch.close()
	v.view.close()
	v.dirs.shrink(0)
	if v.rootFd >= 0 {
		unix.Close(v.rootFd)
		v.rootFd = -1
	}
	if v.lockFd >= 0 {
		unix.Close(v.lockFd)
		v.lockFd = -1
	}
}

// ErrVaultInUse means another daemon has the vault mounted read-write.
var ErrVaultInUse = errors.New("vault is already mounted read-write")

// CheckVaultLock returns ErrVaultInUse when a daemon has the vault at
// backing mounted read-write, so a command can say so before it asks for a
// password. It takes the lock and drops it at once; MountVault takes it for
// good.
func CheckVaultLock(backing string) error {
	fd, err := unix.Open(backing, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return flockVault(fd, backing)
}

// lockWait bounds how long flockVault waits for a daemon that is going
// away: after a plain umount(8) the daemon still closes its files before the
// kernel drops its lock, and "umount; mount" must work.
const lockWait = 10 * time.Second

// flockVault takes the vault lock on fd. While the lock is held but no
// mount of backing is listed, its holder is starting or stopping, so it
// waits up to lockWait; a listed mount is in use now.
func flockVault(fd int, backing string) error {
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EWOULDBLOCK {
			return err
		}
		if vaultMounted(backing) || time.Now().After(deadline) {
			return ErrVaultInUse
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vaultMounted reports whether a cryptpt mount of backing is listed.
func vaultMounted(backing string) bool {
	mounts, err := mountinfo.Read()
	if err != nil {
		return true
	}
	for _, m := range mounts {
		if m.IsCryptpt() && filepath.Clean(m.Source) == filepath.Clean(backing) {
			return true
		}
	}
	return false
}

// lock takes an exclusive flock on the vault root for a read-write mount, so
// two daemons never write one vault. The kernel drops it when the fd closes,
// also when the daemon is killed, so no lock outlives its holder. Read-only
// mounts take none.
func (v *vault) lock() error {
	if v.opts.ReadOnly {
		return nil
	}
	fd, err := unix.Openat(v.rootFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open vault %s to lock it: %w", v.opts.Backing, err)
	}
	if err := flockVault(fd, v.opts.Backing); err != nil {
		unix.Close(fd)
		if err == ErrVaultInUse {
			return err
		}
		return fmt.Errorf("lock vault %s: %w", v.opts.Backing, err)
	}
	v.lockFd = fd
	return nil
}

func (v *vault) passthrough() bool {
	v.ptMu.Lock()
	defer v.ptMu.Unlock()
	return v.ptActive
}

func (v *vault) setPassthrough(active bool, reason string) {
	v.ptMu.Lock()
	defer v.ptMu.Unlock()
	v.ptActive, v.ptReason = active, reason
}

// logf logs one line. Callers must not pass plaintext names of encrypted
// entries unless the line is about that entry; never keys or content.
func (v *vault) logf(format string, args ...any) {
	v.log.Printf(format, args...)
}

// entryName names n in a log line: its plaintext path with LogNames; by
// default its inode number and, for an encrypted entry, its vault name, so a
// log never holds a plaintext name ("find MOUNTPOINT -inum N" finds the
// entry for whoever may see it).
func (v *vault) entryName(n *node) string {
	if v.opts.LogNames {
		return strconv.Quote("/" + n.relPath())
	}
	s := fmt.Sprintf("inode %d", n.ino.Load())
	if p, name, errno := n.parent(); errno == 0 && n.isEnc() {
		if stored, errno := p.storedName(name, true, false); errno == 0 {
			s += fmt.Sprintf(" (vault name %q)", stored)
		}
	}
	return s
}

// childName names the entry name of directory dir in a log line, as
// entryName does for a node: by its vault name if it is encrypted (stored),
// else only by its directory.
func (v *vault) childName(dir *node, name, stored string) string {
	switch {
	case v.opts.LogNames && stored != "":
		return fmt.Sprintf("%q (vault name %q)", "/"+dir.childPath(name), stored)
	case v.opts.LogNames:
		return strconv.Quote("/" + dir.childPath(name))
	case stored != "":
		return fmt.Sprintf("vault name %q in %s", stored, v.entryName(dir))
	}
	return "in " + v.entryName(dir)
}

// Errors a caller can match to explain a failed mount.
var (
	// ErrMountpointMissing means the mountpoint does not exist.
	ErrMountpointMissing = errors.New("mountpoint does not exist")
	// ErrMountpointNotDir means the mountpoint is not a directory.
	ErrMountpointNotDir = errors.New("mountpoint is not a directory")
	// ErrMountpointNotEmpty means the mountpoint has entries in it.
	ErrMountpointNotEmpty = errors.New("mountpoint is not empty")
	// ErrMountpointMounted means something is already mounted there.
	ErrMountpointMounted = errors.New("mountpoint is already a mount")
	// ErrMountpointDenied means a daemon that mounts by itself (CAP_SYS_ADMIN,
	// not root) runs for a user who may not mount there: fusermount3's rule.
	ErrMountpointDenied = errors.New("mountpoint is neither owned nor writable by the user the daemon runs as (or is sticky and not owned)")
)

// CheckMountpoint returns nil when dir is an existing, empty directory that is
// not already a mount point.
func CheckMountpoint(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return ErrMountpointMissing
	}
	if err != nil {
		// A dead FUSE mount answers ENOTCONN: it is a mount.
		if errors.Is(err, syscall.ENOTCONN) {
			return ErrMountpointMounted
		}
		return err
	}
	if !st.IsDir() {
		return ErrMountpointNotDir
	}
	mounted, err := IsMountpoint(dir)
	if err != nil {
		return err
	}
	if mounted {
		return ErrMountpointMounted
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && err != io.EOF {
		return err
	}
	if len(names) > 0 {
		return ErrMountpointNotEmpty
	}
	return nil
}

// IsMountpoint reports whether dir is the root of a mount, from
// /proc/self/mountinfo.
func IsMountpoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	mounts, err := mountinfo.Read()
	if err != nil {
		return false, err
	}
	for _, m := range mounts {
		if m.Point == abs {
			return true, nil
		}
	}
	return false, nil
}
