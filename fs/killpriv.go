package fs

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// capHandleKillprivV2 is FUSE_HANDLE_KILLPRIV_V2 (INIT flag bit 28), which
// go-fuse has no constant for. Without it the kernel asks the daemon for
// security.capability (a GETXATTR round trip) before every write, which held
// 4 KiB passthrough writes to 0.1-0.2x native (dd bs=4k, 200 MB: 48-120 MB/s
// against 550 MB/s). With it, the daemon is the one that clears
// suid/sgid/capabilities on write, truncate and chown:
//   - chown: the backing filesystem does it, as for any chown;
//   - writes and truncates the daemon serves: clearSetID below;
//   - passthrough writes never reach the daemon, so files with set-id bits or
//     file capabilities are never given passthrough (needsDaemonIO).
const capHandleKillprivV2 = 1 << 28

// needsDaemonIO reports whether a plaintext file must not be handed to the
// kernel, because only the daemon can clear its privileges on write. That
// includes, on a mount other users may enter, files that someone besides
// their owner may write: the owner could make one set-id while another
// user's passthrough handle is open for writing, and a passthrough write
// never reaches the daemon to clear the bit again.
func (n *node) needsDaemonIO(f *os.File) bool {
	st, err := f.Stat()
	if err != nil {
		return true
	}
	if st.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
		return true
	}
	if n.v.opts.AllowOther && st.Mode().Perm()&0o022 != 0 {
		return true
	}
	_, err = unix.Fgetxattr(int(f.Fd()), "security.capability", nil)
	return err == nil
}

// clearSetID drops the set-user-ID bit, and the set-group-ID bit where the
// kernel would (group execute set, or a caller outside the file's group:
// Linux 6.2 and later), after a write, truncate or fallocate by anyone but
// root, as the kernel does for callers without CAP_FSETID.
func clearSetID(ctx context.Context, f *os.File) {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) == nil {
		clearSetIDStat(ctx, f, &st)
	}
}

// clearSetIDStat is clearSetID for a file whose stat the caller has; it
// reports whether it changed the mode.
func clearSetIDStat(ctx context.Context, f *os.File, st *syscall.Stat_t) bool {
	caller, ok := fuse.FromContext(ctx)
	if ok && caller.Uid == 0 {
		return false
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return false
	}
	mode := st.Mode & 07777
	kill := uint32(syscall.S_ISUID)
	if mode&syscall.S_IXGRP != 0 || (mode&syscall.S_ISGID != 0 && !(ok && inGroup(caller, st.Gid))) {
		kill |= syscall.S_ISGID
	}
	if mode&kill == 0 {
		return false
	}
	return syscall.Fchmod(int(f.Fd()), mode&^kill) == nil
}

// afterWrite does what every write the daemon serves owes: it clears set-id
// bits and records the backing file's new state for the page cache
// (keepCache), with one fstat unless the mode had to change. The caller
// holds n.contentMu.
func (n *node) afterWrite(ctx context.Context, f *os.File) {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil {
		n.cached = backingState{}
		return
	}
	if clearSetIDStat(ctx, f, &st) && syscall.Fstat(int(f.Fd()), &st) != nil {
		n.cached = backingState{}
		return
	}
	n.cached = stateFromStat(&st)
	// The kernel knows what it wrote: not an outside change (watch.go).
	n.saw(&st)
}

// inGroup reports whether the caller is a member of gid: its primary group
// or one of the supplementary groups in /proc/PID/status.
func inGroup(caller *fuse.Caller, gid uint32) bool {
	if caller.Gid == gid {
		return true
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(caller.Pid)) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(g) {
				if f == strconv.Itoa(int(gid)) {
					return true
				}
			}
		}
	}
	return false
}
