package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Caching by the kernel.
//
// Directory listings without OPENDIR.
//
// The kernel sends OPENDIR and RELEASEDIR around every opendir(3) and,
// without caching, READDIRPLUS for every listing: two round trips per
// directory and a page of entries per further one, each time find, du or a
// file manager walks a tree. Answering OPENDIR with ENOSYS makes the kernel
// open directories by itself from then on and keep their listings in its
// page cache (it then sets FOPEN_KEEP_CACHE|FOPEN_CACHE_DIR itself), checked
// against the directory's mtime whenever its attributes are refreshed and
// dropped whenever the directory changes through the mount. A warm walk of
// an unchanged tree then costs no request at all.
//
// Without a handle from OPENDIR, READDIR(PLUS) arrives with file handle 0;
// cachingFS opens a handle for just that request (dirlist.go).
//
// Negative entries: go-fuse gives every ENOENT of a lookup the mount's
// negative timeout, or, where a node set a timeout of its own, answers
// ENOENT, which the kernel does not cache at all. cachingFS turns the
// latter into a negative entry with the node's timeout, so that names
// probed again and again (git, compilers and shells look for files that
// are not there) cost a round trip once, and a directory the watcher does
// not cover keeps them only briefly.

// cachingFS is the filesystem as the kernel sees it: directories opened by
// the kernel itself, negative entries with the lifetime their node gives.
type cachingFS struct {
	fuse.RawFileSystem
}

func (c cachingFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	st := c.RawFileSystem.Lookup(cancel, h, name, out)
	if st == fuse.ENOENT && out.NodeId == 0 && out.EntryTimeout() > 0 {
		return fuse.OK // a negative entry: node ID 0, cached for that long
	}
	return st
}

func (c cachingFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

func (c cachingFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return c.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status { return c.RawFileSystem.ReadDir(cancel, in, out) })
}

func (c cachingFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return c.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status { return c.RawFileSystem.ReadDirPlus(cancel, in, out) })
}

// withHandle runs read with a directory handle opened for it when the kernel
// sent none.
func (c cachingFS) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, read func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return read(in)
	}
	var opened fuse.OpenOut
	open := fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}
	if st := c.RawFileSystem.OpenDir(cancel, &open, &opened); st != fuse.OK {
		return st
	}
	defer c.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: opened.Fh})
	with := *in
	with.Fh = opened.Fh
	return read(&with)
}
