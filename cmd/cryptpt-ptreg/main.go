// Command cryptpt-ptreg registers FUSE passthrough backing files for an
// unprivileged cryptpt daemon, and does nothing else.
//
// The kernel accepts FUSE_DEV_IOC_BACKING_OPEN (and _CLOSE) only from a
// caller holding CAP_SYS_ADMIN. This helper is installed with that one file
// capability (setcap cap_sys_admin+ep), as fusermount3 is installed setuid,
// so the daemon itself runs with none. The daemon starts it with a
// SOCK_SEQPACKET socket as fd 3 and speaks a fixed-size protocol:
//
//	request:  op (1 byte) | id (int32, little-endian)   [+ one fd by SCM_RIGHTS]
//	reply:    result (int32, little-endian): a backing id, 0, or -errno
//
//	'F' + fd   the connection's /dev/fuse fd; first and only once
//	'O' + fd   register a backing file: reply the backing id
//	'C' id     unregister a backing id this helper registered
//
// It checks that the first fd is the FUSE device (character device 10:229),
// that each backing fd is a regular file opened for reading or writing (not
// O_PATH), that a close names an id it registered itself, and that at most
// maxBacking ids are registered at once. It opens no file, runs no program,
// reads no environment, and exits when the socket closes.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux fs/fuse ioctls (include/uapi/linux/fuse.h).
const (
	devIocBackingOpen  = 0x4010e501 // _IOW(229, 1, struct fuse_backing_map)
	devIocBackingClose = 0x4004e502 // _IOW(229, 2, uint32_t)
)

// fuseMajor and fuseMinor identify /dev/fuse (misc device 229).
const (
	fuseMajor = 10
	fuseMinor = 229
)

// maxBacking bounds the ids registered at once: one per open plaintext inode.
const maxBacking = 1 << 16

// backingMap is struct fuse_backing_map.
type backingMap struct {
	fd      int32
	flags   uint32
	padding uint64
}

const (
	reqSize = 5
	sockFd  = 3
)

func main() {
	if err := dropPrivileges(); err != nil {
		fmt.Fprintf(os.Stderr, "cryptpt-ptreg: %v\n", err)
		os.Exit(1)
	}
	if t, err := unix.GetsockoptInt(sockFd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_SEQPACKET {
		fmt.Fprintln(os.Stderr, "cryptpt-ptreg: run by the cryptpt daemon only (fd 3 must be its socket)")
		os.Exit(2)
	}
	os.Exit(serve())
}

// dropPrivileges keeps CAP_SYS_ADMIN (effective and permitted) and nothing
// else, on every thread, and forbids gaining privileges by exec.
func dropPrivileges() error {
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %v", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	const sysAdmin = 1 << unix.CAP_SYS_ADMIN
	if data[0].Permitted&sysAdmin == 0 {
		return fmt.Errorf("lacks CAP_SYS_ADMIN (install it with: setcap cap_sys_admin+ep %s)", os.Args[0])
	}
	data = [2]unix.CapUserData{{Effective: sysAdmin, Permitted: sysAdmin}}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %v", e)
	}
	return nil
}

func serve() int {
	fuseFd := -1
	registered := map[int32]bool{}
	buf := make([]byte, reqSize)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(sockFd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil || n == 0 {
			return 0 // the daemon is gone
		}
		fds := receivedFds(oob[:oobn])
		var res int32
		switch {
		case n != reqSize:
			res = -int32(unix.EINVAL)
		case buf[0] == 'F' && fuseFd < 0 && len(fds) == 1 && isFuseDevice(fds[0]):
			fuseFd, fds = fds[0], nil
		case buf[0] == 'O' && fuseFd >= 0 && len(fds) == 1:
			res = open(fuseFd, fds[0], registered)
		case buf[0] == 'C' && fuseFd >= 0 && len(fds) == 0:
			res = closeID(fuseFd, int32(binary.LittleEndian.Uint32(buf[1:])), registered)
		default:
			res = -int32(unix.EINVAL)
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
		var reply [4]byte
		binary.LittleEndian.PutUint32(reply[:], uint32(res))
		if _, err := unix.Write(sockFd, reply[:]); err != nil {
			return 0
		}
	}
}

func receivedFds(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func isFuseDevice(fd int) bool {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && unix.Major(st.Rdev) == fuseMajor && unix.Minor(st.Rdev) == fuseMinor
}

func open(fuseFd, fd int, registered map[int32]bool) int32 {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -int32(unix.EINVAL)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_PATH != 0 {
		return -int32(unix.EINVAL)
	}
	if len(registered) >= maxBacking {
		return -int32(unix.EMFILE)
	}
	m := backingMap{fd: int32(fd)}
	id, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fuseFd), devIocBackingOpen, uintptr(unsafe.Pointer(&m)))
	if e != 0 {
		return -int32(e)
	}
	registered[int32(id)] = true
	return int32(id)
}

func closeID(fuseFd int, id int32, registered map[int32]bool) int32 {
	if !registered[id] {
		return -int32(unix.ENOENT)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fuseFd), devIocBackingClose, uintptr(unsafe.Pointer(&id))); e != 0 {
		return -int32(e)
	}
	delete(registered, id)
	return 0
}
