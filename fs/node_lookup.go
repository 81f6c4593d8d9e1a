package fs

import (
	"context"
	"strings"
	"syscall"

	"cryptpt/crypt"
	"cryptpt/layout"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var _ = (gofs.NodeLookuper)((*node)(nil))

// Lookup finds name in either form. The policy only picks which form to try
// first; what exists decides. When both forms exist (only possible through
// tampering or a policy change) the encrypted one wins where the policy
// encrypts and the plaintext one where it does not.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.v.touch()
	// How long the kernel may remember that name is not here
	// (cachingFS.Lookup); a child found sets its own.
	out.SetEntryTimeout(n.entryTimeout())
	if errno := checkName(name); errno != 0 {
		return nil, errno
	}
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return nil, errno
	}
	defer fdRelease()
	n.v.watch.watch(n, fd)
	path := n.childPath(name)
	plainFirst := n.v.policy().Decide(path, false).Plaintext
	order := []bool{true, false} // enc?
	if plainFirst {
		order = []bool{false, true}
	}
	for _, enc := range order {
		stored, errno := n.storedName(name, enc, false)
		if errno == syscall.ENOENT {
			continue // no directory IV: no encrypted entries here
		}
		if errno == syscall.EINVAL && !enc {
			// A reserved name (storedNameSidecar): no plaintext entry
			// has it, an encrypted one may.
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		ch, errno := n.lookupAt(ctx, fd, path, stored, enc, out)
		if errno == syscall.ENOENT {
			continue
		}
		return ch, errno
	}
	return nil, syscall.ENOENT
}

// lookupStored is Lookup of the entry name when its place in the vault is
// known (from a listing): stored, in mode enc.
func (n *node) lookupStored(ctx context.Context, name, stored string, enc bool, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.v.touch()
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return nil, errno
	}
	defer fdRelease()
	n.v.watch.watch(n, fd)
	ch, errno := n.lookupAt(ctx, fd, n.childPath(name), stored, enc, out)
	if errno == syscall.ENOENT {
		// Gone or changed since it was listed: look for it as a name.
		return n.Lookup(ctx, name, out)
	}
	return ch, errno
}

// lookupAt makes the child for the vault entry stored in the directory at
// fd, whose path in the mount is path; ENOENT when it is not there.
func (n *node) lookupAt(ctx context.Context, fd int, path, stored string, enc bool, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	var st syscall.Stat_t
	gen, err := statGen(fd, stored, &st)
	if err != nil {
		return nil, toErrno(err)
	}
	show, quarantine := n.admit(path, enc, st.Mode&syscall.S_IFMT == syscall.S_IFDIR)
	if !show {
		return nil, syscall.ENOENT
	}
	name := path[strings.LastIndexByte(path, '/')+1:]
	if old := n.childNode(name); old != nil && old.isEnc() == enc && old.ino.Load() == st.Ino && old.StableAttr().Ino != st.Ino {
		// The daemon replaced this entry in the vault (re-sealed or
		// migrated it): it is still the node the kernel knows, under
		// its number.
		old.fillAttr(&st, &out.Attr)
		out.SetEntryTimeout(n.entryTimeout())
		out.SetAttrTimeout(n.entryTimeout())
		old.injected.Store(quarantine)
		return old.EmbeddedInode(), 0
	}
	ch := n.newChild(ctx, enc, &st, gen, out)
	ch.Operations().(*node).injected.Store(quarantine)
	return ch, 0
}

// admit records entries whose stored mode differs from the policy and says
// whether to show them, and whether to quarantine them. A plaintext-form
// entry at a path the policy encrypts cannot be authenticated: anyone who
// can write the vault may have planted it to catch what the user writes
// there. It is hidden on untrusted storage, and otherwise quarantined:
// readable, but refused for writing (EACCES), and a symlink's target is
// EIO, until "cryptpt migrate" encrypts it (docs/threat-model.md).
func (n *node) admit(path string, enc, isDir bool) (show, quarantine bool) {
	plainPolicy := n.v.policy().Decide(path, isDir).Plaintext
	switch {
	case enc && plainPolicy:
		n.v.stats.note(&n.v.stats.drift, path)
	case !enc && !plainPolicy:
		if n.v.opts.UntrustedStorage {
			n.v.stats.hiddenEntries.Add(1)
			n.v.logf("hidden: a plaintext entry in %s at a path the policy encrypts (untrusted storage)", n.v.entryName(n))
			return false, false
		}
		if n.v.stats.note(&n.v.stats.injected, path) {
			name := path[strings.LastIndexByte(path, '/')+1:]
			n.v.logf("quarantined: a plaintext entry %s at a path the policy encrypts: read-only until \"cryptpt migrate\" encrypts it", n.v.childName(n, name, ""))
		}
		return true, true
	}
	return true, false
}

