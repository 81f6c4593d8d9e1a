package fs

import (
	"context"
	"path"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The mount's control operations. They are not reachable through the
// filesystem: the daemon answers them on its control socket
// (internal/control), which only lets in the mount's owner and root.

// Stored modes, as ModeXattr and MigrateResult name them.
const (
	ModeEncrypted = "encrypted"
	ModePlaintext = "plaintext"
)

func modeName(enc bool) string {
	if enc {
		return ModeEncrypted
	}
	return ModePlaintext
}

// MigrateResult is what Mount.Migrate did to one entry.
type MigrateResult struct {
	Path      string `json:"path"`      // relative to the mount root, cleaned
	From      string `json:"from"`      // stored mode before: ModeEncrypted or ModePlaintext
	To        string `json:"to"`        // the mode the running policy gives the path
	Converted bool   `json:"converted"` // false if it was stored as the policy says already
}

// Migrate converts the entry at rel (relative to the mount root) to the mode
// the mount's running policy gives that path, and only to that one: the
// caller cannot choose the mode. The path is resolved through the node tree,
// one lookup per component, as the kernel would; entries the mount hides
// cannot be named. progress, if not nil, is called with the plaintext
// bytes copied so far while a file is converted. Errors are syscall.Errno values: EBUSY for a file open
// elsewhere, EMLINK for one with several hard links, EROFS on a read-only
// mount, EINVAL for the root or a path with "..".
func (m *Mount) Migrate(rel string, progress func(done int64)) (MigrateResult, error) {
	res := MigrateResult{Path: rel}
	clean := strings.TrimPrefix(path.Clean("/"+rel), "/")
	if clean == "" || clean != strings.TrimSuffix(strings.TrimPrefix(rel, "/"), "/") {
		return res, syscall.EINVAL
	}
	res.Path = clean
	ctx := context.Background()
	cur := m.root
	for _, name := range strings.Split(clean, "/") {
		ch := cur.GetChild(name)
		if ch == nil {
			var out fuse.EntryOut
			var errno syscall.Errno
			if ch, errno = cur.Lookup(ctx, name, &out); errno != 0 {
				return res, errno
			}
			// Into the tree, so the entry has a parent and a path; a
			// lookup racing with this one keeps its own inode.
			if !cur.AddChild(name, ch, false) {
				if ch = cur.GetChild(name); ch == nil {
					return res, syscall.ENOENT
				}
			}
		}
		cur = ch.Operations().(*node)
	}
	isDir := cur.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR
	wantEnc := !m.v.policy().Decide(clean, isDir).Plaintext
	res.From, res.To = modeName(cur.isEnc()), modeName(wantEnc)
	if errno := cur.migrate(ctx, res.To, progress); errno != 0 {
		return res, errno
	}
	res.Converted = res.From != res.To
	return res, nil
}
