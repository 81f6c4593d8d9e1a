package fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// ptHelper is the client of cmd/cryptpt-ptreg, the small program holding
// CAP_SYS_ADMIN that registers passthrough backing files for a daemon that
// holds no capability (its protocol is described there). Calls are
// serialized; go-fuse makes them under its own backing lock anyway. If the
// helper dies, registering fails with EIO and go-fuse serves the rest of
// the mount's plaintext opens through the daemon.
type ptHelper struct {
	mu   sync.Mutex
	sock int
	cmd  *exec.Cmd
}

// startPTHelper runs the helper at path and hands it fuseFd, the /dev/fuse
// fd of this mount. The fd stays owned by the caller.
func startPTHelper(path string, fuseFd int) (*ptHelper, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// The helper gets its socket and nothing else: fds this process
	// inherited without close-on-exec (the daemon's ready pipe) would
	// otherwise stay open in it.
	closeOnExecAll()
	theirs := os.NewFile(uintptr(pair[1]), "ptreg")
	cmd := exec.Command(path)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Env = []string{}
	cmd.Stderr = os.Stderr
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		unix.Close(pair[0])
		return nil, err
	}
	h := &ptHelper{sock: pair[0], cmd: cmd}
	if res, err := h.call('F', 0, fuseFd); err != nil || res != 0 {
		h.close()
		if err == nil {
			err = syscall.Errno(-res)
		}
		return nil, fmt.Errorf("the helper refused the FUSE device: %w", err)
	}
	return h, nil
}

func closeOnExecAll() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

// call sends one request and returns the helper's result.
func (h *ptHelper) call(op byte, id int32, fd int) (int32, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var req [5]byte
	req[0] = op
	binary.LittleEndian.PutUint32(req[1:], uint32(id))
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(h.sock, req[:], oob, nil, 0); err != nil {
		return 0, err
	}
	var reply [4]byte
	n, err := unix.Read(h.sock, reply[:])
	if err != nil {
		return 0, err
	}
	if n != len(reply) {
		return 0, errors.New("the passthrough helper exited")
	}
	return int32(binary.LittleEndian.Uint32(reply[:])), nil
}

func (h *ptHelper) register(fd int) (int32, syscall.Errno) {
	res, err := h.call('O', 0, fd)
	if err != nil {
		return 0, syscall.EIO
	}
	if res < 0 {
		return 0, syscall.Errno(-res)
	}
	return res, 0
}

func (h *ptHelper) unregister(id int32) syscall.Errno {
	res, err := h.call('C', id, -1)
	if err != nil {
		return syscall.EIO
	}
	return syscall.Errno(-res)
}

func (h *ptHelper) close() {
	unix.Close(h.sock)
	h.cmd.Wait()
}

// backingRegistrar registers passthrough backing files: the fuse.Server
// itself, or helperCallbacks.
type backingRegistrar interface {
	RegisterBackingFd(*fuse.BackingMap) (int32, syscall.Errno)
	UnregisterBackingFd(id int32) syscall.Errno
}

// helperCallbacks is what go-fuse's node bridge calls back into: the
// server's notifications, but backing files go through the helper. go-fuse
// looks for RegisterBackingFd on its ServerCallbacks (fs/bridge.go,
// addBackingID), so this is the hook that needs no patch of go-fuse.
type helperCallbacks struct {
	*fuse.Server
	h *ptHelper
}

var _ = (gofs.ServerCallbacks)((*helperCallbacks)(nil))
var _ = (backingRegistrar)((*helperCallbacks)(nil))
var _ = (backingRegistrar)((*fuse.Server)(nil))

func (c *helperCallbacks) RegisterBackingFd(m *fuse.BackingMap) (int32, syscall.Errno) {
	if c.h == nil {
		return 0, syscall.EPERM // the helper did not start
	}
	return c.h.register(int(m.Fd))
}

func (c *helperCallbacks) UnregisterBackingFd(id int32) syscall.Errno {
	if c.h == nil {
		return syscall.EPERM
	}
	return c.h.unregister(id)
}

// initHook keeps go-fuse from replacing the callbacks with the bare server:
// rawBridge.Init (go-fuse v2.12.1) only stores its argument as the
// callbacks, so instead the server goes into helperCallbacks.
type initHook struct {
	fuse.RawFileSystem
	cb *helperCallbacks
}

func (i *initHook) Init(s *fuse.Server) { i.cb.Server = s }

// mountWithHelper mounts like gofs.Mount, with backing files registered by
// the helper at helperPath. If the helper cannot start, the mount goes on
// without it (passthrough off, the reason in status).
//
// newFS makes the filesystem once opts name the helper's callbacks.
func mountWithHelper(mountpoint string, newFS func() fuse.RawFileSystem, opts *gofs.Options, helperPath string) (*fuse.Server, *helperCallbacks, error) {
	cb := &helperCallbacks{}
	opts.ServerCallbacks = cb
	raw := &initHook{RawFileSystem: newFS(), cb: cb}
	before, err := fuseDeviceFds()
	if err != nil {
		return nil, nil, err
	}
	server, err := fuse.NewServer(raw, mountpoint, &opts.MountOptions)
	if err != nil {
		return nil, nil, err
	}
	var herr error
	if fd, err := newFuseDeviceFd(before); err != nil {
		herr = err
	} else if cb.h, herr = startPTHelper(helperPath, fd); herr != nil {
		cb.h = nil
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, nil, err
	}
	if herr != nil {
		return server, nil, herr
	}
	return server, cb, nil
}

// fuseDeviceFds lists this process's /dev/fuse fds.
func fuseDeviceFds() (map[int]bool, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	fds := map[int]bool{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == 10 && unix.Minor(st.Rdev) == 229 {
			fds[fd] = true
		}
	}
	return fds, nil
}

// newFuseDeviceFd finds the /dev/fuse fd of the mount just made: the one
// not among before (the view's connection is older).
func newFuseDeviceFd(before map[int]bool) (int, error) {
	now, err := fuseDeviceFds()
	if err != nil {
		return -1, err
	}
	found := -1
	for fd := range now {
		if before[fd] {
			continue
		}
		if found >= 0 {
			return -1, errors.New("more than one new FUSE connection in this process")
		}
		found = fd
	}
	if found < 0 {
		return -1, errors.New("no /dev/fuse fd found")
	}
	return found, nil
}
