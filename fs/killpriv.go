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
//   - chown, chown to -1 -1 included: chown (node_attr.go), as the backing
//     filesystem, called by a daemon with CAP_FSETID, would clear less;
//   - writes and truncates the daemon serves: clearSetID below;
//   - file capabilities: the backing filesystem drops them at every write to
//     the backing file, as ext4 does;
//   - passthrough writes never reach the daemon, but before a write by a
//     caller without CAP_FSETID to a file the kernel knows to be set-id, it
//     sends a SETATTR that asks for nothing (killRequest), and the daemon
//     clears the bits then. Files with set-id bits or file capabilities are
//     still not given passthrough by themselves (needsDaemonIO).
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
// Linux 6.2 and later), after a write, truncate or fallocate by a caller
// without CAP_FSETID, as the kernel does.
func clearSetID(ctx context.Context, f *os.File) {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) == nil {
		clearSetIDStat(ctx, f, &st)
	}
}

// clearSetIDStat is clearSetID for a file whose stat the caller has; it
// reports whether it changed the mode. The caller's credentials are only
// looked at when the file has a set-id bit.
func clearSetIDStat(ctx context.Context, f *os.File, st *syscall.Stat_t) bool {
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Mode&(syscall.S_ISUID|syscall.S_ISGID) == 0 {
		return false
	}
	c := callerOf(ctx)
	if c.hasFsetid() {
		return false
	}
	mode := st.Mode & 07777
	kill := uint32(syscall.S_ISUID)
	if mode&syscall.S_IXGRP != 0 || !c.inGroup(st.Gid) {
		kill |= syscall.S_ISGID
	}
	if mode&kill == 0 {
		return false
	}
	return syscall.Fchmod(int(f.Fd()), mode&^kill) == nil
}

// chownKill returns the bits chown(2) clears on a regular file whose stat
// before the chown is st (Linux's chown_common): S_ISUID always, whoever
// asks, and S_ISGID where group execute is set or the caller is neither in
// the file's group nor holds CAP_FSETID. The kernel asks for the same when a
// write by a caller without CAP_FSETID must clear set-id bits (see
// killRequest), so this serves both.
func chownKill(ctx context.Context, st *syscall.Stat_t) uint32 {
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Mode&(syscall.S_ISUID|syscall.S_ISGID) == 0 {
		return 0
	}
	kill := uint32(syscall.S_ISUID)
	if st.Mode&syscall.S_ISGID != 0 {
		c := callerOf(ctx)
		if st.Mode&syscall.S_IXGRP != 0 || (!c.inGroup(st.Gid) && !c.hasFsetid()) {
			kill |= syscall.S_ISGID
		}
	}
	return kill
}

// afterWrite does what every write the daemon serves owes: it clears set-id
// bits and records the backing file's new state for the page cache
// (keepCache), with one fstat unless the mode had to change. The caller
// holds n.contentMu.
// With kill false (a write the view writes back, whose writer the user's
// mount already checked) it leaves set-id bits alone.
func (n *node) afterWrite(ctx context.Context, f *os.File, kill bool) {
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil {
		n.cached = backingState{}
		return
	}
	if kill && clearSetIDStat(ctx, f, &st) && syscall.Fstat(int(f.Fd()), &st) != nil {
		n.cached = backingState{}
		return
	}
	n.cached = stateFromStat(&st)
	// The kernel knows what it wrote: not an outside change (watch.go).
	n.saw(&st)
}

// caller is who made a request, with what /proc tells about its
// supplementary groups and capabilities, read on first use.
type caller struct {
	c      *fuse.Caller // nil when the request carries none
	loaded bool
	groups []uint32
	capEff uint64
	procOK bool
}

func callerOf(ctx context.Context) *caller {
	c, _ := fuse.FromContext(ctx)
	return &caller{c: c}
}

// load reads /proc/PID/status of the calling thread. The kernel gives the
// caller's pid in the daemon's pid namespace, and 0 for a caller the daemon
// cannot see there (another pid namespace, not below the daemon's): then
// nothing beyond the uid and the primary group is known.
func (c *caller) load() {
	if c.loaded {
		return
	}
	c.loaded = true
	if c.c == nil || c.c.Pid == 0 {
		return
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(int(c.c.Pid)) + "/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if g, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, f := range strings.Fields(g) {
				if n, err := strconv.ParseUint(f, 10, 32); err == nil {
					c.groups = append(c.groups, uint32(n))
				}
			}
		}
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return
			}
			c.capEff = n
			c.procOK = true
		}
	}
}

// hasFsetid reports whether the caller holds CAP_FSETID, which keeps
// set-id bits through writes and truncates. Where /proc cannot tell (pid
// 0), root is taken to hold it and everyone else not.
func (c *caller) hasFsetid() bool {
	if c.c == nil {
		return false
	}
	c.load()
	if !c.procOK {
		return c.c.Uid == 0
	}
	return c.capEff&(1<<unix.CAP_FSETID) != 0
}

// inGroup reports whether the caller is a member of gid: its primary (fs)
// group, or one of its supplementary groups. Where /proc cannot tell (pid
// 0) only the primary group counts, so S_ISGID is cleared where ext4 might
// keep it: the safe side.
func (c *caller) inGroup(gid uint32) bool {
	if c.c == nil {
		return false
	}
	if c.c.Gid == gid {
		return true
	}
	c.load()
	for _, g := range c.groups {
		if g == gid {
			return true
		}
	}
	return false
}
