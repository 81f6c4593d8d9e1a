package fs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// ModeXattr, a virtual attribute answered by the daemon itself, holds an
// entry's stored mode: "encrypted" or "plaintext". It is read-only and never
// listed. It is in the security namespace because the kernel refuses user.*
// attributes on symlinks before asking the daemon. Status and migrate go
// through the control socket (Mount.Migrate, internal/control), which checks
// who asks.
const ModeXattr = "security.cryptpt.mode"

// xattrTarget names a backing entry for the xattr syscalls: a path under
// /proc/self/fd of its directory, used without following a final symlink,
// or, for the root and for files that lost their name while open, the
// magic link of an fd, which must be followed.
type xattrTarget struct {
	path   string
	follow bool
}

// withXattr runs op on the entry, and once more through an open handle if
// it has no name any more (unlinked or renamed over while open).
func (n *node) withXattr(op func(t xattrTarget) error) syscall.Errno {
	fd, stored, errno := n.at()
	var err error
	switch {
	case errno == syscall.ENOENT:
		err = unix.ENOENT
	case errno != 0:
		return errno
	case stored == "":
		err = op(xattrTarget{fmt.Sprintf("/proc/self/fd/%d", fd), true})
	default:
		err = op(xattrTarget{fmt.Sprintf("/proc/self/fd/%d/%s", fd, stored), false})
	}
	if errors.Is(err, unix.ENOENT) {
		if of := n.dupOpenFile(); of != nil {
			err = op(xattrTarget{fdPath(of), true})
			of.Close()
		}
	}
	return gofs.ToErrno(err)
}

func (t xattrTarget) get(attr string, dest []byte) (int, error) {
	if t.follow {
		return unix.Getxattr(t.path, attr, dest)
	}
	return unix.Lgetxattr(t.path, attr, dest)
}

func (t xattrTarget) getAll(attr string) ([]byte, error) {
	for {
		sz, err := t.get(attr, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		got, err := t.get(attr, buf)
		if err == unix.ERANGE {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:got], nil
	}
}

func (t xattrTarget) set(attr string, data []byte, flags int) error {
	if t.follow {
		return unix.Setxattr(t.path, attr, data, flags)
	}
	return unix.Lsetxattr(t.path, attr, data, flags)
}

func (t xattrTarget) remove(attr string) error {
	if t.follow {
		return unix.Removexattr(t.path, attr)
	}
	return unix.Lremovexattr(t.path, attr)
}

func (t xattrTarget) list(dest []byte) (int, error) {
	if t.follow {
		return unix.Listxattr(t.path, dest)
	}
	return unix.Llistxattr(t.path, dest)
}

// sealsXattr reports whether attr's value is stored encrypted: user
// attributes of encrypted entries. Other namespaces are interpreted by the
// kernel (ACLs, capabilities) and stay as they are.
func (n *node) sealsXattr(attr string) bool {
	return n.isEnc() && strings.HasPrefix(attr, "user.")
}

func xattrAD(attr string) []byte { return []byte("cryptpt xattr v1\x00" + attr) }

func (n *node) virtualXattr(attr string) ([]byte, bool) {
	if attr == ModeXattr {
		if n.isEnc() {
			return []byte("encrypted"), true
		}
		return []byte("plaintext"), true
	}
	return nil, false
}

var _ = (gofs.NodeGetxattrer)((*node)(nil))

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if data, ok := n.virtualXattr(attr); ok {
		return copyXattr(data, dest)
	}
	if !n.sealsXattr(attr) {
		var sz int
		errno := n.withXattr(func(t xattrTarget) (err error) {
			sz, err = t.get(attr, dest)
			return err
		})
		return uint32(sz), errno
	}
	var sealed []byte
	if errno := n.withXattr(func(t xattrTarget) (err error) {
		sealed, err = t.getAll(attr)
		return err
	}); errno != 0 {
		return 0, errno
	}
	value, err := n.v.opts.Keys.OpenMeta(sealed, xattrAD(attr))
	if err != nil {
		n.v.stats.authFailures.Add(1)
		n.v.logf("xattr %q of %s fails authentication: %v", attr, n.v.entryName(n), err)
		return 0, syscall.EIO
	}
	return copyXattr(value, dest)
}

func copyXattr(data, dest []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(data)), 0
	}
	if len(dest) < len(data) {
		return uint32(len(data)), syscall.ERANGE
	}
	return uint32(copy(dest, data)), 0
}

var _ = (gofs.NodeSetxattrer)((*node)(nil))

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if attr == ModeXattr {
		return syscall.EPERM
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	if n.sealsXattr(attr) {
		data = n.v.opts.Keys.SealMeta(data, xattrAD(attr))
	}
	return n.withXattr(func(t xattrTarget) error { return t.set(attr, data, int(flags)) })
}

var _ = (gofs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if attr == ModeXattr {
		return syscall.EPERM
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	return n.withXattr(func(t xattrTarget) error { return t.remove(attr) })
}

var _ = (gofs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var sz int
	errno := n.withXattr(func(t xattrTarget) (err error) {
		sz, err = t.list(dest)
		return err
	})
	return uint32(sz), errno
}
