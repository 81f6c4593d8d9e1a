package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cryptpt/config"
	"cryptpt/crypt"
	"cryptpt/internal/mountinfo"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// cacheTimeout is how long the kernel may trust names, attributes and
// listings. Changes made through the mount reach the kernel's caches at
// once; changes made to the vault behind the daemon's back reach them
// through the watcher (watch.go), or after unwatchedTimeout where it
// cannot watch. SharedStorage turns caching off.
const cacheTimeout = time.Hour

// Mount is a live cryptpt mount.
type Mount struct {
	server    *fuse.Server
	v         *vault
	root      *node
	registrar backingRegistrar // the server, or the passthrough helper
	helper    *ptHelper        // nil without one
	// target is the mountpoint held open by a daemon that mounted by
	// itself; nil when fusermount3 mounted.
	target *mountTarget
}

// MountVault mounts the vault described by o at mountpoint and returns once
// the kernel serves it. The caller checks the mountpoint first
// (CheckMountpoint) and unmounts with Unmount.
func MountVault(mountpoint string, o Options) (_ *Mount, err error) {
	mountpoint, err = filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	var target *mountTarget
	if CanMount() {
		if target, err = openMountpoint(mountpoint); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil && target != nil {
				target.close()
			}
		}()
		if err := target.checkUser(o.AllowOther); err != nil {
			return nil, err
		}
		mountpoint = target.path
	}
	v, err := newVault(o)
	if err != nil {
		return nil, err
	}
	if err := v.lock(); err != nil {
		v.close()
		return nil, err
	}
	v.mountpoint = mountpoint
	var rootSt syscall.Stat_t
	if err := syscall.Fstat(v.rootFd, &rootSt); err != nil {
		v.close()
		return nil, err
	}
	timeout := cacheTimeout
	if o.SharedStorage {
		timeout = 0
	} else {
		v.watch = newWatcher(v)
	}
	mo := fuse.MountOptions{
		FsName:     v.opts.Backing,
		Name:       mountinfo.Name,
		AllowOther: o.AllowOther,
		Debug:      o.Debug,
		Logger:     v.log,
		// Requests near 1 MiB: fewer round trips for large sequential I/O.
		MaxWrite: maxRequest(),
		// No lock requests: the kernel then keeps POSIX, OFD and flock
		// locks itself, with exactly its own semantics. go-fuse's
		// forwarding made every POSIX lock an OFD lock of one backing fd
		// (a process conflicted with itself, close kept it), and a
		// passthrough backing file the kernel still holds kept its locks
		// past close. Locks are thus local to this mount, not seen by
		// other users of the vault directory.
		EnableLocks: false,
		// The kernel enforces POSIX ACLs (with default_permissions) and
		// caches them; they are stored as the backing entry's own.
		EnableAcl: true,
		// Allow a vault on one stacked filesystem (overlayfs, another FUSE):
		// the kernel's limit is 2 including this mount.
		MaxStackDepth: 2,
		// The daemon clears set-id bits itself (killpriv.go), which saves
		// a GETXATTR round trip per write.
		ExtraCapabilities: capHandleKillprivV2,
	}
	if v.useWriteback() {
		mo.ExtraCapabilities |= fuse.CAP_WRITEBACK_CACHE
	}
	// The kernel checks permission bits for every caller, the mounting
	// user included, as gocryptfs does: the daemon opens backing files
	// with its own rights (root, or the owner: openBacking), so without
	// it a mode 000 file would stay readable through the mount.
	mo.Options = append(mo.Options, "default_permissions")
	if o.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	if v.wantsView() {
		// Before the user's mount serves anything, so that every
		// encrypted open of it goes through the view.
		if w, err := mountView(v); err != nil {
			v.logf("encrypted files without the writeback cache: cannot mount the view: %v", err)
		} else {
			v.view = w
		}
	}
	root := v.newNode(false)
	root.ino.Store(rootSt.Ino)
	// The umask is applied by umaskFS, which knows about default ACLs.
	mo.ExtraCapabilities |= fuse.CAP_DONT_MASK
	gopts := &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		RootStableAttr:  &gofs.StableAttr{Ino: rootSt.Ino},
		// Mode 0 is a mode like any other (go-fuse would show it as 0644).
		NullPermissions: true,
		Logger:          v.log,
	}
	var server *fuse.Server
	var helper *helperCallbacks
	var helperErr error
	if v.usesHelper() {
		server, helper, helperErr = mountWithHelper(mountpoint, func() fuse.RawFileSystem { return v.rawFS(root, gopts) }, gopts, o.Ptreg)
		if server == nil {
			err = helperErr
		}
	} else {
		server, target, err = mountRaw(mountpoint, target, v.rawFS(root, gopts), gopts)
	}
	if err != nil {
		v.close()
		return nil, err
	}
	m := &Mount{server: server, v: v, root: root, registrar: server, target: target}
	if helper != nil {
		m.registrar, m.helper = helper, helper.h
	}
	v.touch()
	m.probePassthrough()
	if helperErr != nil && !v.opts.NoPassthrough {
		v.setPassthrough(false, fmt.Sprintf("the passthrough helper %s failed: %v", o.Ptreg, helperErr))
	}
	if v.writeback {
		var st unix.Stat_t
		if err := unix.Stat(mountpoint, &st); err == nil {
			if err := tuneWriteback(st.Dev); err != nil && o.Debug {
				v.logf("the kernel's default share of dirty pages: %v", err)
			}
		}
	}
	return m, nil
}