// listing returns a listing of the directory: the last one made, with reuse
// set and if there is one, else a fresh one (dirlist.go).
func (n *node) listing(reuse bool) (*dirListing, syscall.Errno) {
	if reuse {
		if l := n.v.listings.get(n); l != nil {
			return l, 0
		}
	}
	l, errno := n.list()
	if errno != 0 {
		return nil, errno
	}
	n.v.listings.put(n, l)
	return l, 0
}

// list lists the directory with names decrypted. Vault-owned files are
// skipped; names that fail to decrypt are skipped with a log line.
func (n *node) list() (*dirListing, syscall.Errno) {
	n.v.touch()
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return nil, errno
	}
	defer fdRelease()
	n.v.watch.watch(n, fd)
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	raw, err := readDirents(dfd)
	unix.Close(dfd)
	if err != nil {
		return nil, toErrno(err)
	}
	l := &dirListing{
		entries: make([]fuse.DirEntry, 0, len(raw)+2),
		sources: make([]entrySource, 2, len(raw)+2),
	}
	// "." and ".." as getdents shows them (go-fuse does not look them up).
	dotdot := n.ino.Load()
	if p, _, errno := n.parent(); errno == 0 {
		dotdot = p.ino.Load()
	}
	l.entries = append(l.entries,
		fuse.DirEntry{Name: ".", Ino: n.ino.Load(), Mode: syscall.S_IFDIR},
		fuse.DirEntry{Name: "..", Ino: dotdot, Mode: syscall.S_IFDIR})
	// A name can exist in both forms after an interrupted migrate; list it
	// once, as Lookup will resolve it.
	seen := make(map[string]int, len(raw)) // name -> index in l
	var lost []layout.LostIV
	lostRead := false
	lostIVs := func() []layout.LostIV {
		if !lostRead {
			lost, lostRead = readLostIVs(fd, raw), true
		}
		return lost
	}
	for _, e := range raw {
		stored := e.Name
		name, enc, ok := n.decodeEntry(fd, stored, lostIVs)
		if !ok {
			continue
		}
		if i, twin := seen[name]; twin {
			n.v.stats.note(&n.v.stats.twins, n.childPath(name))
			if i >= 0 {
				// Which form the entry is, Lookup decides (by the
				// policy), not the order getdents happened to give.
				l.sources[i] = entrySource{}
			}
			continue
		}
		seen[name] = -1
		if !enc || n.v.opts.UntrustedStorage {
			// Only plaintext entries can be hidden; skip the policy
			// check for the common encrypted case.
			if show, _ := n.admit(n.childPath(name), enc, e.Mode == syscall.S_IFDIR); !show {
				continue
			}
		}
		e.Name = name
		seen[name] = len(l.entries)
		l.entries = append(l.entries, e)
		l.sources = append(l.sources, entrySource{stored: stored, enc: enc})
	}
	return l, 0
}

// decodeEntry maps a vault name to the name shown in the mount, logging
// an entry it hides; lost gives the directory's lost IVs (readLostIVs).
func (n *node) decodeEntry(dirfd int, stored string, lost func() []layout.LostIV) (name string, enc bool, ok bool) {
	name, enc, why := n.decodeName(dirfd, stored, lost)
	if why != "" {
		n.hide(stored, why)
		return "", false, false
	}
	return name, enc, name != ""
}

// plainName is decodeEntry without a log line: for the watcher, which
// sees entries that are still being written (a long name's sidecar).
func (n *node) plainName(dirfd int, stored string) (name string, enc bool, ok bool) {
	name, enc, why := n.decodeName(dirfd, stored, func() []layout.LostIV { return readLostIVs(dirfd, nil) })
	return name, enc, why == "" && name != ""
}

