package fs

import (
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"cryptpt/crypt"
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// Watching the vault for changes made behind the daemon's back.
//
// The kernel keeps names, attributes, listings and file contents for as
// long as the daemon says they are good (cacheTimeout: an hour); changes
// made through the mount update those caches at once. A change made to the
// vault directly (a sync tool, another mount of the same vault, a user in
// the vault directory) would go unseen for that long, so the daemon
// watches every backing directory the kernel holds with inotify and turns
// what changed there into invalidations (NotifyEntry, NotifyContent), after comparing with what the daemon itself reported, so
// that its own changes cost nothing more. Directories it cannot watch
// (the user's inotify watch limit) keep the short unwatchedTimeout.
// Changes on another machine of a network filesystem raise no inotify
// event: such vaults want SharedStorage.

// unwatchedTimeout is the cache lifetime where no watch covers an entry.
const unwatchedTimeout = 5 * time.Second

// watchBatch is how long the watcher gathers events before acting on them:
// an event raised by the daemon's own request then usually finds that
// request done, and one entry's several events are handled once.
const watchBatch = 20 * time.Millisecond

// watchMask: what changes an entry's name, attributes or content. No
// IN_MODIFY, which would wake the daemon for every write (passthrough
// writes too); a writer's close (IN_CLOSE_WRITE) reports content changes.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

const entryEvents = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO

type watcher struct {
	v      *vault
	fd     int
	wake   [2]int        // a pipe: close writes to it so run stops at once
	done   chan struct{} // closed when run has returned
	closed atomic.Bool
	busy   atomic.Bool // between noticing events and having acted on them

	mu       sync.Mutex
	dirs     map[int32]*node // watch descriptor -> directory node
	limitHit bool            // the watch limit was reached (logged once)
}

// newWatcher starts watching; nil when inotify is not available, and then
// every entry has the short timeout.
func newWatcher(v *vault) *watcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		v.logf("cannot watch the vault for outside changes (%v): names and attributes are cached for %v only", err, unwatchedTimeout)
		return nil
	}
	w := &watcher{v: v, fd: fd, dirs: map[int32]*node{}, done: make(chan struct{})}
	if err := unix.Pipe2(w.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		v.logf("cannot watch the vault for outside changes (%v): names and attributes are cached for %v only", err, unwatchedTimeout)
		return nil
	}
	go w.run()
	return w
}

// close stops the watcher and returns once it no longer touches the vault.
func (w *watcher) close() {
	if w == nil || w.closed.Swap(true) {
		return
	}
	unix.Write(w.wake[1], []byte{0})
	<-w.done
}

// watched reports whether outside changes in directory n reach the kernel.
func (n *node) watched() bool { return n.wd.Load() > 0 }

// entryTimeout is how long the kernel may trust an entry of directory n.
func (n *node) entryTimeout() time.Duration {
	switch {
	case n.v.opts.SharedStorage:
		return 0
	case n.watched():
		return cacheTimeout
	}
	return unwatchedTimeout
}

// attrTimeout is how long the kernel may trust n's attributes: changes to
// them are reported by the watch of its directory (the root's own).
func (n *node) attrTimeout() time.Duration {
	if p, _, errno := n.parent(); errno == 0 {
		return p.entryTimeout()
	}
	return n.entryTimeout()
}

// watch starts watching directory n, whose backing directory is open at
// fd, unless it is watched already or cannot be.
func (w *watcher) watch(n *node, fd int) {
	if w == nil || n.wd.Load() != 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if n.wd.Load() != 0 || w.closed.Load() {
		return
	}
	wd, err := unix.InotifyAddWatch(w.fd, procFdPath(fd), watchMask)
	if err != nil {
		n.wd.Store(-1)
		if err == unix.ENOSPC && !w.limitHit {
			w.limitHit = true
			w.v.logf("inotify watch limit reached (%d directories watched): entries in further directories are cached for %v only (raise fs.inotify.max_user_watches)", len(w.dirs), unwatchedTimeout)
		}
		return
	}
	if old := w.dirs[int32(wd)]; old != nil && old != n {
		// The same backing directory under a second node (a node the
		// kernel has not forgotten yet): the newer one gets the events.
		old.wd.Store(0)
	}
	w.dirs[int32(wd)] = n
	n.wd.Store(int32(wd))
}