// rawFS is the node filesystem as the kernel talks to it: requests counted,
// caching adjusted by cachingFS, the umask applied by umaskFS.
func (v *vault) rawFS(root gofs.InodeEmbedder, opts *gofs.Options) fuse.RawFileSystem {
	return countingFS{cachingFS{umaskFS{gofs.NewNodeFS(root, opts)}}, &v.requests}
}

// mountRaw is gofs.Mount for the raw filesystem fs. With
// a target (a daemon that mounts by itself) it mounts on the directory held
// open there and hands go-fuse the connection ("/dev/fd/N"); if that mount
// fails it falls back to fusermount3, as go-fuse's own direct mount does.
// It returns the target if the mount is on it, else nil, having closed it.
func mountRaw(dir string, target *mountTarget, fs fuse.RawFileSystem, opts *gofs.Options) (*fuse.Server, *mountTarget, error) {
	mo := opts.MountOptions
	if target != nil {
		if fd, err := target.mount(&mo); err == nil {
			dir = fmt.Sprintf("/dev/fd/%d", fd)
		} else {
			if opts.Debug {
				opts.Logger.Printf("mount: direct mount failed, trying fusermount3: %v", err)
			}
			target.close()
			target = nil
		}
	}
	server, err := fuse.NewServer(fs, dir, &mo)
	if err != nil {
		if target != nil {
			target.unmount()
			target.close()
		}
		return nil, nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, nil, err
	}
	if target != nil {
		target.served()
	}
	return server, target, nil
}

// maxRequest is the largest read or write request to negotiate: 1 MiB, or
// less where a reply (a request's data, its header and the page go-fuse
// adds) would not fit the largest pipe splice may use; at exactly 1 MiB
// every large read missed the splice path with a log line
// ("trySplice: ... max pipe size"), with 1 MiB pipes the usual limit.
func maxRequest() int {
	const want = 1 << 20
	page := os.Getpagesize()
	limit := want
	if data, err := os.ReadFile("/proc/sys/fs/pipe-max-size"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n > 0 {
			limit = n
		}
	}
	// Whole pages, leaving one for go-fuse's extra page and one for the
	// reply header.
	n := (limit/page - 2) * page
	if n > want {
		n = want
	}
	if n < 128<<10 {
		n = 128 << 10 // go-fuse's default, for a machine with tiny pipes
	}
	return n
}

// useWriteback decides on the kernel's writeback cache, which merges small
// writes into large requests (fio 4 KiB writes to encrypted files: 0.02x
// native without, 0.32x with; bench/results). The kernel refuses
// passthrough on such a connection, so it is on only where passthrough
// would serve nothing: a policy without plaintext rules, passthrough turned
// off, or a daemon without the CAP_SYS_ADMIN that passthrough needs. A vault
// that others change while mounted (SharedStorage) gets no caching at all.
func (v *vault) useWriteback() bool {
	if v.opts.NoWriteback || v.opts.SharedStorage {
		return false
	}
	return !v.policy().HasPlaintextRules() || v.opts.NoPassthrough || (!CanMount() && !v.usesHelper())
}

