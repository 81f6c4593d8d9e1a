package fsck

import (
	"fmt"
	"strconv"
	"strings"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// maxMoveAttempts bounds the numbered names tried in LostFoundName.
const maxMoveAttempts = 1000

// lostFound is LostFoundName, opened on first use.
type lostFound struct {
	fd int // 0 until opened
}

func (l *lostFound) open(rootFd int) error {
	if l.fd > 0 {
		return nil
	}
	if err := unix.Mkdirat(rootFd, LostFoundName, 0o700); err != nil && err != unix.EEXIST {
		return fmt.Errorf("cannot create %s: %w", LostFoundName, err)
	}
	fd, err := unix.Openat(rootFd, LostFoundName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s (it must be a directory): %w", LostFoundName, err)
	}
	l.fd = fd
	return nil
}

func (l *lostFound) close() {
	if l.fd > 0 {
		unix.Fsync(l.fd)
		unix.Close(l.fd)
		l.fd = 0
	}
}

// repairMove moves e aside if repair is on and e is damaged.
func (c *checker) repairMove(e *entry) {
	if e.damaged {
		c.repairMoveAlways(e)
	}
}

// repairMoveAlways moves e (and its long-name sidecar) into LostFoundName
// if repair is on. The vault bytes are kept as they are.
func (c *checker) repairMoveAlways(e *entry) {
	if !c.o.Repair || c.fatal != nil {
		return
	}
	if err := c.lf.open(c.rootFd); err != nil {
		c.fatal = err
		return
	}
	to, err := c.moveOne(e.dirfd, e.name)
	if err != nil {
		c.report(&entry{vpath: e.vpath, ppath: e.ppath, dir: e.dir}, Unreadable, "could not move it to %s: %v", LostFoundName, err)
		return
	}
	m := Move{Path: e.ppath, VaultPath: e.vpath, To: LostFoundName + "/" + to}
	c.rep.Moves = append(c.rep.Moves, m)
	if c.o.Moved != nil {
		c.o.Moved(m)
	}
	if e.sidecar != "" {
		if to, err := c.moveOne(e.dirfd, e.sidecar); err == nil {
			m := Move{VaultPath: strings.TrimSuffix(e.vpath, e.name) + e.sidecar, To: LostFoundName + "/" + to}
			c.rep.Moves = append(c.rep.Moves, m)
			if c.o.Moved != nil {
				c.o.Moved(m)
			}
		}
	}
	unix.Fsync(e.dirfd)
}

// moveOne renames name in dirfd into LostFoundName under its name without
// the reserved prefix, numbered if taken, and returns the new name.
func (c *checker) moveOne(dirfd int, name string) (string, error) {
	base := strings.TrimPrefix(name, crypt.ReservedPrefix)
	for i := 1; i <= maxMoveAttempts; i++ {
		to := base
		if i > 1 {
			suffix := "." + strconv.Itoa(i)
			to = base[:min(len(base), crypt.MaxNameLen-len(suffix))] + suffix
		}
		err := unix.Renameat2(dirfd, name, c.lf.fd, to, unix.RENAME_NOREPLACE)
		if err == unix.EINVAL || err == unix.ENOSYS {
			// No RENAME_NOREPLACE here: check, then rename.
			var st unix.Stat_t
			if unix.Fstatat(c.lf.fd, to, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				continue
			}
			err = unix.Renameat(dirfd, name, c.lf.fd, to)
		}
		if err == unix.EEXIST || err == unix.ENOTEMPTY {
			continue
		}
		if err != nil {
			return "", err
		}
		return to, nil
	}
	return "", fmt.Errorf("no free name")
}
