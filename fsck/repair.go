package fsck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"cryptpt/crypt"
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// maxMoveAttempts bounds the numbered names tried in LostFoundName.
const maxMoveAttempts = 1000

// unnamedPrefix starts the name given to an entry whose name is lost,
// followed by the start of its vault name.
const unnamedPrefix = "unnamed-"

// lostFound is LostFoundName, opened on first use.
type lostFound struct {
	fd int // 0 until opened
	// iv is its directory IV; nil when the root has no usable IV, and
	// LostFoundName is then a plaintext directory that entries are moved
	// into raw, as older versions did.
	iv *[crypt.DirIVSize]byte
	// uid and gid own the vault root; what repair creates gets them.
	uid, gid int
}

func (l *lostFound) close() {
	if l.fd > 0 {
		unix.Fsync(l.fd)
		unix.Close(l.fd)
		l.fd = 0
	}
}

// mountPath returns the path in the mount of name in LostFoundName.
func mountPath(name string) string { return "/" + LostFoundName + "/" + name }

// openLostFound makes and opens LostFoundName: an encrypted-mode directory
// named under the root's IV, with its own IV, so that the mount shows it and
// its entries as encrypted entries. Without a usable root IV it falls back to
// a plaintext-named directory.
func (c *checker) openLostFound() error {
	l := &c.lf
	if l.fd > 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(c.rootFd, &st); err == nil {
		l.uid, l.gid = int(st.Uid), int(st.Gid)
	}
	if c.rootIV == nil && c.rootIVAbsent {
		// Nothing depends on the root's IV: make one, as the mount
		// does for a directory's first encrypted entry.
		iv, err := layout.CreateDirIV(c.rootFd, owner(l.uid, l.gid))
		if err != nil {
			return fmt.Errorf("cannot create the root's %s: %w", crypt.DirIVName, err)
		}
		c.rootIV, c.rootIVAbsent = iv, false
		if c.lfStored, _, err = encryptName(c.k, iv, LostFoundName); err != nil {
			return err
		}
	}
	name := LostFoundName
	if c.rootIV != nil {
		stored, _, err := encryptName(c.k, c.rootIV, LostFoundName)
		if err != nil {
			return err
		}
		name = stored
	}
	switch err := unix.Mkdirat(c.rootFd, name, 0o700); {
	case err == nil:
		unix.Fchownat(c.rootFd, name, l.uid, l.gid, unix.AT_SYMLINK_NOFOLLOW)
	case err != unix.EEXIST:
		return fmt.Errorf("cannot create %s: %w", LostFoundName, err)
	}
	fd, err := unix.Openat(c.rootFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s (it must be a directory): %w", LostFoundName, err)
	}
	if c.rootIV != nil {
		iv, err := layout.ReadDirIV(fd)
		if errors.Is(err, unix.ENOENT) {
			iv, err = layout.CreateDirIV(fd, owner(l.uid, l.gid))
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("%s/%s: %w", LostFoundName, crypt.DirIVName, err)
		}
		l.iv = iv
	}
	unix.Fsync(c.rootFd)
	l.fd = fd
	return nil
}

// startRepair reports whether repair is on and LostFoundName is open.
func (c *checker) startRepair() bool {
	if !c.o.Repair || c.fatal != nil {
		return false
	}
	if err := c.openLostFound(); err != nil {
		c.fatal = err
		return false
	}
	return true
}

// repairEntry puts the damaged encrypted entry e (stat st, nil if unknown)
// into LostFoundName: a file with damaged content is salvaged, anything else
// is renamed there, under its decrypted name where the name decrypts.
func (c *checker) repairEntry(e *entry, st *unix.Stat_t) {
	if !e.damaged || !c.startRepair() {
		return
	}
	if c.lf.iv == nil {
		c.moveRaw(e)
		return
	}
	base := baseName(e)
	var err error
	if e.badContent && st != nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		err = c.salvage(e, st, base)
	} else {
		err = c.setAside(e, base)
	}
	if err != nil {
		c.report(&entry{vpath: e.vpath, ppath: e.ppath, dir: e.dir}, Unreadable, "could not repair it in %s: %v", LostFoundName, err)
		return
	}
	c.repaired(e.probs)
	if e.sidecar != "" {
		sc := &entry{dirfd: e.dirfd, name: e.sidecar, vpath: strings.TrimSuffix(e.vpath, e.name) + e.sidecar, dir: e.dir}
		if e.nameLost {
			// Evidence for whoever wants to recover the name.
			c.keepRaw(sc, base+".cryptpt-sidecar")
		} else {
			// The name decrypted: the sidecar is its encrypted form,
			// derived from it, and no longer used.
			unix.Unlinkat(e.dirfd, e.sidecar, 0)
		}
	}
	unix.Fsync(e.dirfd)
}

