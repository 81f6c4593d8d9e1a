package fs

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"

	"cryptpt/crypt"
	"cryptpt/layout"

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

// xattrTarget names a backing entry for the xattr syscalls, which have no
// *at forms: a path under /proc/self/fd of its directory, used without
// following a final symlink, or, for the root and for files reached
// through an open file (entryTarget), the magic link of an fd, which must
// be followed.
type xattrTarget struct {
	path   string
	follow bool
}

// withXattr runs op on the entry where onEntry reaches it.
func (n *node) withXattr(op func(t xattrTarget) error) syscall.Errno {
	return n.onEntry(nil, func(t entryTarget) error {
		switch {
		case t.byName():
			return op(xattrTarget{fmt.Sprintf("/proc/self/fd/%d/%s", t.dirfd, t.name), false})
		case t.file == nil: // the root
			return op(xattrTarget{fmt.Sprintf("/proc/self/fd/%d", t.dirfd), true})
		}
		return op(xattrTarget{t.name, true})
	})
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

// listAll returns the whole attribute list of the entry, without the
// attributes the mount does not support.
func (t xattrTarget) listAll() ([]byte, error) {
	for {
		sz, err := t.list(nil)
		if err != nil || sz == 0 {
			return nil, err
		}
		buf := make([]byte, sz)
		got, err := t.list(buf)
		if err == unix.ERANGE {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		var out []byte
		for _, a := range strings.SplitAfter(string(buf[:got]), "\x00") {
			if a != "" && !unsupportedXattr(strings.TrimSuffix(a, "\x00")) {
				out = append(out, a...)
			}
		}
		return out, nil
	}
}

// unsupportedXattr reports whether the mount refuses attr with EOPNOTSUPP:
// SELinux labels, which the kernel keeps for FUSE mounts by itself where
// SELinux runs (genfscon). Elsewhere "ls -l" asks for one of every file;
// EOPNOTSUPP instead of ENODATA tells it (and libselinux users) that the
// whole filesystem has none, so it stops asking: one round trip per file
// less (docs/performance.md).
func unsupportedXattr(attr string) bool {
	return attr == "security.selinux"
}

// sealsXattr reports whether attr's value is stored encrypted: user
// attributes of encrypted entries. Other namespaces are interpreted by the
// kernel (ACLs, capabilities) and stay as they are.
func (n *node) sealsXattr(attr string) bool {
	return n.isEnc() && layout.SealsXattr(attr)
}

// sealXattr seals value as attr's value on n in the vault's format, which
// from format 2 on binds it to the entry (entryID), so an empty file gets a
// header to carry its ID.
func (n *node) sealXattr(attr string, value []byte) ([]byte, syscall.Errno) {
	version := n.v.format()
	var id *[16]byte
	if version != crypt.FormatV1 {
		var errno syscall.Errno
		if id, errno = n.entryID(true); errno != 0 {
			return nil, errno
		}
	}
	return layout.SealXattr(n.v.opts.Keys, version, attr, id, value), 0
}

// entryID returns what the format-2 xattr values of n are bound to: a
// directory's IV, a regular file's ID (see fileID).
func (n *node) entryID(create bool) (*[16]byte, syscall.Errno) {
	if n.StableAttr().Mode == syscall.S_IFDIR {
		return n.dirIV(create)
	}
	return n.fileID(create)
}

// openXattr decrypts a sealed value of attr on n (see openXattrOf).
func (n *node) openXattr(attr string, sealed []byte) ([]byte, syscall.Errno) {
	id, errno := n.entryID(false)
	if errno != 0 {
		return nil, errno
	}
	return n.openXattrOf(attr, sealed, id)
}

// openXattrOf decrypts a sealed value of attr of the entry whose ID (see
// entryID) is id, sealed in either format: format 1 in a vault upgraded
// from it, format 2 (which binds more) by a newer cryptpt in a format-1
// vault.
func (n *node) openXattrOf(attr string, sealed []byte, id *[16]byte) ([]byte, syscall.Errno) {
	value, err := layout.OpenXattr(n.v.opts.Keys, layout.Formats(n.v.format()), attr, id, sealed)
	if err != nil {
		return nil, n.v.authFailed(n.v.entryName(n), fmt.Sprintf("xattr %q", attr), err)
	}
	return value, 0
}

// fileID returns the file ID of an encrypted regular file, from its header
// in the vault. A file without a header has none (a zero ID, under which
// nothing opens), unless create is set: then it gets a header now.
func (n *node) fileID(create bool) (*[16]byte, syscall.Errno) {
	n.contentMu.Lock()
	defer n.contentMu.Unlock()
	access := unix.O_RDONLY
	if create {
		access = unix.O_RDWR
	}
	f, errno := n.openEntry(access, false)
	if errno != 0 {
		return nil, errno
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, toErrno(err)
	}
	if st.Size() == 0 {
		if !create {
			return new([16]byte), 0
		}
		hdr, err := crypt.NewHeader(n.v.format())
		if err == nil {
			_, err = f.WriteAt(hdr.Marshal(), 0)
		}
		if err != nil {
			return nil, toErrno(err)
		}
		n.hdr = &hdr
		n.cached = stateOf(f)
		return &hdr.ID, 0
	}
	hdr, errno := n.readHeader(f, st.Size())
	if errno != 0 {
		return nil, errno
	}
	return &hdr.ID, 0
}

// hasUserXattrs reports whether f has user.* attributes, which in an
// encrypted file are sealed to its file ID.
func hasUserXattrs(f *os.File) bool {
	names, err := layout.ListXattrs(int(f.Fd()))
	if err != nil {
		return false
	}
	for _, a := range names {
		if layout.SealsXattr(a) {
			return true
		}
	}
	return false
}

// resealXattrs re-seals the format-2 user.* values of f from file ID from
// to file ID to, when the file gets a fresh ID. A value that does not open
// under the old ID is left as it is: it fails as it did.
func (n *node) resealXattrs(f *os.File, from, to *[16]byte) syscall.Errno {
	names, err := layout.ListXattrs(int(f.Fd()))
	if err != nil {
		if err == unix.ENOTSUP {
			return 0
		}
		return toErrno(err)
	}
	for _, attr := range names {
		if !layout.SealsXattr(attr) {
			continue
		}
		sealed, err := layout.GetXattr(int(f.Fd()), attr)
		if err != nil {
			return toErrno(err)
		}
		value, err := layout.OpenXattr(n.v.opts.Keys, []uint16{crypt.FormatVersion}, attr, from, sealed)
		if err != nil {
			continue
		}
		resealed := layout.SealXattr(n.v.opts.Keys, crypt.FormatVersion, attr, to, value)
		if err := unix.Fsetxattr(int(f.Fd()), attr, resealed, 0); err != nil {
			return toErrno(err)
		}
	}
	return 0
}

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
	if unsupportedXattr(attr) {
		return 0, syscall.EOPNOTSUPP
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
	value, errno := n.openXattr(attr, sealed)
	if errno != 0 {
		return 0, errno
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
	if unsupportedXattr(attr) {
		return syscall.EOPNOTSUPP
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	if errno := n.refuseQuarantined("setxattr"); errno != 0 {
		return errno
	}
	if n.sealsXattr(attr) {
		var errno syscall.Errno
		if data, errno = n.sealXattr(attr, data); errno != 0 {
			return errno
		}
	}
	return n.withXattr(func(t xattrTarget) error { return t.set(attr, data, int(flags)) })
}

var _ = (gofs.NodeRemovexattrer)((*node)(nil))

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if attr == ModeXattr {
		return syscall.EPERM
	}
	if unsupportedXattr(attr) {
		return syscall.EOPNOTSUPP
	}
	if n.v.opts.ReadOnly {
		return syscall.EROFS
	}
	return n.withXattr(func(t xattrTarget) error { return t.remove(attr) })
}

var _ = (gofs.NodeListxattrer)((*node)(nil))

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var list []byte
	if errno := n.withXattr(func(t xattrTarget) (err error) {
		list, err = t.listAll()
		return err
	}); errno != 0 {
		return 0, errno
	}
	return copyXattr(list, dest)
}