// unwatch stops watching n (the kernel forgot it).
func (w *watcher) unwatch(n *node) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	wd := n.wd.Swap(0)
	if wd > 0 && w.dirs[wd] == n {
		delete(w.dirs, wd)
		if !w.closed.Load() {
			unix.InotifyRmWatch(w.fd, uint32(wd))
		}
	}
}

type watchKey struct {
	wd   int32
	name string
}

// watchEvent is one entry's events of a batch, merged.
type watchEvent struct {
	dir  *node
	name string // stored name; "" for the directory itself
	mask uint32
}

func (w *watcher) run() {
	defer close(w.done)
	defer unix.Close(w.wake[0])
	defer unix.Close(w.wake[1])
	defer unix.Close(w.fd)
	buf := make([]byte, 64<<10)
	for !w.closed.Load() {
		if !w.wait(time.Second) {
			continue
		}
		w.busy.Store(true)
		// Gather for watchBatch, then act.
		time.Sleep(watchBatch)
		var batch []watchEvent
		index := map[watchKey]int{}
		overflow := false
		for {
			nr, err := unix.Read(w.fd, buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil || nr <= 0 {
				break
			}
			overflow = w.parse(buf[:nr], &batch, index) || overflow
		}
		if overflow {
			w.invalidateAll()
		} else {
			for _, e := range batch {
				w.apply(e)
			}
		}
		w.busy.Store(false)
	}
}

// settle waits until the watcher has acted on every event queued so far.
// An event is queued before the syscall that caused it returns, so after
// settle the kernel has been told of every change made before the call.
func (w *watcher) settle() {
	if w == nil {
		return
	}
	for !w.closed.Load() {
		pending, err := unix.IoctlGetInt(w.fd, unix.TIOCINQ)
		if err != nil || (pending == 0 && !w.busy.Load()) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// wait polls the inotify fd for up to d and reports whether it is
// readable; close wakes it at once.
func (w *watcher) wait(d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake[0]), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(d/time.Millisecond))
	return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0 && !w.closed.Load()
}

// parse adds the events in buf to batch, merging those of one entry, and
// reports a queue overflow.
func (w *watcher) parse(buf []byte, batch *[]watchEvent, index map[watchKey]int) (overflow bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		off += unix.SizeofInotifyEvent + int(ev.Len)
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			overflow = true
			continue
		}
		dir := w.dirs[ev.Wd]
		if ev.Mask&unix.IN_IGNORED != 0 {
			if dir != nil && dir.wd.Load() == ev.Wd {
				dir.wd.Store(0)
			}
			delete(w.dirs, ev.Wd)
			continue
		}
		if dir == nil {
			continue
		}
		name := string(nameBytes)
		for i := range len(name) {
			if name[i] == 0 {
				name = name[:i]
				break
			}
		}
		key := watchKey{ev.Wd, name}
		if i, ok := index[key]; ok {
			(*batch)[i].mask |= ev.Mask
			continue
		}
		index[key] = len(*batch)
		*batch = append(*batch, watchEvent{dir: dir, name: name, mask: ev.Mask})
	}
	return overflow
}

