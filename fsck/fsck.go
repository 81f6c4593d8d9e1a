package fsck

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"

	"cryptpt/crypt"
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// LostFoundName is the name of the directory at the vault root that repair
// puts damaged entries and their salvaged copies in. Repair makes it an
// encrypted-mode directory (its vault name is the encrypted form of this
// name); vaults repaired by older versions may hold a plaintext-named one.
const LostFoundName = "cryptpt-lost+found"

// Names that repair gives to what it puts in LostFoundName, after the
// entry's decrypted base name (see the package doc).
const (
	// DamagedSuffix marks a damaged original kept with its vault bytes.
	DamagedSuffix = ".cryptpt-damaged"
	// DamageReportSuffix marks the report of what was lost.
	DamageReportSuffix = ".cryptpt-damage.txt"
)

// maxSmallFile bounds the directory IV and sidecar files read.
const maxSmallFile = 4096

// Kind says what a Problem is about.
type Kind int

// Problem kinds. Damage kinds come first; see Kind.Damage.
const (
	// BadContent: an encrypted file's size, header or blocks.
	BadContent Kind = iota
	// BadName: an encrypted name that does not decrypt.
	BadName
	// BadSidecar: a long name's sidecar is missing or does not match.
	BadSidecar
	// BadDirIV: a directory IV is missing (where encrypted entries need
	// it) or malformed.
	BadDirIV
	// BadSymlink: an encrypted symlink target does not decrypt.
	BadSymlink
	// BadXattr: a user.* xattr value of an encrypted entry does not decrypt.
	BadXattr
	// Unreadable: the entry could not be read at all (I/O error, permission).
	Unreadable
	// OrphanSidecar: a sidecar without its long name (warning).
	OrphanSidecar
	// LeftoverTemp: a "~~t" temporary file (warning).
	LeftoverTemp
	// UnknownReserved: a "~~" name this version does not know (warning).
	UnknownReserved
)