// decodeName maps a vault name to the name shown in the mount: "" for
// cryptpt's own files (directory IV, sidecars, vault config, temp files)
// and a sync tool's (syncToolName), and why not, for an encrypted name it
// cannot read. A sync tool's conflict copy of an encrypted entry, and an
// entry named under a directory IV that lost a conflict (lost, called only
// when a name fails to decrypt), are shown under the entry's name with the
// conflict marker (conflictStored).
func (n *node) decodeName(dirfd int, stored string, lost func() []layout.LostIV) (name string, enc bool, why string) {
	switch crypt.Classify(stored) {
	case crypt.Plain:
		if syncToolName(n.IsRoot(), stored) {
			return "", false, ""
		}
		return stored, false, ""
	case crypt.Encrypted, crypt.Long:
	default:
		return "", false, ""
	}
	iv, errno := n.dirIV(false)
	if errno != 0 {
		return "", false, "directory has no readable IV"
	}
	base, marker := crypt.SplitConflict(stored)
	name, why = n.decryptName(dirfd, iv, base)
	if why != "" && marker == "" {
		// Made on another device in its own copy of this directory?
		for _, l := range lost() {
			if lname, lwhy := n.decryptName(dirfd, l.IV, stored); lwhy == "" {
				name, marker, why = lname, l.Marker, ""
				break
			}
		}
	}
	if why != "" || marker == "" {
		return name, why == "", why
	}
	shown := crypt.ConflictName(name, marker)
	if shown == "" {
		return "", false, "conflict copy: no name of at most 255 bytes can show it"
	}
	if got, _ := n.conflictStored(dirfd, iv, shown); got != stored {
		// What the name leads to must be this entry: every operation on
		// it finds its vault name that way (storedName).
		return "", false, "conflict copy: its name in the mount belongs to another entry"
	}
	return shown, true, ""
}

// decryptName decrypts the Encrypted or Long vault name stored in the
// directory open at fd, whose IV is iv, or says why it cannot.
func (n *node) decryptName(fd int, iv *[crypt.DirIVSize]byte, stored string) (name, why string) {
	var sidecar []byte
	if crypt.Classify(stored) == crypt.Long {
		var err error
		if sidecar, err = layout.ReadSmallFile(fd, crypt.SidecarName(stored)); err != nil {
			return "", "long-name sidecar: " + err.Error()
		}
	}
	name, err := n.v.names.Decrypt(iv, stored, sidecar)
	if err != nil {
		return "", err.Error()
	}
	return name, ""
}

// Files of sync tools.
//
// A sync tool keeps files of its own in the folders it syncs, and when two
// devices changed one file while apart it keeps the losing version as a
// conflict copy. Syncthing names that NAME.sync-conflict-DATE-TIME-DEVICE,
// which for an encrypted entry is its vault name plus that marker
// (crypt.SplitConflict): the copy holds the same ciphertext format, named
// and sealed as the entry was, so it decrypts and authenticates as usual.
// The mount shows it as Syncthing shows a plaintext file's copy, the
// marker before the extension ("report.sync-conflict-...-ABCDEF2.pdf"),
// and finds it again from that name (conflictStored): storedName maps such
// a name to the copy while the copy exists and no entry of its own has the
// name, so reading, renaming (over the original, to keep that version) and
// deleting it work as for any encrypted entry. New entries never get such a
// vault name: only an existing copy resolves to one, and content written
// to it is encrypted like any encrypted entry's.

// syncToolName reports a plaintext-form name that a sync tool keeps for
// itself: Syncthing's temp files (".syncthing.NAME.tmp", and
// "~syncthing~NAME.tmp" as it names them on Windows) anywhere, and its
// folder marker, ignore file and versions directory at the vault root
// (which Syncthing never syncs). The mount never shows them, and never
// gives an entry such a plaintext name: a whole-mount "cryptpt migrate"
// would otherwise encrypt ".stfolder", and Syncthing stops a folder whose
// marker is gone.
func syncToolName(root bool, name string) bool {
	if strings.HasSuffix(name, ".tmp") && (strings.HasPrefix(name, ".syncthing.") || strings.HasPrefix(name, "~syncthing~")) {
		return true
	}
	return root && (name == ".stfolder" || name == ".stignore" || name == ".stversions")
}

// conflictStored returns the vault name of the conflict copy shown as
// shown in the directory open at fd, whose IV is iv: the copy's, if it
// exists and no entry of its own has the name (which wins, as its listing
// comes first in Lookup).
func (n *node) conflictStored(fd int, iv *[crypt.DirIVSize]byte, shown string) (string, bool) {
	name, marker, ok := crypt.ParseConflictName(shown)
	if !ok {
		return "", false
	}
	var st syscall.Stat_t
	if own, _, err := n.v.names.Encrypt(iv, shown); err == nil && fstatat(fd, own, &st) == nil {
		return "", false
	}
	base, _, err := n.v.names.Encrypt(iv, name)
	if err == nil && len(base)+len(marker) <= crypt.MaxNameLen && fstatat(fd, base+marker, &st) == nil {
		return base + marker, true
	}
	if l := layout.ReadLostIV(fd, marker); l != nil {
		if s, _, err := n.v.names.Encrypt(l.IV, name); err == nil && fstatat(fd, s, &st) == nil {
			return s, true
		}
	}
	if !crypt.ConflictNameCut(shown) {
		return "", false
	}
	// The copy of a name too long to show whole with the marker: its name
	// was cut, so look among the copies with this marker (rare: names of
	// over 217 bytes).
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false
	}
	ents, err := readDirents(dfd)
	unix.Close(dfd)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		b, m := crypt.SplitConflict(e.Name)
		if m != marker {
			continue
		}
		if orig, why := n.decryptName(fd, iv, b); why == "" && crypt.ConflictName(orig, m) == shown {
			return e.Name, true
		}
	}
	return "", false
}

