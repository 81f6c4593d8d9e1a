package fs

import (
	"context"
	"strings"
	"syscall"

	"cryptpt/crypt"

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
	if len(name) > 255 {
		return nil, syscall.ENAMETOOLONG
	}
	if strings.HasPrefix(name, crypt.ReservedPrefix) {
		return nil, syscall.ENOENT
	}
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return nil, errno
	}
	defer fdRelease()
	path := n.childPath(name)
	plainFirst := n.v.policy().Decide(path, false).Plaintext
	order := []bool{true, false} // enc?
	if plainFirst {
		order = []bool{false, true}
	}
	var st syscall.Stat_t
	for _, enc := range order {
		stored, errno := n.storedName(name, enc, false)
		if errno == syscall.ENOENT {
			continue // no directory IV: no encrypted entries here
		}
		if errno != 0 {
			return nil, errno
		}
		gen, err := statGen(fd, stored, &st)
		if err != nil {
			if err == unix.ENOENT {
				continue
			}
			return nil, toErrno(err)
		}
		show, quarantine := n.admit(path, enc, st.Mode&syscall.S_IFMT == syscall.S_IFDIR)
		if !show {
			return nil, syscall.ENOENT
		}
		if old := n.childNode(name); old != nil && old.isEnc() == enc && old.ino.Load() == st.Ino && old.StableAttr().Ino != st.Ino {
			// The daemon replaced this entry in the vault (re-sealed
			// or migrated it): it is still the node the kernel knows,
			// under its number.
			old.fillAttr(&st, &out.Attr)
			old.injected.Store(quarantine)
			return old.EmbeddedInode(), 0
		}
		ch := n.newChild(ctx, enc, &st, gen, out)
		ch.Operations().(*node).injected.Store(quarantine)
		return ch, 0
	}
	return nil, syscall.ENOENT
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

var _ = (gofs.NodeReaddirer)((*node)(nil))

// Readdir lists the directory with names decrypted. Vault-owned files are
// skipped; names that fail to decrypt are skipped with a log line.
func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	n.v.touch()
	fd, fdRelease, errno := n.dirfd()
	if errno != 0 {
		return nil, errno
	}
	defer fdRelease()
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, toErrno(err)
	}
	raw, err := readDirents(dfd)
	unix.Close(dfd)
	if err != nil {
		return nil, toErrno(err)
	}
	entries := make([]fuse.DirEntry, 0, len(raw)+2)
	// "." and ".." as getdents shows them (go-fuse does not look them up).
	dotdot := n.ino.Load()
	if p, _, errno := n.parent(); errno == 0 {
		dotdot = p.ino.Load()
	}
	entries = append(entries,
		fuse.DirEntry{Name: ".", Ino: n.ino.Load(), Mode: syscall.S_IFDIR},
		fuse.DirEntry{Name: "..", Ino: dotdot, Mode: syscall.S_IFDIR})
	// A name can exist in both forms after an interrupted migrate; list it
	// once, as Lookup will resolve it.
	seen := make(map[string]bool, len(raw))
	for _, e := range raw {
		name, enc, ok := n.decodeEntry(fd, e.Name)
		if !ok {
			continue
		}
		if seen[name] {
			n.v.stats.note(&n.v.stats.twins, n.childPath(name))
			continue
		}
		seen[name] = true
		if !enc || n.v.opts.UntrustedStorage {
			// Only plaintext entries can be hidden; skip the policy
			// check for the common encrypted case.
			if show, _ := n.admit(n.childPath(name), enc, e.Mode == syscall.S_IFDIR); !show {
				continue
			}
		}
		e.Name = name
		entries = append(entries, e)
	}
	return gofs.NewListDirStream(entries), 0
}

// decodeEntry maps a vault name to the name shown in the mount.
func (n *node) decodeEntry(dirfd int, stored string) (name string, enc bool, ok bool) {
	kind := crypt.Classify(stored)
	switch kind {
	case crypt.Plain:
		return stored, false, true
	case crypt.Encrypted, crypt.Long:
	default:
		// Directory IV, sidecars, vault config, temp files.
		return "", false, false
	}
	iv, errno := n.dirIV(false)
	if errno != 0 {
		n.hide(stored, "directory has no readable IV")
		return "", false, false
	}
	var sidecar []byte
	if kind == crypt.Long {
		var err error
		if sidecar, err = readSmallFile(dirfd, crypt.SidecarName(stored)); err != nil {
			n.hide(stored, "long-name sidecar: "+err.Error())
			return "", false, false
		}
	}
	name, err := n.v.names.Decrypt(iv, stored, sidecar)
	if err != nil {
		n.hide(stored, err.Error())
		return "", false, false
	}
	return name, true, true
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
