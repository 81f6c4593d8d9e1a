package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"time"

	"cryptpt/fs"
	"cryptpt/internal/mountinfo"

	"golang.org/x/sys/unix"
)

// captureStderr points fd 2 at a pipe until the returned function is
// called, which restores it and returns what was written meanwhile, as one
// line: fusermount3 says why a mount failed only on its stderr, which a
// background daemon points at /dev/null.
func captureStderr() (stop func() string) {
	r, w, err := os.Pipe()
	if err != nil {
		return func() string { return "" }
	}
	saved, err := unix.Dup(2)
	if err != nil {
		r.Close()
		w.Close()
		return func() string { return "" }
	}
	unix.Dup3(int(w.Fd()), 2, 0)
	w.Close()
	c := newPipeReader(r, 64<<10)
	return func() string {
		unix.Dup3(saved, 2, 0)
		unix.Close(saved)
		said := c.stop()
		return strings.Join(strings.Fields(strings.ReplaceAll(string(said), "\n", "; ")), " ")
	}
}

// pipeReader collects what is written to a pipe, keeping the first max
// bytes, until stopped. It reads all along, so that a writer never blocks
// on a full pipe.
type pipeReader struct {
	r    *os.File
	max  int
	done chan []byte
}

func newPipeReader(r *os.File, max int) *pipeReader {
	c := &pipeReader{r: r, max: max, done: make(chan []byte, 1)}
	go func() {
		var got []byte
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if len(got) < max {
				got = append(got, buf[:min(n, max-len(got))]...)
			}
			if err != nil {
				break
			}
		}
		c.done <- got
	}()
	return c
}

// stop returns what was written so far, without waiting for the writers to
// close their ends: a child that outlives the wait (the passthrough helper
// inherits fd 2 for its lifetime) would otherwise hold it up. What the
// writers wrote before stop is in the pipe by then; what the reader had not
// taken yet is drained without blocking.
func (c *pipeReader) stop() []byte {
	c.r.SetReadDeadline(time.Now()) // wakes the reader; at EOF it is done already
	got := <-c.done
	c.r.SetReadDeadline(time.Time{})
	if rc, err := c.r.SyscallConn(); err == nil {
		rc.Read(func(fd uintptr) bool {
			buf := make([]byte, 4096)
			for len(got) < c.max {
				n, err := unix.Read(int(fd), buf)
				if n <= 0 || err != nil {
					break
				}
				got = append(got, buf[:min(n, c.max-len(got))]...)
			}
			return true
		})
	}
	c.r.Close()
	return got
}

// mountError turns a failed fs.MountVault into one line with its real cause
// (what fusermount3 said, if it said something) and the hint that fits it.
func mountError(err error, said, backing, mountpoint string) *userError {
	if errors.Is(err, fs.ErrVaultInUse) {
		hint := "unmount the other mount first, or mount this one with --ro"
		if other := mountedOn(backing); other != "" {
			hint = "it is mounted on " + other + ": unmount that first (\"cryptpt unmount " + other + "\"), or mount with --ro"
		}
		return &userError{code: exitError, hint: hint, msg: "vault " + backing + " is already mounted read-write by another cryptpt daemon"}
	}
	cause := err.Error()
	said = strings.TrimSuffix(strings.TrimSpace(said), ";")
	if said != "" && strings.Contains(cause, "fusermount exited") {
		// go-fuse only knows the exit status; the helper said why.
		cause = said
	}
	cause = strings.TrimSpace(cause)
	return &userError{code: exitError, hint: mountHint(err, cause), msg: "cannot mount " + mountpoint + ": " + cause}
}

// mountHint picks the advice for a mount failure from its cause.
func mountHint(err error, cause string) string {
	has := func(s ...string) bool {
		for _, x := range s {
			if !strings.Contains(cause, x) {
				return false
			}
		}
		return true
	}
	switch {
	case has("/dev/fuse", "Permission denied"), has("/dev/fuse", "Operation not permitted"):
		return "this user may not open /dev/fuse (see \"ls -l /dev/fuse\"; desktop systems make it mode 0666): ask the administrator for access, or mount as root"
	case has("/dev/fuse", "No such"):
		return "the kernel offers no FUSE device: load the module (\"modprobe fuse\"); in a container, pass /dev/fuse in"
	case has("user_allow_other"):
		return "add the line \"user_allow_other\" to /etc/fuse.conf, or mount without --allow-other"
	case has("fusermount", "Permission denied"):
		return "fusermount3 must be setuid root (its package installs it so): check \"ls -l $(command -v fusermount3)\", or mount as root"
	case has("mountpoint"), has("not owned"):
		return "mount on an empty directory you own"
	case errors.Is(err, exec.ErrNotFound) || (has("fusermount") && !fusermountInstalled()):
		return "install fuse3 (apt-get install fuse3), which provides fusermount3, or mount as root"
	}
	return ""
}

func fusermountInstalled() bool {
	for _, b := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(b); err == nil {
			return true
		}
	}
	return false
}

// mountedOn returns where the vault backing is mounted by cryptpt, or "".
func mountedOn(backing string) string {
	mounts, _ := mountinfo.Read()
	for _, m := range mounts {
		if m.IsCryptpt() && m.Source == backing {
			return m.Point
		}
	}
	return ""
}