var kindNames = [...]string{"content", "name", "sidecar", "diriv", "symlink", "xattr", "unreadable", "orphan-sidecar", "temp", "unknown"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Damage reports whether k is damage (the mount cannot serve the entry) and
// not just a warning.
func (k Kind) Damage() bool { return k < OrphanSidecar }

// Problem is one finding.
type Problem struct {
	Kind Kind
	// Path is the plaintext path in the mount ("/Documents/report.odt") when
	// every component decrypts; otherwise "".
	Path string
	// Dir is the plaintext path of the parent directory when Path is ""
	// but the parent's path is known; otherwise "".
	Dir string
	// VaultPath is the path relative to the vault root ("~~cXX/~~cYY"), or
	// "." for the root itself.
	VaultPath string
	// Detail says what is wrong, e.g. "block 3 fails authentication".
	Detail string
	// Repaired is set in Report.Problems (not in the Options.Problem
	// callback, which runs before the repair) when repair dealt with it.
	Repaired bool
}

// Move is an entry moved aside by repair.
type Move struct {
	Path      string // plaintext path, or "" as in Problem
	VaultPath string // where it was
	To        string // where it is now: its path in the mount ("/cryptpt-lost+found/…")
}

// Range is a range of plaintext bytes.
type Range struct{ Off, Len int64 }

// Salvage is a damaged encrypted file that repair rewrote readable.
type Salvage struct {
	Path      string // plaintext path, or "" as in Problem
	VaultPath string // where it was
	// Copy is the mount path of the salvaged copy: the original's
	// plaintext with every lost range zeroed. "" when nothing could be
	// read (no copy is written then).
	Copy string
	// Original is the mount path of the damaged original, vault bytes
	// unchanged (reading a lost range there fails with EIO).
	Original string
	// Report is the mount path of the damage report, a text file.
	Report string
	Size   int64   // plaintext size of the copy
	Lost   []Range // plaintext ranges that failed authentication, in order
	// Cut is the number of stored bytes at the end that are not a whole
	// block and were left out (their plaintext, if any, is lost).
	Cut int64
	// NoHeader is set when the header did not parse; the copy, if any,
	// used the file ID where the header keeps it.
	NoHeader bool
}

// Progress counts the work done so far, and the work to do when known.
type Progress struct {
	Dirs    int64 // directories walked
	Files   int64 // encrypted regular files verified
	Bytes   int64 // ciphertext bytes verified
	Entries int64 // vault entries looked at (every name in every directory)
	// TotalEntries and TotalBytes come from a quick first pass that only
	// lists directories and stats entries (see Options.Progress); 0 when
	// unknown.
	TotalEntries int64
	TotalBytes   int64
}

// Options control Check. All callbacks are optional and called from the
// goroutine running Check.
type Options struct {
	// Repair moves damaged entries into LostFoundName (see the package doc).
	Repair bool
	// Problem is called for each finding as it is made.
	Problem func(Problem)
	// Moved is called for each entry that repair moved.
	Moved func(Move)
	// Progress is called often (after each file and each chunk read);
	// the callee throttles its output. When it is set, Check first walks
	// the vault once without reading any file (listing directories and
	// stating entries), to fill in the totals.
	Progress func(Progress)
	// Salvaged is called for each damaged file that repair rewrote.
	Salvaged func(Salvage)
	// FormatVersion is the content format of the files repair writes:
	// the vault's (0: crypt.FormatVersion).
	FormatVersion uint16
}

// Report is the result of Check.
type Report struct {
	Progress
	Names     int64 // encrypted names verified (including long names)
	Symlinks  int64 // encrypted symlink targets verified
	Xattrs    int64 // encrypted xattr values verified
	Plaintext int64 // plaintext-mode entries other than directories (nothing to verify)
	LostFound int64 // entries already in LostFoundName (not walked)
	Problems  []Problem
	Moves     []Move
	Salvages  []Salvage
}

// Damaged returns the number of problems that are damage.
func (r *Report) Damaged() int {
	n := 0
	for _, p := range r.Problems {
		if p.Kind.Damage() {
			n++
		}
	}
	return n
}

// Warnings returns the number of problems that are warnings.
func (r *Report) Warnings() int { return len(r.Problems) - r.Damaged() }

// Unrepaired returns the number of problems that are damage and that
// repair did not deal with (all of them without Options.Repair).
func (r *Report) Unrepaired() int {
	n := 0
	for _, p := range r.Problems {
		if p.Kind.Damage() && !p.Repaired {
			n++
		}
	}
	return n
}

// Check verifies the vault at backing with k (see the package doc). It
// returns an error only when the walk cannot start or repair cannot create
// LostFoundName; everything found inside the vault is a Problem.
func Check(backing string, k *crypt.Keys, o Options) (*Report, error) {
	rootFd, err := unix.Open(backing, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: backing, Err: err}
	}
	defer unix.Close(rootFd)
	c := &checker{
		k:      k,
		o:      o,
		rep:    &Report{},
		rootFd: rootFd,
		seen:   map[inode]string{},
		buf:    make([]byte, readChunkBlocks*crypt.CipherBlockSize),
	}
	defer c.lf.close()
	c.lfStored = c.lostFoundStored()
	if o.Progress != nil {
		c.rep.TotalEntries, c.rep.TotalBytes = c.estimate()
	}
	c.dir(rootFd, "", "/")
	if c.fatal != nil {
		return c.rep, c.fatal
	}
	return c.rep, nil
}

type inode struct{ dev, ino uint64 }

type checker struct {
	k      *crypt.Keys
	o      Options
	rep    *Report
	rootFd int
	lf     lostFound
	seen   map[inode]string // detail of hard-linked encrypted files checked ("" = good)
	buf    []byte
	plain  []byte
	fatal  error
	// rootIV is the root's directory IV (nil if unusable or absent);
	// rootIVAbsent says it is absent and nothing needs it.
	rootIV       *[crypt.DirIVSize]byte
	rootIVAbsent bool
	// lfStored is the vault name of an encrypted LostFoundName ("" when
	// the root's IV is unusable).
	lfStored string
}

// entry is what is known about one vault entry while it is checked.
type entry struct {
	dirfd   int
	name    string // vault name
	vpath   string // vault path relative to the root
	ppath   string // plaintext path, "" if unknown
	plain   string // decrypted name, "" if unknown (known even where ppath is not)
	dir     string // plaintext path of the parent, "" if unknown
	sidecar string // sidecar name to move along, if any
	damaged bool   // a damage problem that repair moves the entry for
	// dirIV is the IV the name of an encrypted entry whose name
	// decrypted is encrypted under, which format 2 binds symlink
	// targets to (with the name, plain).
	dirIV *[crypt.DirIVSize]byte
	// sealedAs is, for a sync tool's conflict copy of a symlink, the name
	// of the link it copies, whose target it holds.
	sealedAs string
	// What repair must do about it.
	badContent bool  // content damaged: salvage
	nameLost   bool  // the name cannot be decrypted: a made-up name
	probs      []int // indexes in Report.Problems that repairing e repairs
}

