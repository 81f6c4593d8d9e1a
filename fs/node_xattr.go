package fs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

// Virtual attributes answered by the daemon itself. They are read-only and
// never listed.
const (
	// StatusXattr on the mount root holds the JSON Status of the mount.
	StatusXattr = "user.cryptpt.status"
	// ModeXattr on any entry holds its stored mode: "encrypted" or
	// "plaintext". It is in the security namespace because the kernel
	// refuses user.* attributes on symlinks before asking the daemon.
	ModeXattr = "security.cryptpt.mode"
)

// xattrPath names the backing entry for the l*xattr calls, which do not
// follow a final symlink. /proc/self/fd/N resolves to the directory itself.
func (n *node) xattrPath() (string, syscall.Errno) {
	fd, stored, errno := n.at()
	if errno == syscall.ENOENT {
		// Unlinked or renamed over while open: its open handle still names it.
		if of := n.anyOpenFile(); of != nil {
			return fdPath(of), 0
		}
	}
	if errno != 0 {
		return "", errno
	}
	if stored == "" {
		return fmt.Sprintf("/proc/self/fd/%d", fd), 0
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, stored), 0
}

// sealsXattr reports whether attr's value is stored encrypted: user
// attributes of encrypted entries. Other namespaces are interpreted by the
// kernel (ACLs, capabilities) and stay as they are.
func (n *node) sealsXattr(attr string) bool {
	return n.isEnc() && strings.HasPrefix(attr, "user.")
}

func xattrAD(attr string) []byte { return []byte("cryptpt xattr v1\x00" + attr) }

func (n *node) virtualXattr(attr string) ([]byte, bool) {
	switch {
	case attr == StatusXattr && n.IsRoot():
		st := n.v.status()
		st.PID = os.Getpid()
		data, _ := json.Marshal(st)
		return data, true
	case attr == ModeXattr:
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
	p, errno := n.xattrPath()
	if errno != 0 {
		return 0, errno
	}
	if !n.sealsXattr(attr) {
		sz, err := unix.Lgetxattr(p, attr, dest)
		return uint32(sz), gofs.ToErrno(err)
	}
	sealed, err := lgetxattrAll(p, attr)
	if err != nil {
		return 0, gofs.ToErrno(err)
	}
	value, err := n.v.opts.Keys.OpenMeta(sealed, xattrAD(attr))
	if err != nil {
		n.v.stats.authFailures.Add(1)
		n.v.logf("xattr %q of %q fails authentication: %v", attr, "/"+n.relPath(), err)
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

func lgetxattrAll(path, attr string) ([]byte, error) {
	for {
		sz, err := unix.Lgetxattr(path, attr, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		got, err := unix.Lgetxattr(path, attr, buf)
		if err == unix.ERANGE {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:got], nil
	}
}

var _ = (gofs.NodeSetxattrer)((*node)(nil))

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if attr == MigrateXattr {
		return n.migrateChild(ctx, data)
	}
	if attr == StatusXattr || attr == ModeXattr {
		return syscall.EPERM
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	p, errno := n.xattrPath()
	if errno != 0 {
		return errno
	}
	if n.sealsXattr(attr) {
		data = n.v.opts.Keys.SealMeta(data, xattrAD(attr))
	}
	return gofs.ToErrno(unix.Lsetxattr(p, attr, data, int(flags)))
}

var _ = (gofs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if attr == StatusXattr || attr == ModeXattr {
		return syscall.EPERM
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	p, errno := n.xattrPath()
	if errno != 0 {
		return errno
	}
	return gofs.ToErrno(unix.Lremovexattr(p, attr))
}

var _ = (gofs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	p, errno := n.xattrPath()
	if errno != 0 {
		return 0, errno
	}
	sz, err := unix.Llistxattr(p, dest)
	return uint32(sz), gofs.ToErrno(err)
}