// wantsView reports whether encrypted files go through the view (view.go):
// in a mount that will use passthrough, where the kernel refuses the
// writeback cache, and wherever the writeback cache is not turned off.
func (v *vault) wantsView() bool {
	o := v.opts
	if o.ReadOnly || o.SharedStorage || o.NoWriteback || o.NoPassthrough || v.useWriteback() {
		return false
	}
	return CanMount() || v.usesHelper()
}

// usesHelper reports whether backing files go through cryptpt-ptreg: a
// daemon without CAP_SYS_ADMIN that was given one.
func (v *vault) usesHelper() bool {
	return v.opts.Ptreg != "" && !CanMount() && !v.opts.NoPassthrough
}

// probePassthrough finds out whether the kernel takes backing files from this
// daemon, by registering the vault config file once, and records why not.
func (m *Mount) probePassthrough() {
	v := m.v
	v.ptMu.Lock()
	v.writeback = m.server.KernelSettings().Flags64()&fuse.CAP_WRITEBACK_CACHE != 0 && v.useWriteback()
	v.ptMu.Unlock()
	if v.opts.NoPassthrough {
		v.setPassthrough(false, "turned off by --no-passthrough")
		return
	}
	if m.server.KernelSettings().Flags64()&fuse.CAP_WRITEBACK_CACHE != 0 && v.useWriteback() {
		if !CanMount() {
			v.setPassthrough(false, "the daemon lacks CAP_SYS_ADMIN, which the kernel requires to register passthrough files (the writeback cache is on instead)")
		} else {
			v.setPassthrough(false, "off because the writeback cache is on (the policy has no plaintext rules; the kernel allows only one of the two)")
		}
		return
	}
	if m.server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		v.setPassthrough(false, "the kernel does not offer FUSE passthrough (needs Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH)")
		return
	}
	fd, err := unix.Openat(v.rootFd, crypt.VaultConfigName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		v.setPassthrough(false, fmt.Sprintf("cannot open a vault file to probe passthrough: %v", err))
		return
	}
	defer unix.Close(fd)
	id, errno := m.registrar.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	switch {
	case errno == 0 && m.helper != nil:
		m.registrar.UnregisterBackingFd(id)
		v.setPassthrough(true, "kernel passthrough active, passthrough via helper (cryptpt-ptreg)")
	case errno == 0:
		m.registrar.UnregisterBackingFd(id)
		v.setPassthrough(true, "kernel passthrough active")
	case errno == syscall.EPERM:
		v.setPassthrough(false, "the daemon lacks CAP_SYS_ADMIN, which the kernel requires to register passthrough files")
	case errno == syscall.ELOOP:
		v.setPassthrough(false, "the vault sits on a stacked filesystem deeper than the kernel's passthrough stacking limit")
	default:
		v.setPassthrough(false, fmt.Sprintf("the kernel refused a passthrough backing file: %v", errno))
	}
}

// Status reports the mount's passthrough state and counters.
func (m *Mount) Status() Status { return m.v.status() }

// Idle reports how long the mount has gone without a lookup, listing or open,
// and with no file open; zero while a file is open.
func (m *Mount) Idle() time.Duration {
	if m.v.openFiles.Load() > 0 {
		return 0
	}
	return time.Since(time.Unix(m.v.lastActive.Load(), 0))
}

// Wait blocks until the filesystem is unmounted.
func (m *Mount) Wait() {
	m.server.Wait()
	if m.helper != nil {
		m.helper.close()
	}
	if m.target != nil {
		m.target.close()
	}
	m.v.close()
}

// Unmount asks the kernel to unmount; Wait returns afterwards.
func (m *Mount) Unmount() error {
	if m.target != nil {
		return m.target.unmount()
	}
	return m.server.Unmount()
}

// CanMount reports whether this process may call mount(2) itself: root, or
// a daemon holding CAP_SYS_ADMIN (the systemd unit's ambient capability).
// Others mount through the setuid fusermount3.
func CanMount() bool {
	if unix.Geteuid() == 0 {
		return true
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_ADMIN) != 0
}

// Policy returns the policy the mount uses for new entries.
func (m *Mount) Policy() *config.Policy { return m.v.policy() }

// SetPolicy replaces the policy for new entries while mounted. Existing
// entries keep their stored mode; the kernel's cached lookups are not
// affected, since a lookup finds an entry in whichever form it exists.
func (m *Mount) SetPolicy(p *config.Policy) {
	if p != nil {
		m.v.pol.Store(p)
	}
}
