package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cryptpt/crypt"
	"cryptpt/fs"
	"cryptpt/keys"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// The journal of "home init" (USER.state, root's, outside both the home and
// the vault): a version line, then one line per entry whose copy in the vault
// was verified, then "phase swap" once every entry is, then "phase remove"
// just before the originals are deleted. A line is written only after the
// copy is synced and compared, so a kill loses at most the entries not yet
// written, which the next run copies again. A torn last line is ignored.
//
//	cryptpt-home-journal 1
//	e SIZE MTIME_NS MODE "path/relative/to/home"
//	phase swap
//	phase remove
//
// "phase remove" is the point of no return: it is synced before the first
// original is deleted, and from then on "home abort" refuses (the originals
// are no longer whole; the vault holds every file) and "home init" only
// finishes the removal.
const journalHeader = "cryptpt-home-journal 1"

const (
	phaseCopy = iota
	phaseSwap
	phaseRemove
)

var phaseNames = map[int]string{phaseSwap: "swap", phaseRemove: "remove"}

type jentry struct {
	size, mtime int64
	mode        uint32
}

type journal struct {
	f       *os.File
	phase   int
	entries map[string]jentry
	synced  time.Time
}

// readJournal parses the journal at path (a missing file is an empty one)
// and returns it with its raw bytes, without opening it for writing.
func readJournal(path string) (*journal, []byte, error) {
	j := &journal{entries: map[string]jentry{}}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	lines := strings.Split(string(data), "\n")
	if len(data) > 0 && lines[0] != journalHeader {
		return nil, nil, fmt.Errorf("not a cryptpt home journal")
	}
	for _, line := range lines[min(1, len(lines)):] {
		if name, ok := strings.CutPrefix(line, "phase "); ok {
			for p, n := range phaseNames {
				if n == name && p > j.phase {
					j.phase = p
				}
			}
			continue
		}
		f := strings.SplitN(line, " ", 5)
		if len(f) != 5 || f[0] != "e" {
			continue
		}
		size, err1 := strconv.ParseInt(f[1], 10, 64)
		mtime, err2 := strconv.ParseInt(f[2], 10, 64)
		mode, err3 := strconv.ParseUint(f[3], 10, 32)
		rel, err4 := strconv.Unquote(f[4])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue
		}
		j.entries[rel] = jentry{size, mtime, uint32(mode)}
	}
	return j, data, nil
}

// openJournal reads the journal at path, creating it (synced, with its
// directory entry) if it is missing, and opens it for appending.
func openJournal(path string) (*journal, error) {
	j, data, err := readJournal(path)
	if err != nil {
		return nil, err
	}
	j.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		if _, err := j.f.WriteString(journalHeader + "\n"); err != nil {
			return nil, err
		}
		if err := j.sync(); err != nil {
			return nil, err
		}
		syncDir(filepath.Dir(path))
	} else if !bytes.HasSuffix(data, []byte("\n")) {
		j.f.WriteString("\n") // end a torn line
	}
	return j, nil
}

func entryOf(fi os.FileInfo) jentry {
	st := fi.Sys().(*syscall.Stat_t)
	return jentry{fi.Size(), st.Mtim.Nano(), st.Mode}
}

// done reports whether rel was copied and verified as it is now.
func (j *journal) done(rel string, fi os.FileInfo) bool {
	e, ok := j.entries[rel]
	return ok && e == entryOf(fi)
}

// add records a verified entry: one write, so a killed process loses
// nothing; synced about once a second, and at the end (a power cut loses at
// most that second, copied again by the next run).
func (j *journal) add(rel string, fi os.FileInfo) error {
	e := entryOf(fi)
	j.entries[rel] = e
	if _, err := fmt.Fprintf(j.f, "e %d %d %d %s\n", e.size, e.mtime, e.mode, strconv.Quote(rel)); err != nil {
		return err
	}
	if time.Since(j.synced) > time.Second {
		return j.sync()
	}
	return nil
}

// setPhase records phase p and syncs the journal: when it returns nil, a
// power cut cannot lose the line.
func (j *journal) setPhase(p int) error {
	j.phase = p
	if _, err := j.f.WriteString("phase " + phaseNames[p] + "\n"); err != nil {
		return err
	}
	return j.sync()
}