// conflictStoredName is storedName's lookup of a conflict copy (see
// conflictStored), for names that carry a conflict marker.
func (n *node) conflictStoredName(iv *[crypt.DirIVSize]byte, name string) (string, bool) {
	if !strings.Contains(name, ".sync-conflict-") {
		return "", false
	}
	fd, release, errno := n.dirfd()
	if errno != 0 {
		return "", false
	}
	defer release()
	return n.conflictStored(fd, iv, name)
}

// A directory made under one name on two devices while they were apart
// gets an IV of its own on each. The sync tool merges the two directories
// and keeps one "~~diriv"; the other becomes its conflict copy,
// "~~diriv.sync-conflict-...", and the entries made on that device are
// named under it. They are shown as conflict copies of themselves, with
// that copy's marker, and found by that name (conflictStored), so both
// devices' entries are reachable; renaming one through the mount names it
// under the directory's IV again.

// readLostIVs reads the lost IVs of the directory open at fd, whose
// entries are ents (nil: listed here).
func readLostIVs(fd int, ents []fuse.DirEntry) []layout.LostIV {
	if ents == nil {
		dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil
		}
		ents, err = readDirents(dfd)
		unix.Close(dfd)
		if err != nil {
			return nil
		}
	}
	var out []layout.LostIV
	for _, e := range ents {
		if l := layout.ReadLostIV(fd, crypt.DirIVConflictMarker(e.Name)); l != nil {
			out = append(out, *l)
		}
	}
	return out
}

// openLostSymlink opens the target of a symlink shown as the conflict
// copy name, named under a lost IV of the directory open at fd.
func (n *node) openLostSymlink(fd int, name string, stored []byte) ([]byte, bool) {
	orig, marker, ok := crypt.ParseConflictName(name)
	if !ok {
		return nil, false
	}
	l := layout.ReadLostIV(fd, marker)
	if l == nil {
		return nil, false
	}
	target, err := n.openSymlinkIV(l.IV, orig, stored)
	return target, err == nil
}

// sidecarInUse reports whether the long name stored (or a conflict copy
// of it) still exists in the directory open at fd, so its sidecar must stay.
func sidecarInUse(fd int, stored string) bool {
	var st syscall.Stat_t
	if fstatat(fd, stored, &st) == nil {
		return true
	}
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true // cannot tell: keep it
	}
	ents, err := readDirents(dfd)
	unix.Close(dfd)
	if err != nil {
		return true
	}
	for _, e := range ents {
		if base, marker := crypt.SplitConflict(e.Name); marker != "" && base == stored {
			return true
		}
	}
	return false
}

func (n *node) hide(stored, why string) {
	n.v.stats.hiddenEntries.Add(1)
	n.v.logf("hidden: vault entry %q in %s: %s", stored, n.v.entryName(n), why)
}

// readDirents reads all entries of an open directory, without "." and "..".
func readDirents(fd int) ([]fuse.DirEntry, error) {
	var out []fuse.DirEntry
	buf := make([]byte, 64*1024)
	for {
		nb, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if nb <= 0 {
			return out, nil
		}
		for off := 0; off < nb; {
			d := (*unix.Dirent)(unsafePointer(&buf[off]))
			off += int(d.Reclen)
			name := direntName(d)
			if name == "." || name == ".." {
				continue
			}
			out = append(out, fuse.DirEntry{Name: name, Ino: d.Ino, Mode: dtToMode(d.Type)})
		}
	}
}

func dtToMode(t uint8) uint32 {
	switch t {
	case unix.DT_REG:
		return syscall.S_IFREG
	case unix.DT_DIR:
		return syscall.S_IFDIR
	case unix.DT_LNK:
		return syscall.S_IFLNK
	case unix.DT_FIFO:
		return syscall.S_IFIFO
	case unix.DT_SOCK:
		return syscall.S_IFSOCK
	case unix.DT_CHR:
		return syscall.S_IFCHR
	case unix.DT_BLK:
		return syscall.S_IFBLK
	}
	return 0
}