// apply turns one entry's events into invalidations where the vault now
// differs from what the kernel was told.
func (w *watcher) apply(e watchEvent) {
	dir := e.dir
	if e.name == "" {
		// The directory itself; its parent's watch reports changes to it,
		// except for the root.
		if dir.IsRoot() && e.mask&unix.IN_ATTRIB != 0 {
			var st syscall.Stat_t
			if syscall.Fstat(dir.v.rootFd, &st) == nil && dir.changedFrom(&st) {
				dir.NotifyContent(-1, 0)
			}
		}
		return
	}
	fd, release, errno := dir.dirfd()
	if errno != 0 {
		return
	}
	if e.name == crypt.DirIVName {
		// A sync tool replaced the directory's IV (the same directory
		// made on two devices): every encrypted name here reads anew.
		changed := dir.dropChangedIV(fd)
		release()
		if changed {
			for name := range dir.Children() {
				dir.NotifyEntry(name)
			}
			dir.NotifyContent(0, 0)
		}
		return
	}
	name, _, ok := dir.plainName(fd, e.name)
	var st syscall.Stat_t
	var err error = syscall.ENOENT
	if ok {
		err = fstatat(fd, e.name, &st)
	}
	release()
	if !ok {
		// Not an entry of the mount (the directory IV, a sidecar, a temp
		// file), or one it cannot name: only the listing may differ.
		if e.mask&entryEvents != 0 {
			dir.NotifyContent(0, 0)
		}
		return
	}
	child := dir.childNode(name)
	switch {
	case child == nil:
		if e.mask&entryEvents == 0 {
			return // attributes of an entry the kernel does not hold
		}
		// New, or gone, without the kernel knowing the name: drop a
		// negative entry and the cached listing.
		dir.NotifyEntry(name)
		dir.NotifyContent(0, 0)
	case err != nil || st.Ino != child.ino.Load():
		// This form of the name is gone or names another file now. The
		// other form may hold the same file: migrate converted it.
		// NotifyEntry, not NotifyDelete: the kernel clears the link
		// count of an inode it is told was deleted, which would be wrong
		// for a file that is still there under another name, or again
		// (an event the daemon's own multi-step operations raise, seen
		// mid-way). A dropped name is only looked up again.
		if ino, found := dir.resolveIno(name); found && ino == child.ino.Load() {
			return
		}
		dir.NotifyEntry(name)
		dir.NotifyContent(0, 0)
	case child.changedFrom(&st):
		// Same file, other attributes or content than reported.
		child.NotifyContent(0, 0)
		// The view starts afresh, but not under open files: their
		// writes, cached there, are what makes the vault differ (the
		// view writes back later than the daemon reported), and a
		// second view of the file would not see them.
		dir.v.view.retireIdle(child)
	}
}

// dropChangedIV forgets the directory's cached IV if the vault now holds
// another one (or none), and reports whether it did.
func (n *node) dropChangedIV(fd int) bool {
	now, err := layout.ReadDirIV(fd)
	n.ivMu.Lock()
	defer n.ivMu.Unlock()
	if n.iv == nil || (err == nil && *now == *n.iv) {
		return false
	}
	n.iv = nil
	return true
}

// resolveIno finds name in directory n in either form, as Lookup does, and
// returns the backing inode number it names.
func (n *node) resolveIno(name string) (uint64, bool) {
	fd, release, errno := n.dirfd()
	if errno != 0 {
		return 0, false
	}
	defer release()
	for _, enc := range []bool{true, false} {
		stored, errno := n.storedName(name, enc, false)
		if errno != 0 {
			continue
		}
		var st syscall.Stat_t
		if fstatat(fd, stored, &st) == nil {
			return st.Ino, true
		}
	}
	return 0, false
}

// invalidateAll makes the kernel forget every cached name, attribute and
// listing of the watched directories, after events were lost.
func (w *watcher) invalidateAll() {
	w.mu.Lock()
	dirs := make([]*node, 0, len(w.dirs))
	for _, d := range w.dirs {
		dirs = append(dirs, d)
	}
	w.mu.Unlock()
	w.v.logf("too many changes in the vault at once to follow one by one: the kernel forgets what it cached of the mount")
	for _, d := range dirs {
		for name, ch := range d.Children() {
			if ch.StableAttr().Mode&syscall.S_IFMT != syscall.S_IFDIR {
				ch.NotifyContent(0, 0)
			}
			d.NotifyEntry(name)
		}
		d.NotifyContent(0, 0)
	}
}

// saw records the backing state the daemon last reported or wrote for n.
func (n *node) saw(st *syscall.Stat_t) {
	n.knownSize.Store(st.Size)
	n.knownMtime.Store(st.Mtim.Nano())
	n.knownCtime.Store(st.Ctim.Nano())
}

// changedFrom reports whether st differs from what n last reported or
// wrote, and records it.
func (n *node) changedFrom(st *syscall.Stat_t) bool {
	same := n.knownSize.Load() == st.Size && n.knownMtime.Load() == st.Mtim.Nano() && n.knownCtime.Load() == st.Ctim.Nano()
	n.saw(st)
	return !same
}

func procFdPath(fd int) string {
	return "/proc/self/fd/" + strconv.Itoa(fd)
}
