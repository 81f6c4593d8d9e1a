package fs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// ErrMountpointMoved means a component of the mountpoint's path was
// replaced by a symlink (or the directory by something else) while the
// daemon was mounting: it mounts only on the directory it checked.
var ErrMountpointMoved = errors.New("the mountpoint's path changed while mounting (a component became a symlink or no directory)")

// ErrAllowOtherDenied means a daemon that mounts by itself without being
// root was asked for allow_other, which /etc/fuse.conf does not permit.
var ErrAllowOtherDenied = errors.New("allow_other is only allowed to users other than root if 'user_allow_other' is set in /etc/fuse.conf")

// fuseConf is where fusermount3 reads user_allow_other.
const fuseConf = "/etc/fuse.conf"

// mountTarget is a mountpoint held open for a daemon that calls mount(2)
// itself (root, or CAP_SYS_ADMIN), as fusermount3 holds it: found without
// following symlinks, checked through its fd, and mounted on through that
// fd, so no symlink or directory swapped into the path between check and
// mount(2) can redirect the mount (over /usr/local/sbin, say). The fd stays
// open while mounted: unmount finds the mount through it, wherever the
// path leads by then.
type mountTarget struct {
	mu    sync.Mutex // guards dirfd against close while unmounting
	path  string     // canonical absolute path when opened
	dirfd int        // O_PATH fd of the directory mounted on; -1 once closed
	dev   uint64     // the mount's device, once served
}

// openMountpoint resolves dir to its canonical path and opens it,
// component by component without following symlinks.
func openMountpoint(dir string) (*mountTarget, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	canon, err := filepath.EvalSymlinks(abs)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrMountpointMissing
	}
	if err != nil {
		return nil, err
	}
	if canon == "/" {
		return nil, errors.New("cannot mount on /")
	}
	fd, err := openNoSymlinks(canon)
	if err != nil {
		return nil, err
	}
	return &mountTarget{path: canon, dirfd: fd}, nil
}

// openNoSymlinks opens an absolute, canonical directory path (O_PATH)
// walking it one component at a time, refusing symlinks.
func openNoSymlinks(path string) (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(path, "/") {
		if c == "" {
			continue
		}
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err == unix.ENOTDIR || err == unix.ELOOP || err == unix.ENOENT {
			return -1, ErrMountpointMoved
		}
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// close releases the fd.
func (mt *mountTarget) close() {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	if mt.dirfd >= 0 {
		unix.Close(mt.dirfd)
		mt.dirfd = -1
	}
}

// checkUser enforces fusermount3's rule for a daemon that calls mount(2)
// itself without being root: the mountpoint must be owned by, or writable
// by, the user it runs as, and owned by them if it is sticky. Otherwise
// CAP_SYS_ADMIN alone would let the user hide any empty directory
// (/run/sshd, /usr/local/sbin) from everyone. Root may mount anywhere.
// allowOther, for such a daemon, needs user_allow_other in /etc/fuse.conf,
// as fusermount3 demands.
func (mt *mountTarget) checkUser(allowOther bool) error {
	uid := unix.Geteuid()
	if uid == 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(mt.dirfd, &st); err != nil {
		return err
	}
	owned := st.Uid == uint32(uid)
	if st.Mode&unix.S_ISVTX != 0 && !owned {
		return ErrMountpointDenied
	}
	if !owned && unix.Faccessat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", mt.dirfd), unix.W_OK, unix.AT_EACCESS) != nil {
		return ErrMountpointDenied
	}
	if allowOther && !userAllowOther(fuseConf) {
		return ErrAllowOtherDenied
	}
	return nil
}

// userAllowOther reports whether the fuse.conf at path has a line
// "user_allow_other" (blanks around it allowed, "#" starts a comment), as
// fusermount3 reads it: it ignores a last line without a newline.
func userAllowOther(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return false
		}
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
}

// mount mounts a new FUSE connection on the directory, with go-fuse's
// options as its direct mount would pass them, and returns the /dev/fuse
// fd, for go-fuse's "/dev/fd/N" mountpoint.
func (mt *mountTarget) mount(mo *fuse.MountOptions) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(mt.dirfd, &st); err != nil {
		return -1, err
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	data := []string{
		fmt.Sprintf("fd=%d", fd),
		fmt.Sprintf("rootmode=%o", st.Mode&unix.S_IFMT),
		fmt.Sprintf("user_id=%d", unix.Geteuid()),
		fmt.Sprintf("group_id=%d", unix.Getegid()),
		fmt.Sprintf("max_read=%d", mo.MaxWrite),
	}
	data = append(data, mo.Options...)
	if mo.AllowOther {
		data = append(data, "allow_other")
	}
	source := mo.FsName
	if source == "" {
		source = mo.Name
	}
	target := fmt.Sprintf("/proc/self/fd/%d", mt.dirfd)
	if err := unix.Mount(source, target, "fuse."+mo.Name, unix.MS_NOSUID|unix.MS_NODEV, strings.Join(data, ",")); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// served is called once the connection is served: it records the mount's
// device, so unmount can tell this mount from one made over it, and does
// go-fuse's poll hack.
func (mt *mountTarget) served() {
	root, done, err := mt.root()
	if err != nil {
		return
	}
	defer done()
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err == nil {
		mt.dev = st.Dev
	}
	// What go-fuse's WaitMount does on a mount it made itself: open its
	// special file and poll it, so the kernel learns that POLL is not
	// implemented and never sends it again (the Go runtime's poller can
	// trigger one for a file of the daemon's own mount).
	if fd, err := unix.Open(root+"/.go-fuse-epoll-hack", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
		unix.Close(fd)
	}
}

// root names the root of the mount on the directory: its current parent
// (its ".."), held open until done is called, and its current name there.
// A directory that is a mount point can be neither renamed nor removed, so
// this is the mount, or one made over it, however the path to it changed.
func (mt *mountTarget) root() (string, func(), error) {
	if mt.dirfd < 0 {
		return "", nil, errors.New("not mounted")
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", mt.dirfd))
	if err != nil {
		return "", nil, err
	}
	pfd, err := unix.Openat(mt.dirfd, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", pfd, filepath.Base(link)), func() { unix.Close(pfd) }, nil
}

// unmount unmounts this mount after checking that it is still the one on
// top. Like go-fuse, it tries a few times: the kernel may still count files
// as open for a moment after their last close.
func (mt *mountTarget) unmount() error {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	root, done, err := mt.root()
	if err != nil {
		return err
	}
	defer done()
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err == nil && mt.dev != 0 && st.Dev != mt.dev {
		return fmt.Errorf("%s: another filesystem is mounted over this mount", mt.path)
	}
	delay := time.Duration(0)
	for try := 0; try < 5; try++ {
		if err = unix.Unmount(root, unix.UMOUNT_NOFOLLOW); err == nil {
			return nil
		}
		delay = 2*delay + 5*time.Millisecond
		time.Sleep(delay)
	}
	return err
}