// baseName is the name an entry gets in LostFoundName: its decrypted name,
// or, when that is lost, "unnamed-" and the start of its vault name.
func baseName(e *entry) string {
	if e.plain != "" {
		return e.plain
	}
	return unnamedPrefix + e.name[len(crypt.ReservedPrefix):min(len(e.name), len(crypt.ReservedPrefix)+16)]
}

// setAside renames e into LostFoundName: under base when only its name was
// damaged (what it holds is intact), else under base + DamagedSuffix. An
// entry whose name was lost gets a report saying where it was.
func (c *checker) setAside(e *entry, base string) error {
	suffix := DamagedSuffix
	if !e.badContent && e.nameLost && len(e.probs) == countNameProblems(c.rep.Problems, e.probs) {
		suffix = ""
	}
	suffixes := []string{suffix}
	if e.nameLost {
		suffixes = append(suffixes, DamageReportSuffix)
	}
	name, err := c.freeName(base, suffixes...)
	if err != nil {
		return err
	}
	if err := c.renameInto(e.dirfd, e.name, name+suffix); err != nil {
		return err
	}
	c.moved(Move{Path: e.ppath, VaultPath: e.vpath, To: mountPath(name + suffix)})
	if e.nameLost {
		text := damageHeader(e, c.rep.Problems) + fmt.Sprintf("kept as:  %s (a made-up name; the name it had is lost)\n", name+suffix)
		if err := c.createFile(name+DamageReportSuffix, 0o600, func(w *plainWriter) error { return w.write([]byte(text)) }); err != nil {
			return err
		}
	}
	return nil
}

// countNameProblems counts the name and sidecar problems among probs.
func countNameProblems(all []Problem, probs []int) int {
	n := 0
	for _, i := range probs {
		if k := all[i].Kind; k == BadName || k == BadSidecar {
			n++
		}
	}
	return n
}

func (c *checker) moved(m Move) {
	c.rep.Moves = append(c.rep.Moves, m)
	if c.o.Moved != nil {
		c.o.Moved(m)
	}
}

// keepRaw stores cryptpt's own file e (a leftover temp file, a sidecar, a
// directory IV), which is not an encrypted entry, in LostFoundName as an
// encrypted file named name that holds its exact bytes, then removes it from
// its place. It reports whether that worked.
func (c *checker) keepRaw(e *entry, name string) bool {
	if !c.startRepair() {
		return false
	}
	if c.lf.iv == nil {
		return c.moveRaw(e)
	}
	err := func() error {
		fd, err := layout.OpenRead(e.dirfd, e.name)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), e.vpath)
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			return fmt.Errorf("not a regular file")
		}
		free, err := c.freeName(name, "")
		if err != nil {
			return err
		}
		name = free
		err = c.createFile(name, 0o600, func(w *plainWriter) error {
			buf := c.buf
			for {
				n, err := f.Read(buf)
				if n > 0 {
					if err := w.write(buf[:n]); err != nil {
						return err
					}
				}
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
			}
		})
		if err != nil {
			return err
		}
		return unix.Unlinkat(e.dirfd, e.name, 0)
	}()
	if err != nil {
		c.report(&entry{vpath: e.vpath, ppath: e.ppath, dir: e.dir}, Unreadable, "could not keep it in %s: %v", LostFoundName, err)
		return false
	}
	c.moved(Move{Path: e.ppath, VaultPath: e.vpath, To: mountPath(name)})
	unix.Fsync(e.dirfd)
	return true
}

// freeName returns base, or base numbered ("report.2.odt"), such that base
// plus each suffix is a name that does not exist yet in LostFoundName and is
// not longer than crypt.MaxNameLen.
func (c *checker) freeName(base string, suffixes ...string) (string, error) {
	longest := 0
	for _, s := range suffixes {
		longest = max(longest, len(s))
	}
	ext := path.Ext(base)
	if ext == base || len(ext) > 16 {
		ext = ""
	}
	stem := strings.TrimSuffix(base, ext)
next:
	for i := 1; i <= maxMoveAttempts; i++ {
		num := ""
		if i > 1 {
			num = "." + strconv.Itoa(i)
		}
		cand := truncateName(stem, crypt.MaxNameLen-longest-len(num)-len(ext)) + num + ext
		for _, s := range suffixes {
			stored, _, err := encryptName(c.k, c.lf.iv, cand+s)
			if err != nil {
				return "", err
			}
			var st unix.Stat_t
			if err := unix.Fstatat(c.lf.fd, stored, &st, unix.AT_SYMLINK_NOFOLLOW); err != unix.ENOENT {
				continue next
			}
		}
		return cand, nil
	}
	return "", fmt.Errorf("no free name")
}