func (j *journal) sync() error {
	j.synced = time.Now()
	return j.f.Sync()
}

func (j *journal) close() {
	if j.f != nil {
		j.sync()
		j.f.Close()
		j.f = nil
	}
}

// testKill, for the tests only, kills this process at a named point
// (CRYPTPT_TEST_KILL=files:N after N verified files, swap after the
// originals are moved out, remove:N after N entries of the originals'
// top directory are deleted) as a power cut would.
func testKill(point string, n int) {
	want := os.Getenv("CRYPTPT_TEST_KILL")
	if want == "" {
		return
	}
	if want == point || want == fmt.Sprintf("%s:%d", point, n) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// copyHome mounts the vault at the staging mountpoint and copies every entry
// of the home into it that the journal does not list as verified, then
// checks that the journal covers the whole home.
func copyHome(h *homeLayout, j *journal, master *[32]byte) error {
	cfg, err := homeConfig(h)
	if err != nil {
		return err
	}
	// A killed run leaves a dead mount behind.
	if m, _ := fs.IsMountpoint(h.staging); m {
		unix.Unmount(h.staging, unix.MNT_DETACH)
	}
	if err := os.MkdirAll(h.staging, 0o700); err != nil {
		return fail("", "cannot create %s: %v", h.staging, err)
	}
	key := *master
	k, err := crypt.NewKeys(&key)
	clear(key[:])
	if err != nil {
		return err
	}
	// SharedStorage: no kernel caching, so the comparison after each copy
	// reads what the daemon decrypts from the vault, not the page cache.
	vcfg, err := keys.Load(h.vault)
	if err != nil {
		return vaultError(err, h.vault)
	}
	m, err := fs.MountVault(h.staging, fs.Options{
		Backing:       h.vault,
		Keys:          k,
		Policy:        cfg.Policy,
		FormatVersion: contentFormat(vcfg.Version),
		SharedStorage: true,
		Logger:        log.New(os.Stderr, "cryptpt: ", 0),
	})
	if err != nil {
		return fail("", "cannot mount the vault at %s: %v", h.staging, err)
	}
	defer func() {
		if err := m.Unmount(); err != nil {
			unix.Unmount(h.staging, unix.MNT_DETACH)
		}
		m.Wait()
	}()

	c := &homeCopier{h: h, j: j, dst: h.staging, prog: newHomeProgress()}
	if n := len(j.entries); n > 0 {
		again := c.recheck()
		fmt.Fprintf(os.Stderr, "%d entries were copied and verified before; they are not compared again: each is kept if it is unchanged in %s (size, mtime, mode) and its copy is in the vault with the same type and size; %d of them are not and are copied again.\n",
			n, h.home, again)
	}
	// Files that change while copying (nobody should be logged in) are
	// copied again; the loop ends when a walk finds nothing to do.
	for pass := 0; ; pass++ {
		need, files, err := homeWork(h.home, j)
		if err != nil {
			return fail("", "cannot read %s: %v", h.home, err)
		}
		if files == 0 {
			break
		}
		if pass == 3 {
			return fail("log the user out and run \"cryptpt home init "+h.user.Username+"\" again", "files in %s keep changing", h.home)
		}
		c.prog.reset(need, files)
		if err := c.walk(); err != nil {
			return err
		}
		c.prog.finish()
	}
	c.setDirTimes()
	if err := j.sync(); err != nil {
		return fail("", "cannot write the journal: %v", err)
	}
	if err := fixInternalOwners(h.vault); err != nil {
		return fail("", "cannot give the vault's files to %s: %v", h.user.Username, err)
	}
	return nil
}

// recheck drops from the journal (in memory; the next line of an entry
// overrides its earlier ones) each entry whose copy is missing from the
// vault or has another type or size there, so that it is copied again, and
// returns how many it dropped. What a resumed init trusts of an entry the
// journal lists is then: unchanged in the home by size, mtime and mode, and
// present in the vault with that type and size; its bytes were compared
// before the journal line was written.
func (c *homeCopier) recheck() int {
	dropped := 0
	for rel, e := range c.j.entries {
		fi, err := os.Lstat(filepath.Join(c.dst, rel))
		ok := err == nil && uint32(fi.Sys().(*syscall.Stat_t).Mode)&syscall.S_IFMT == e.mode&syscall.S_IFMT
		if ok && e.mode&syscall.S_IFMT == syscall.S_IFREG {
			ok = fi.Size() == e.size
		}
		if !ok {
			delete(c.j.entries, rel)
			dropped++
		}
	}
	return dropped
}

// homeWork counts the bytes and entries not yet verified.
func homeWork(home string, j *journal) (bytes int64, entries int, err error) {
	err = filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == home || fi.IsDir() || fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		rel, _ := filepath.Rel(home, p)
		if !j.done(rel, fi) {
			entries++
			if fi.Mode().IsRegular() {
				bytes += fi.Size()
			}
		}
		return nil
	})
	return bytes, entries, err
}