// report records a problem of e and returns its index in Report.Problems.
func (c *checker) report(e *entry, k Kind, format string, args ...any) int {
	p := Problem{Kind: k, Path: e.ppath, VaultPath: e.vpath, Detail: fmt.Sprintf(format, args...)}
	if p.Path == "" {
		p.Dir = e.dir
	}
	i := len(c.rep.Problems)
	c.rep.Problems = append(c.rep.Problems, p)
	if c.o.Problem != nil {
		c.o.Problem(p)
	}
	switch k {
	case BadContent, BadName, BadSidecar, BadSymlink, Unreadable:
		e.damaged = true
		e.probs = append(e.probs, i)
	}
	switch k {
	case BadContent:
		e.badContent = true
	case BadName, BadSidecar:
		e.nameLost = true
	}
	return i
}

// repaired marks the problems with the given indexes as repaired.
func (c *checker) repaired(probs []int) {
	for _, i := range probs {
		c.rep.Problems[i].Repaired = true
	}
}

func (c *checker) progress() {
	if c.o.Progress != nil {
		c.o.Progress(c.rep.Progress)
	}
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "/" + name
}

func plainJoin(parent, name string) string {
	if parent == "" {
		return ""
	}
	return path.Join(parent, name)
}

// dir checks the directory open at fd (vault path vpath, plaintext path
// ppath or "") and everything below it. fd stays owned by the caller.
func (c *checker) dir(fd int, vpath, ppath string) {
	c.rep.Dirs++
	c.progress()
	self := &entry{dirfd: fd, vpath: vpath, ppath: ppath}
	if vpath == "" {
		self.vpath = "."
	}
	names, err := readNames(fd)
	if err != nil {
		c.report(self, Unreadable, "cannot list directory: %v", err)
		return
	}
	slices.Sort(names)
	present := make(map[string]bool, len(names))
	var lost []layout.LostIV
	hasEncrypted, hasDirIV := false, false
	for _, n := range names {
		present[n] = true
		if base, marker := crypt.SplitConflict(n); marker != "" {
			// A sync tool's conflict copy uses its base's sidecar.
			present[base+conflictUser] = true
		}
		if l := layout.ReadLostIV(fd, crypt.DirIVConflictMarker(n)); l != nil {
			lost = append(lost, *l)
		}
		switch crypt.Classify(n) {
		case crypt.Encrypted, crypt.Long:
			hasEncrypted = true
		case crypt.DirIV:
			hasDirIV = true
		}
	}
	// An encrypted directory always has an IV (the mount refuses to make a
	// new one for it), even while it holds no encrypted entry yet.
	encDir := vpath != "" && layout.IsEncrypted(path.Base(vpath))
	iv := c.dirIV(fd, vpath, self, hasDirIV, hasEncrypted || encDir)
	if vpath == "" {
		c.rootIV, c.rootIVAbsent = iv, !hasDirIV && !hasEncrypted
	}

	for _, name := range names {
		if c.fatal != nil {
			return
		}
		e := &entry{dirfd: fd, name: name, vpath: join(vpath, name), dir: ppath}
		c.rep.Entries++
		if vpath == "" && name == c.lfStored && c.lfStored != "" {
			c.rep.LostFound += c.countLostFound(fd, name)
			continue
		}
		switch kind := crypt.Classify(name); kind {
		case crypt.Plain:
			if vpath == "" && name == LostFoundName {
				c.rep.LostFound += c.countLostFound(fd, name)
				continue
			}
			e.ppath = plainJoin(ppath, name)
			c.plainEntry(e)
		case crypt.Encrypted, crypt.Long:
			c.encryptedEntry(e, kind, iv, present, lost)
		case crypt.Sidecar:
			long := crypt.LongPrefix + name[len(crypt.SidecarPrefix):]
			if !present[long] && !present[long+conflictUser] {
				c.report(e, OrphanSidecar, "long-name sidecar without its entry %s", long)
				c.keepRaw(e, name[len(crypt.ReservedPrefix):]+".cryptpt-orphan-sidecar")
			}
		case crypt.DirIV:
			// Checked above.
		case crypt.VaultConfig:
			if vpath != "" {
				c.report(e, UnknownReserved, "vault config name outside the vault root (left in place)")
			}
		case crypt.Temp:
			c.report(e, LeftoverTemp, "leftover temporary file")
			c.keepRaw(e, name[len(crypt.ReservedPrefix):]+".cryptpt-temp")
		default:
			if crypt.DirIVConflictMarker(name) != "" {
				continue // a sync tool's copy of the IV: read above
			}
			c.report(e, UnknownReserved, "name reserved for cryptpt that this version does not know (left in place)")
		}
	}
}

