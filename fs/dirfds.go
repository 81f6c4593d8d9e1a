package fs

import (
	"container/list"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirFds bounds the O_PATH fds of backing directories that the daemon
// holds. Each directory node used to keep one until the kernel forgot the
// directory, so a walk of 30,000 directories held 20,000 fds (the hard
// limit here) and the mount then failed with EMFILE. Now at most max fds
// stay open; beyond that the least recently used ones that no request is
// using are closed, and reopened by name, relative to the parent's fd, when
// needed again.
//
// Lock order: a node's fd state (fd, fdRefs, fdElem) is guarded by mu, which
// is never held while a directory is opened or any other lock is taken.
type dirFds struct {
	mu  sync.Mutex
	max int
	lru list.List // of *node with an open fd; front is the most recent
}

// dirFdBudget picks the bound: a quarter of the fd limit (the rest is for
// open files and the kernel's FUSE channel), at least 16 and at most 4096.
func dirFdBudget() int {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return 256
	}
	return int(min(max(lim.Cur/4, 16), 4096))
}

// dirfd returns the O_PATH fd of this directory's backing directory and a
// release the caller must call when done with it: until then the fd is
// neither closed nor reused. A reopened directory must be the one the node
// stands for (same inode number); otherwise it was replaced behind the
// daemon's back, and the result is ENOENT so that the kernel looks again.
func (n *node) dirfd() (int, func(), syscall.Errno) {
	if n.IsRoot() {
		return n.v.rootFd, func() {}, 0
	}
	c := &n.v.dirs
	c.mu.Lock()
	if n.fd >= 0 {
		n.fdRefs++
		c.lru.MoveToFront(n.fdElem)
		c.mu.Unlock()
		return n.fd, n.releaseFd, 0
	}
	c.mu.Unlock()

	p, name, errno := n.parent()
	if errno != 0 {
		return -1, nil, errno
	}
	pfd, prelease, errno := p.dirfd()
	if errno != 0 {
		return -1, nil, errno
	}
	defer prelease()
	stored, errno := p.storedName(name, n.isEnc(), false)
	if errno != 0 {
		return -1, nil, errno
	}
	open := func() (int, error) {
		return unix.Openat(pfd, stored, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	fd, err := open()
	if err == unix.EMFILE || err == unix.ENFILE {
		// Out of fds: give back all unused directory fds and try again.
		c.shrink(0)
		fd, err = open()
	}
	if err != nil {
		return -1, nil, toErrno(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || (n.ino.Load() != 0 && st.Ino != n.ino.Load()) {
		unix.Close(fd)
		if err != nil {
			return -1, nil, toErrno(err)
		}
		n.v.logf("directory %s was replaced in the vault behind the mount: looked up again", n.v.entryName(n))
		return -1, nil, syscall.ENOENT
	}

	c.mu.Lock()
	if n.fd >= 0 {
		// Another request opened it meanwhile: use that one.
		n.fdRefs++
		c.lru.MoveToFront(n.fdElem)
		c.mu.Unlock()
		unix.Close(fd)
		return n.fd, n.releaseFd, 0
	}
	n.fd, n.fdRefs = fd, 1
	n.fdElem = c.lru.PushFront(n)
	victims := c.evictLocked(c.max)
	c.mu.Unlock()
	closeAll(victims)
	return fd, n.releaseFd, 0
}

func (n *node) releaseFd() {
	c := &n.v.dirs
	c.mu.Lock()
	n.fdRefs--
	c.mu.Unlock()
}

// forgetFd closes the node's fd unless a request still uses it; then it
// stays in the LRU, to be closed once unused.
func (n *node) forgetFd() {
	c := &n.v.dirs
	c.mu.Lock()
	var fd = -1
	if n.fd >= 0 && n.fdRefs == 0 {
		fd = n.fd
		c.lru.Remove(n.fdElem)
		n.fd, n.fdElem = -1, nil
	}
	c.mu.Unlock()
	if fd >= 0 {
		unix.Close(fd)
	}
}

// evictLocked drops unused fds from the least recently used end until at
// most keep are open, and returns them for closing outside the lock.
func (c *dirFds) evictLocked(keep int) []int {
	var victims []int
	for e := c.lru.Back(); e != nil && c.lru.Len() > keep; {
		prev := e.Prev()
		if v := e.Value.(*node); v.fdRefs == 0 {
			victims = append(victims, v.fd)
			c.lru.Remove(e)
			v.fd, v.fdElem = -1, nil
		}
		e = prev
	}
	return victims
}

// shrink closes unused directory fds until at most keep are open.
func (c *dirFds) shrink(keep int) {
	c.mu.Lock()
	victims := c.evictLocked(keep)
	c.mu.Unlock()
	closeAll(victims)
}

// open reports how many directory fds are open.
func (c *dirFds) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