type homeCopier struct {
	h    *homeLayout
	j    *journal
	dst  string
	prog *homeProgress
	dirs []dirTimes
	buf  [2][]byte
	nver int
}

type dirTimes struct {
	path string
	ts   []unix.Timespec
}

func timesOf(fi os.FileInfo) []unix.Timespec {
	st := fi.Sys().(*syscall.Stat_t)
	return []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
}

func (c *homeCopier) walk() error {
	c.dirs = c.dirs[:0]
	return filepath.Walk(c.h.home, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return fail("", "cannot read %s: %v", p, err)
		}
		if p == c.h.home {
			return nil
		}
		rel, _ := filepath.Rel(c.h.home, p)
		dst := filepath.Join(c.dst, rel)
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fail("", "cannot create %s in the vault: %v", rel, err)
			}
			if err := setOwnerMode(dst, st); err != nil {
				return fail("", "%s: %v", rel, err)
			}
			c.dirs = append(c.dirs, dirTimes{dst, timesOf(fi)})
			return nil
		case mode&os.ModeSocket != 0:
			// A socket is only a name for a listening process, which is gone.
			return nil
		case c.j.done(rel, fi):
			return nil
		case mode.IsRegular():
			if err := c.copyFile(p, dst, rel, fi); err != nil {
				return err
			}
		case mode&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fail("", "cannot read the symlink %s: %v", rel, err)
			}
			os.Remove(dst)
			if err := os.Symlink(target, dst); err != nil {
				return fail("", "cannot create the symlink %s in the vault: %v", rel, err)
			}
			if got, err := os.Readlink(dst); err != nil || got != target {
				return fail("", "the symlink %s reads back wrong from the vault", rel)
			}
			os.Lchown(dst, int(st.Uid), int(st.Gid))
			unix.UtimesNanoAt(unix.AT_FDCWD, dst, timesOf(fi), unix.AT_SYMLINK_NOFOLLOW)
		case mode&os.ModeNamedPipe != 0:
			os.Remove(dst)
			if err := unix.Mkfifo(dst, st.Mode&0o7777); err != nil {
				return fail("", "cannot create the fifo %s in the vault: %v", rel, err)
			}
			if err := setOwnerMode(dst, st); err != nil {
				return fail("", "%s: %v", rel, err)
			}
			unix.UtimesNanoAt(unix.AT_FDCWD, dst, timesOf(fi), 0)
		default:
			return fail("remove it (cryptpt stores no device nodes) and run init again", "%s is a device node", p)
		}
		if err := c.j.add(rel, fi); err != nil {
			return fail("", "cannot write the journal: %v", err)
		}
		c.prog.file()
		c.nver++
		testKill("files", c.nver)
		return nil
	})
}

func setOwnerMode(p string, st *syscall.Stat_t) error {
	if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return unix.Fchmodat(unix.AT_FDCWD, p, st.Mode&0o7777, 0)
}