// conflictUser marks, in a directory's set of names, a long name that a
// conflict copy's sidecar belongs to ('/' is in no vault name).
const conflictUser = "/conflict"

// dirIV reads and checks the directory IV of the directory open at fd.
func (c *checker) dirIV(fd int, vpath string, self *entry, present, needed bool) *[crypt.DirIVSize]byte {
	ivEntry := &entry{dirfd: fd, name: crypt.DirIVName, vpath: join(vpath, crypt.DirIVName), dir: self.ppath}
	if !present {
		if needed {
			c.report(self, BadDirIV, "%s is missing, so no encrypted name in this directory can be decrypted (restore it from a backup)", crypt.DirIVName)
		}
		return nil
	}
	data, err := layout.ReadSmallFile(fd, crypt.DirIVName)
	var iv *[crypt.DirIVSize]byte
	if err == nil {
		iv, err = crypt.ParseDirIV(data)
		if err != nil {
			err = fmt.Errorf("%d bytes, want %d", len(data), crypt.DirIVSize)
		}
	}
	if err == nil {
		return iv
	}
	if needed {
		c.report(self, BadDirIV, "%s is unusable (%v), so no encrypted name in this directory can be decrypted (restore it from a backup)", crypt.DirIVName, err)
		return nil
	}
	// No encrypted entry depends on it: a new one is made on demand.
	i := c.report(self, BadDirIV, "%s is unusable (%v); no entry depends on it", crypt.DirIVName, err)
	base := "root"
	if self.ppath != "" && self.ppath != "/" {
		base = path.Base(self.ppath)
	}
	if c.keepRaw(ivEntry, base+".cryptpt-diriv") {
		c.repaired([]int{i})
	}
	return nil
}

// plainEntry walks a plaintext-mode entry: directories are descended into,
// everything else has nothing to verify.
func (c *checker) plainEntry(e *entry) {
	var st unix.Stat_t
	if err := unix.Fstatat(e.dirfd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		c.report(e, Unreadable, "cannot stat: %v", err)
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		c.rep.Plaintext++
		return
	}
	c.subdir(e)
}

// subdir opens the directory e and checks it.
func (c *checker) subdir(e *entry) {
	fd, err := unix.Openat(e.dirfd, e.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		c.report(e, Unreadable, "cannot open directory: %v", err)
		return
	}
	defer unix.Close(fd)
	ppath := e.ppath
	c.dir(fd, e.vpath, ppath)
	if !e.damaged {
		c.xattrs(fd, e)
	}
}

