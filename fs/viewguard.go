package fs

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The view's guard.
//
// The daemon calls into the view itself: it flushes, syncs, truncates and
// stats view files while serving the user's mount. A daemon killed (or
// crashed) while such a call waits for a view request that one of its own,
// now dead, threads had taken never finishes dying: the kernel waits for
// the answer uninterruptibly, the waiting thread keeps the process's files
// open, among them the view's /dev/fuse, whose closing would end the
// request. The process stays a zombie, and everything using the mount
// hangs with it. (Seen: a SIGKILL during writes left a daemon and its
// test stuck for good.)
//
// So a small second process, the guard (this program run again with
// viewGuardEnv set), holds a duplicate of the view's /dev/fuse and does
// nothing while the daemon lives. Once the daemon is being killed (SIGKILL
// pending for it as a whole: the kernel's way of ending a process), the
// guard answers every view request it can reach with EIO, those taken by
// the dead threads included, so they return and the daemon dies; then the
// guard exits, and with its duplicate closed the view's connection ends.
// On a normal unmount the daemon ends the guard first (a pipe closing).

// viewGuardEnv makes a cryptpt process the view's guard; its value is the
// pid of the daemon to guard.
const viewGuardEnv = "CRYPTPT_VIEW_GUARD"

// The guard's files, after stdin, stdout and stderr.
const (
	guardDevFd  = 3 // the view's /dev/fuse
	guardRootFd = 4 // the view's root (O_PATH), to make a request of its own
	guardStopFd = 5 // read end of a pipe the daemon closes to stop the guard
)

// init turns a process started as a view's guard into the guard before
// anything else runs, in every program that mounts (cryptpt, and test
// binaries, whose own tests must not run again as the guard).
func init() {
	if os.Getenv(viewGuardEnv) != "" {
		os.Exit(runViewGuard())
	}
}

// viewGuard is the daemon's end of the guard.
type viewGuard struct {
	cmd  *exec.Cmd
	stop *os.File // write end of the stop pipe
}

// startViewGuard starts the guard of the view connection whose /dev/fuse
// fd is dev and root (O_PATH) fd is root.
func startViewGuard(dev, root int) (*viewGuard, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// Duplicates, for os.File owns and closes what it wraps.
	var files []*os.File
	for _, fd := range []int{dev, root} {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			w.Close()
			return nil, err
		}
		f := os.NewFile(uintptr(d), "view")
		defer f.Close()
		files = append(files, f)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), viewGuardEnv+"="+strconv.Itoa(os.Getpid()))
	// No stdout or stderr: a background mount's launcher waits for the
	// daemon's to close.
	cmd.ExtraFiles = append(files, r)
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, err
	}
	return &viewGuard{cmd: cmd, stop: w}, nil
}

// guardStopWait bounds how long close waits for the guard to go.
const guardStopWait = 5 * time.Second

// close ends the guard and waits for it, killing it if it does not go.
func (g *viewGuard) close() {
	if g == nil {
		return
	}
	g.stop.Close()
	done := make(chan struct{})
	go func() {
		g.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(guardStopWait):
		g.cmd.Process.Kill()
		<-done
	}
}

// runViewGuard runs the guard (see above) and returns its exit code.
func runViewGuard() int {
	pid, err := strconv.Atoi(os.Getenv(viewGuardEnv))
	if err != nil {
		return 2
	}
	// It can read what the view is asked, decrypted data included: no
	// core dumps, no ptrace by the same user (as the daemon).
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	for {
		if stopped(guardStopFd, 200*time.Millisecond) {
			return 0
		}
		switch daemonState(pid) {
		case daemonGone:
			return 0
		case daemonDying:
			answerAll(pid)
			return 0
		}
	}
}

// stopped waits up to d for the stop pipe and reports whether the daemon
// closed it.
func stopped(fd int, d time.Duration) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(d/time.Millisecond))
	return err == nil && n > 0
}

type guardedState int

const (
	daemonAlive guardedState = iota
	daemonDying
	daemonGone
)

// daemonState tells a live daemon from one being killed: a SIGKILL pending
// for the whole process is only ever seen while it dies.
func daemonState(pid int) guardedState {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return daemonGone
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ShdPnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err == nil && mask&(1<<(unix.SIGKILL-1)) != 0 {
				return daemonDying
			}
		}
	}
	return daemonAlive
}

// FUSE opcodes that get no reply.
const (
	opcodeForget      = 2
	opcodeInterrupt   = 36
	opcodeBatchForget = 42
)

// answerAll answers the view's requests with EIO until the daemon is gone:
// those queued (read here), those the dead threads had taken (found by
// their request numbers, below the newest seen), and, through INTERRUPT,
// those the kernel interrupts.
func answerAll(pid int) {
	// A request of our own tells the newest request number.
	go unix.Openat(guardRootFd, "0", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	buf := make([]byte, 2<<20)
	var newest uint64
	answered := uint64(0) // request numbers up to here were tried
	for daemonState(pid) != daemonGone {
		fds := []unix.PollFd{{Fd: guardDevFd, Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 100); n > 0 {
			nr, err := unix.Read(guardDevFd, buf)
			if err != nil || nr < 40 {
				return // the connection is gone
			}
			op := binary.LittleEndian.Uint32(buf[4:8])
			unique := binary.LittleEndian.Uint64(buf[8:16])
			newest = max(newest, unique)
			switch op {
			case opcodeForget, opcodeBatchForget:
			case opcodeInterrupt:
				if nr >= 48 {
					replyEIO(binary.LittleEndian.Uint64(buf[40:48]))
				}
			default:
				replyEIO(unique)
			}
		}
		// Requests taken by the dead threads: every number up to the
		// newest seen, from where the last round stopped (at most the
		// last million: older ones were answered long ago).
		if newest > answered {
			from := max(answered+1, newest-min(newest, 1<<20))
			for u := from; u <= newest; u++ {
				replyEIO(u)
			}
			answered = newest
		}
	}
}

// eio is the error field of a reply: a negative errno.
var eio = -int32(unix.EIO)

func replyEIO(unique uint64) {
	var out [16]byte
	binary.LittleEndian.PutUint32(out[0:4], 16)
	binary.LittleEndian.PutUint32(out[4:8], uint32(eio))
	binary.LittleEndian.PutUint64(out[8:16], unique)
	unix.Write(guardDevFd, out[:])
}
