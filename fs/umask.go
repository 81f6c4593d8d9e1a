package fs

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// umaskFS applies the caller's umask the way a local filesystem with POSIX
// ACLs does: not at all where the parent directory has a default ACL (the
// ACL then decides the new entry's permissions), else as usual. The kernel
// can only leave that choice to the daemon (FUSE_DONT_MASK: it sends the
// mode unmasked, with the umask beside it), and go-fuse's node API drops
// the umask, so this wrapper decides before the node sees the mode.
type umaskFS struct {
	fuse.RawFileSystem
}

// mask applies umask to mode unless the directory parent has a default ACL.
func (u umaskFS) mask(cancel <-chan struct{}, parent *fuse.InHeader, mode *uint32, umask uint32) {
	if umask == 0 {
		return
	}
	if _, st := u.RawFileSystem.GetXAttr(cancel, parent, "system.posix_acl_default", nil); st == fuse.OK {
		return
	}
	*mode &^= umask & 0o777
}

func (u umaskFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	u.mask(cancel, &in.InHeader, &in.Mode, in.Umask)
	return u.RawFileSystem.Create(cancel, in, name, out)
}

func (u umaskFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	u.mask(cancel, &in.InHeader, &in.Mode, in.Umask)
	return u.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (u umaskFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	u.mask(cancel, &in.InHeader, &in.Mode, in.Umask)
	return u.RawFileSystem.Mknod(cancel, in, name, out)
}