// copyFile copies src to dst in the vault, syncs it, then reads both back and
// compares them byte for byte; owner, mode and times go on last.
func (c *homeCopier) copyFile(src, dst, rel string, fi os.FileInfo) error {
	if c.buf[0] == nil {
		c.buf = [2][]byte{make([]byte, 1<<20), make([]byte, 1<<20)}
	}
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	if err != nil {
		return fail("", "cannot open %s: %v", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fail("", "cannot create %s in the vault: %v", rel, err)
	}
	_, err = io.CopyBuffer(struct{ io.Writer }{homeProgressWriter{out, c.prog}}, struct{ io.Reader }{in}, c.buf[0])
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail("", "cannot copy %s into the vault: %v", rel, err)
	}
	if err := c.compare(in, dst); err != nil {
		return fail("", "verifying %s: %v", rel, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := setOwnerMode(dst, st); err != nil {
		return fail("", "%s: %v", rel, err)
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, timesOf(fi), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fail("", "%s: %v", rel, err)
	}
	return nil
}

// compare reads in from the start and dst through the mount and fails
// unless they are equal.
func (c *homeCopier) compare(in *os.File, dst string) error {
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer out.Close()
	for {
		n1, err1 := io.ReadFull(in, c.buf[0])
		n2, err2 := io.ReadFull(out, c.buf[1])
		if n1 != n2 || !bytes.Equal(c.buf[0][:n1], c.buf[1][:n2]) {
			return errors.New("the copy in the vault differs from the original")
		}
		eof1 := err1 == io.EOF || err1 == io.ErrUnexpectedEOF
		eof2 := err2 == io.EOF || err2 == io.ErrUnexpectedEOF
		if err1 != nil && !eof1 {
			return err1
		}
		if err2 != nil && !eof2 {
			return err2
		}
		if eof1 || eof2 {
			if eof1 != eof2 {
				return errors.New("the copy in the vault has another length")
			}
			return nil
		}
	}
}

// setDirTimes gives the directories their times back, deepest first (making
// entries in a directory changed its times).
func (c *homeCopier) setDirTimes() {
	for i := len(c.dirs) - 1; i >= 0; i-- {
		unix.UtimesNanoAt(unix.AT_FDCWD, c.dirs[i].path, c.dirs[i].ts, 0)
	}
}

// fixInternalOwners gives cryptpt's own files (directory IVs, long-name
// sidecars), which the root daemon of "home init" created as root, the owner
// of their directory, so the user's daemon can manage them.
func fixInternalOwners(vault string) error {
	return filepath.Walk(vault, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch crypt.Classify(fi.Name()) {
		case crypt.DirIV, crypt.Sidecar, crypt.VaultConfig, crypt.Temp:
			var dst syscall.Stat_t
			if err := syscall.Stat(filepath.Dir(p), &dst); err != nil {
				return err
			}
			return os.Lchown(p, int(dst.Uid), int(dst.Gid))
		}
		return nil
	})
}

type homeProgressWriter struct {
	w io.Writer
	p *homeProgress
}

func (pw homeProgressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.add(int64(n))
	return n, err
}

// homeProgress shows bytes, files, rate and ETA: one line redrawn on a terminal,
// a plain line every 10 seconds (and at the end) otherwise.
type homeProgress struct {
	tty              bool
	total, done      int64
	files, filesDone int
	start, last      time.Time
	every            time.Duration
}

func newHomeProgress() *homeProgress {
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	every := 10 * time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	return &homeProgress{tty: tty, every: every}
}

func (p *homeProgress) reset(total int64, files int) {
	p.total, p.files, p.done, p.filesDone = total, files, 0, 0
	p.start, p.last = time.Now(), time.Now()
}

func (p *homeProgress) add(n int64) {
	p.done += n
	p.maybeShow()
}

func (p *homeProgress) file() {
	p.filesDone++
	p.maybeShow()
}

func (p *homeProgress) maybeShow() {
	if time.Since(p.last) >= p.every {
		p.show()
	}
}

func (p *homeProgress) show() {
	p.last = time.Now()
	el := time.Since(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el
	}
	eta := "?"
	if rate > 0 && p.total >= p.done {
		eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.done) / float64(p.total)
	}
	line := fmt.Sprintf("%s / %s (%.0f%%), %d / %d files, %s/s, ETA %s",
		homeBytes(p.done), homeBytes(p.total), pct, p.filesDone, p.files, homeBytes(int64(rate)), eta)
	if p.tty {
		fmt.Fprintf(os.Stderr, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(os.Stderr, line)
	}
}

func (p *homeProgress) finish() {
	p.show()
	if p.tty {
		fmt.Fprintln(os.Stderr)
	}
	fmt.Fprintf(os.Stderr, "Copied and verified %d files (%s).\n", p.filesDone, homeBytes(p.done))
}
