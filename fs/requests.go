package fs

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Request opcodes counted by countingFS, in the kernel's names.
const (
	opLookup = iota
	opForget
	opGetattr
	opSetattr
	opMknod
	opMkdir
	opUnlink
	opRmdir
	opRename
	opLink
	opSymlink
	opReadlink
	opAccess
	opGetxattr
	opListxattr
	opSetxattr
	opRemovexattr
	opCreate
	opOpen
	opRead
	opWrite
	opFlush
	opRelease
	opFsync
	opFallocate
	opLseek
	opCopyFileRange
	opOpendir
	opReaddir
	opReaddirplus
	opReleasedir
	opFsyncdir
	opStatfs
	opStatx
	numOps
)

var opNames = [numOps]string{
	"LOOKUP", "FORGET", "GETATTR", "SETATTR", "MKNOD", "MKDIR", "UNLINK", "RMDIR",
	"RENAME", "LINK", "SYMLINK", "READLINK", "ACCESS", "GETXATTR", "LISTXATTR",
	"SETXATTR", "REMOVEXATTR", "CREATE", "OPEN", "READ", "WRITE", "FLUSH", "RELEASE",
	"FSYNC", "FALLOCATE", "LSEEK", "COPY_FILE_RANGE", "OPENDIR", "READDIR",
	"READDIRPLUS", "RELEASEDIR", "FSYNCDIR", "STATFS", "STATX",
}

// RequestCount is how often the kernel sent one kind of request and how long
// the daemon took to answer them, in total.
type RequestCount struct {
	Op      string `json:"op"`
	Count   int64  `json:"count"`
	TotalUs int64  `json:"total_us"`
}

// requestCounts counts the requests the kernel sends, by opcode, with the
// time spent answering them: what a metadata-heavy step costs is the number
// of round trips times their latency, and this shows both (cryptpt status
// --json). Two atomic adds per request.
type requestCounts struct {
	count [numOps]atomic.Int64
	nanos [numOps]atomic.Int64
}

func (r *requestCounts) done(op int, start time.Time) {
	r.count[op].Add(1)
	r.nanos[op].Add(int64(time.Since(start)))
}

// snapshot lists the opcodes seen so far, most frequent first.
func (r *requestCounts) snapshot() []RequestCount {
	var out []RequestCount
	for op := range numOps {
		if n := r.count[op].Load(); n > 0 {
			out = append(out, RequestCount{Op: opNames[op], Count: n, TotalUs: r.nanos[op].Load() / 1e3})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	return out
}

// countingFS passes every request on and counts it in r. Requests it does
// not name (locks, ioctl, tmpfile) are passed on uncounted.
type countingFS struct {
	fuse.RawFileSystem
	r *requestCounts
}

func (c countingFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer c.r.done(opLookup, time.Now())
	return c.RawFileSystem.Lookup(cancel, h, name, out)
}

func (c countingFS) Forget(nodeid, nlookup uint64) {
	defer c.r.done(opForget, time.Now())
	c.RawFileSystem.Forget(nodeid, nlookup)
}

func (c countingFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer c.r.done(opGetattr, time.Now())
	return c.RawFileSystem.GetAttr(cancel, in, out)
}

func (c countingFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer c.r.done(opSetattr, time.Now())
	return c.RawFileSystem.SetAttr(cancel, in, out)
}

func (c countingFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer c.r.done(opMknod, time.Now())
	return c.RawFileSystem.Mknod(cancel, in, name, out)
}

func (c countingFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer c.r.done(opMkdir, time.Now())
	return c.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (c countingFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer c.r.done(opUnlink, time.Now())
	return c.RawFileSystem.Unlink(cancel, h, name)
}

func (c countingFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer c.r.done(opRmdir, time.Now())
	return c.RawFileSystem.Rmdir(cancel, h, name)
}

func (c countingFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer c.r.done(opRename, time.Now())
	return c.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (c countingFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer c.r.done(opLink, time.Now())
	return c.RawFileSystem.Link(cancel, in, name, out)
}

func (c countingFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	defer c.r.done(opSymlink, time.Now())
	return c.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (c countingFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	defer c.r.done(opReadlink, time.Now())
	return c.RawFileSystem.Readlink(cancel, h)
}

func (c countingFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	defer c.r.done(opAccess, time.Now())
	return c.RawFileSystem.Access(cancel, in)
}

func (c countingFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	defer c.r.done(opGetxattr, time.Now())
	return c.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (c countingFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	defer c.r.done(opListxattr, time.Now())
	return c.RawFileSystem.ListXAttr(cancel, h, dest)
}

func (c countingFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	defer c.r.done(opSetxattr, time.Now())
	return c.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (c countingFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	defer c.r.done(opRemovexattr, time.Now())
	return c.RawFileSystem.RemoveXAttr(cancel, h, attr)
}

func (c countingFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer c.r.done(opCreate, time.Now())
	return c.RawFileSystem.Create(cancel, in, name, out)
}

func (c countingFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer c.r.done(opOpen, time.Now())
	return c.RawFileSystem.Open(cancel, in, out)
}

func (c countingFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer c.r.done(opRead, time.Now())
	return c.RawFileSystem.Read(cancel, in, buf)
}

func (c countingFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer c.r.done(opWrite, time.Now())
	return c.RawFileSystem.Write(cancel, in, data)
}

func (c countingFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	defer c.r.done(opWrite, time.Now())
	return c.RawFileSystem.Writev(cancel, in, data)
}

func (c countingFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	defer c.r.done(opFlush, time.Now())
	return c.RawFileSystem.Flush(cancel, in)
}

func (c countingFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	defer c.r.done(opRelease, time.Now())
	c.RawFileSystem.Release(cancel, in)
}

func (c countingFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer c.r.done(opFsync, time.Now())
	return c.RawFileSystem.Fsync(cancel, in)
}

func (c countingFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer c.r.done(opFallocate, time.Now())
	return c.RawFileSystem.Fallocate(cancel, in)
}

func (c countingFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	defer c.r.done(opLseek, time.Now())
	return c.RawFileSystem.Lseek(cancel, in, out)
}

func (c countingFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	defer c.r.done(opCopyFileRange, time.Now())
	return c.RawFileSystem.CopyFileRange(cancel, in)
}

func (c countingFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer c.r.done(opOpendir, time.Now())
	return c.RawFileSystem.OpenDir(cancel, in, out)
}

func (c countingFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer c.r.done(opReaddir, time.Now())
	return c.RawFileSystem.ReadDir(cancel, in, out)
}

func (c countingFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer c.r.done(opReaddirplus, time.Now())
	return c.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (c countingFS) ReleaseDir(in *fuse.ReleaseIn) {
	defer c.r.done(opReleasedir, time.Now())
	c.RawFileSystem.ReleaseDir(in)
}

func (c countingFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer c.r.done(opFsyncdir, time.Now())
	return c.RawFileSystem.FsyncDir(cancel, in)
}

func (c countingFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer c.r.done(opStatfs, time.Now())
	return c.RawFileSystem.StatFs(cancel, h, out)
}

func (c countingFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	defer c.r.done(opStatx, time.Now())
	return c.RawFileSystem.Statx(cancel, in, out)
}