// encryptedEntry checks an encrypted-mode entry: its name, then what it holds.
func (c *checker) encryptedEntry(e *entry, kind crypt.NameKind, iv *[crypt.DirIVSize]byte, present map[string]bool, lost []layout.LostIV) {
	c.rep.Names++
	// A sync tool's conflict copy: the name and sidecar of the entry it
	// copies, shown with the marker (crypt.ConflictName).
	base, marker := crypt.SplitConflict(e.name)
	kind = crypt.Classify(base)
	var sidecar []byte
	if kind == crypt.Long {
		sc := crypt.SidecarName(base)
		if present[sc] {
			if marker == "" && !present[base+conflictUser] {
				// Moved along on repair; one a conflict copy shares
				// stays where it is.
				e.sidecar = sc
			}
			data, err := layout.ReadSmallFile(e.dirfd, sc)
			if err != nil {
				c.report(e, BadSidecar, "long-name sidecar %s unreadable: %v", sc, err)
			} else {
				sidecar = data
			}
		} else {
			c.report(e, BadSidecar, "long-name sidecar %s is missing", sc)
		}
	}
	if sidecar != nil && !sidecarMatches(base, sidecar) {
		c.report(e, BadSidecar, "long-name sidecar %s does not match the name", e.sidecar)
		sidecar = nil
	}
	if iv != nil && (kind == crypt.Encrypted || sidecar != nil) {
		name, err := c.k.Names().Decrypt(iv, base, sidecar)
		for _, l := range lost {
			if err == nil || marker != "" {
				break
			}
			if lname, lerr := c.k.Names().Decrypt(l.IV, base, sidecar); lerr == nil {
				name, err, marker, iv = lname, nil, l.Marker, l.IV
			}
		}
		switch {
		case err == nil && marker != "":
			e.sealedAs = name
			if shown := crypt.ConflictName(name, marker); shown != "" {
				name = shown
			} else {
				name += marker // the mount cannot show it (docs/threat-model.md)
			}
			fallthrough
		case err == nil:
			e.plain = name
			e.ppath = plainJoin(e.dir, name)
			e.dirIV = iv
		case errors.Is(err, crypt.ErrAuth):
			c.report(e, BadName, "name fails authentication")
		default:
			c.report(e, BadName, "malformed encrypted name")
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(e.dirfd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		c.report(e, Unreadable, "cannot stat: %v", err)
		c.repairEntry(e, nil)
		return
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		// Children first: a directory is moved aside only after its
		// damaged children were.
		c.subdir(e)
	case unix.S_IFREG:
		c.file(e, &st)
	case unix.S_IFLNK:
		c.symlink(e)
	}
	c.repairEntry(e, &st)
}

// symlink verifies an encrypted symlink target.
func (c *checker) symlink(e *entry) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(e.dirfd, e.name, buf)
	if err != nil {
		c.report(e, Unreadable, "cannot read symlink: %v", err)
		return
	}
	c.rep.Symlinks++
	stored := buf[:n]
	if !layout.IsSealedSymlink(stored) {
		c.report(e, BadSymlink, "symlink target is not in the encrypted form")
		return
	}
	if e.dirIV == nil {
		return // the name did not decrypt: reported already
	}
	for _, name := range []string{e.plain, e.sealedAs} {
		if name == "" {
			continue
		}
		if _, err := layout.OpenSymlink(c.k, c.formats(), e.dirIV, name, stored); err == nil {
			return
		}
	}
	c.report(e, BadSymlink, "symlink target fails authentication (or was moved from another link)")
}

// entryID returns what format-2 xattr values of the entry open at fd are
// bound to: a regular file's ID, a directory's IV; nil if it has none.
func entryID(fd int) *[16]byte {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		iv, _ := layout.ReadDirIV(fd)
		return iv
	}
	var hb [crypt.HeaderSize]byte
	if n, _ := unix.Pread(fd, hb[:], 0); n != len(hb) {
		return nil
	}
	h, err := crypt.ParseHeader(hb[:])
	if err != nil {
		return nil
	}
	return &h.ID
}

// formats lists the formats a sealed value in the vault may be in.
func (c *checker) formats() []uint16 { return layout.Formats(c.o.FormatVersion) }

// xattrs verifies the user.* xattr values of the encrypted entry open at fd.
func (c *checker) xattrs(fd int, e *entry) {
	if !layout.IsEncrypted(e.name) {
		return
	}
	names, err := layout.ListXattrs(fd)
	if err != nil {
		if !errors.Is(err, unix.ENOTSUP) {
			c.report(e, BadXattr, "cannot list extended attributes: %v", err)
		}
		return
	}
	id := entryID(fd)
	for _, name := range names {
		if !layout.SealsXattr(name) {
			continue
		}
		c.rep.Xattrs++
		val, err := layout.GetXattr(fd, name)
		if err != nil {
			c.report(e, BadXattr, "extended attribute %s unreadable: %v", name, err)
			continue
		}
		if _, err := layout.OpenXattr(c.k, c.formats(), name, id, val); err != nil {
			c.report(e, BadXattr, "extended attribute %s fails authentication (not repaired: remove it through the mount)", name)
		}
	}
}

// sidecarMatches reports whether sidecar hashes to the long name, as
// crypt.Names.Decrypt checks; done here too so that a wrong sidecar and a
// name that fails authentication are told apart.
func sidecarMatches(long string, sidecar []byte) bool {
	h := sha256.Sum256(sidecar)
	return long == crypt.LongPrefix+base64URL.EncodeToString(h[:])
}

// countLostFound counts the entries of the lost+found directory name at
// the root, as the mount lists them (without cryptpt's own files).
func (c *checker) countLostFound(rootFd int, name string) int64 {
	fd, err := unix.Openat(rootFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	names, _ := readNames(fd)
	var n int64
	for _, name := range names {
		switch crypt.Classify(name) {
		case crypt.Plain, crypt.Encrypted, crypt.Long:
			n++
		}
	}
	return n
}

// lostFoundStored returns the vault name of the encrypted LostFoundName,
// or "" when the root has no usable directory IV.
func (c *checker) lostFoundStored() string {
	iv, err := layout.ReadDirIV(c.rootFd)
	if err != nil {
		return ""
	}
	stored, _, err := encryptName(c.k, iv, LostFoundName)
	if err != nil {
		return ""
	}
	return stored
}