// truncateName cuts s to at most n bytes, at a UTF-8 character boundary.
func truncateName(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// renameInto renames name in dirfd to the encrypted entry plain in
// LostFoundName, writing the sidecar first when plain needs a long name.
func (c *checker) renameInto(dirfd int, name, plain string) error {
	stored, sidecar, err := c.storedName(plain)
	if err != nil {
		return err
	}
	if err := unix.Renameat2(dirfd, name, c.lf.fd, stored, unix.RENAME_NOREPLACE); err != nil {
		if sidecar != "" {
			unix.Unlinkat(c.lf.fd, sidecar, 0)
		}
		return err
	}
	return nil
}

// storedName returns the vault name of plain in LostFoundName, writing the
// sidecar of a long name (whose name it returns too).
func (c *checker) storedName(plain string) (stored, sidecarName string, err error) {
	stored, sidecar, err := encryptName(c.k, c.lf.iv, plain)
	if err != nil {
		return "", "", err
	}
	if sidecar != nil {
		sidecarName = crypt.SidecarName(stored)
		if err := layout.WriteSidecar(c.lf.fd, stored, sidecar, owner(c.lf.uid, c.lf.gid)); err != nil {
			return "", "", err
		}
	}
	return stored, sidecarName, nil
}

// plainWriter appends plaintext to a new encrypted file.
type plainWriter struct {
	k          *crypt.Keys
	f          *os.File
	h          crypt.Header
	off, csize int64
}

func (w *plainWriter) write(p []byte) error {
	n, err := writePlain(w.k, w.f, &w.h, p, w.off, w.csize)
	if err != nil {
		return err
	}
	w.off += int64(len(p))
	w.csize = n
	return nil
}

// createFile makes the encrypted regular file plain in LostFoundName with
// the contents fill writes: under a temp name, synced, then renamed into
// place, never replacing an existing name. It gets mode and the vault
// root's owner.
func (c *checker) createFile(plain string, mode uint32, fill func(*plainWriter) error) error {
	stored, sidecar, err := c.storedName(plain)
	if err != nil {
		return err
	}
	err = c.createFileStored(stored, mode, fill)
	if err != nil && sidecar != "" {
		unix.Unlinkat(c.lf.fd, sidecar, 0)
	}
	return err
}

func (c *checker) createFileStored(stored string, mode uint32, fill func(*plainWriter) error) error {
	h, err := newFileHeader(c.o.FormatVersion)
	if err != nil {
		return err
	}
	o := layout.WriteOptions{Perm: 0o600, NoReplace: true, Prepare: func(fd int) error {
		unix.Fchown(fd, c.lf.uid, c.lf.gid)
		return unix.Fchmod(fd, mode&0o777) // no set-ID bits: the owner may differ
	}}
	return layout.WriteFileFunc(c.lf.fd, stored, o, func(f *os.File) error {
		return fill(&plainWriter{k: c.k, f: f, h: h})
	})
}

// moveRaw moves e (and its long-name sidecar) into a plaintext
// LostFoundName with its vault bytes unchanged, under its vault name without
// the reserved prefix: the fallback when the root has no usable IV.
func (c *checker) moveRaw(e *entry) bool {
	to, err := c.moveOne(e.dirfd, e.name)
	if err != nil {
		c.report(&entry{vpath: e.vpath, ppath: e.ppath, dir: e.dir}, Unreadable, "could not move it to %s: %v", LostFoundName, err)
		return false
	}
	c.repaired(e.probs)
	c.moved(Move{Path: e.ppath, VaultPath: e.vpath, To: mountPath(to)})
	if e.sidecar != "" {
		if to, err := c.moveOne(e.dirfd, e.sidecar); err == nil {
			c.moved(Move{VaultPath: strings.TrimSuffix(e.vpath, e.name) + e.sidecar, To: mountPath(to)})
		}
	}
	unix.Fsync(e.dirfd)
	return true
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
