package fs

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
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
	// Writeback asks for the kernel's writeback cache where passthrough
	// would not be used anyway (see useWriteback). Off by default: under
	// concurrent renames and unlinks of files being written, close() can
	// return EIO from the kernel's writeback path (TestConcurrentDirOps).
	Writeback bool
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
	rootFd  int // O_PATH fd of the vault root; owned here
	stats   stats

	// passthrough is true once the mount has verified that the kernel
	// accepts backing files from this process. Until then, and when it
	// fails, plaintext files are served by the daemon.
	// lastActive is the Unix time of the last request that shows someone
	// is using the mount; openFiles counts open handles (see Mount.Idle).
	lastActive atomic.Int64
	openFiles  atomic.Int64

	// pol is the policy for new entries; SetPolicy replaces it while
	// mounted (cryptpt reload).
	pol atomic.Pointer[config.Policy]

	ptMu       sync.Mutex
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
	v := &vault{
		opts:     o,
		content:  o.Keys.Content(),
		names:    o.Keys.Names(),
		log:      o.Logger,
		rootFd:   fd,
		ptReason: "not probed yet",
	}
	v.pol.Store(o.Policy)
	return v, nil
}

// policy returns the policy in force for new entries.
func (v *vault) policy() *config.Policy { return v.pol.Load() }

// touch records activity for the idle timer.
func (v *vault) touch() { v.lastActive.Store(time.Now().Unix()) }

func (v *vault) close() {
	if v.rootFd >= 0 {
		unix.Close(v.rootFd)
		v.rootFd = -1
	}
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
