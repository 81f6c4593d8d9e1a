package fs

import (
	"context"
	"fmt"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// EncryptedHandleForTest returns a zero encrypted handle, for type checks.
func EncryptedHandleForTest() gofs.FileHandle { return &encFile{} }

// PassthroughHandleForTest returns a zero passthrough handle, for type checks.
func PassthroughHandleForTest() *passthroughFile { return &passthroughFile{} }

// SettleWatcherForTest waits until the mount's watcher has acted on every
// change made to the vault so far.
func (m *Mount) SettleWatcherForTest() { m.v.watch.settle() }

// testNode returns the node of rel in m, looking it up as Mount.Migrate
// does.
func testNode(m *Mount, rel string) (*node, error) {
	cur := m.root
	for _, name := range strings.Split(rel, "/") {
		ch := cur.GetChild(name)
		if ch == nil {
			var out fuse.EntryOut
			var errno syscall.Errno
			if ch, errno = cur.Lookup(context.Background(), name, &out); errno != 0 {
				return nil, fmt.Errorf("lookup %s: %w", name, errno)
			}
			if !cur.AddChild(name, ch, false) {
				ch = cur.GetChild(name)
			}
		}
		cur = ch.Operations().(*node)
	}
	return cur, nil
}

// ConvertRacedForTest converts the plaintext file rel to encrypted as
// migrate does, but as a race between migrate's stat and its open leaves
// it: stat runs first, then swap, given the stored names of the file and
// of its converted copy in the parent's backing directory, then the
// conversion with the stat taken before the swap. It returns the
// conversion's errno, or an error if the steps before it failed.
func (m *Mount) ConvertRacedForTest(rel string, swap func(cur, dst string) error) (syscall.Errno, error) {
	n, err := testNode(m, rel)
	if err != nil {
		return 0, err
	}
	p, name, errno := n.parent()
	if errno != 0 {
		return 0, errno
	}
	pfd, release, errno := p.dirfd()
	if errno != 0 {
		return 0, errno
	}
	defer release()
	cur, errno := p.storedName(name, false, false)
	if errno != 0 {
		return 0, errno
	}
	dst, _, errno := p.storedNameSidecar(name, true, true)
	if errno != 0 {
		return 0, errno
	}
	var st syscall.Stat_t
	if err := fstatat(pfd, cur, &st); err != nil {
		return 0, err
	}
	if err := swap(cur, dst); err != nil {
		return 0, err
	}
	p.treeMu.RLock()
	defer p.treeMu.RUnlock()
	return n.convertFile(pfd, cur, dst, &st, true, nil), nil
}

// StoredNameForTest returns the vault name of the encrypted entry name in
// the root directory.
func (m *Mount) StoredNameForTest(name string) (string, error) {
	s, errno := m.root.storedName(name, true, false)
	if errno != 0 {
		return "", errno
	}
	return s, nil
}

// TruncateVaultForTest truncates the vault entry of rel as a SETATTR by
// name does, below the kernel.
func (m *Mount) TruncateVaultForTest(rel string, size uint64) error {
	n, err := testNode(m, rel)
	if err != nil {
		return err
	}
	in := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_SIZE, Size: size}}
	if errno := n.setattrVault(context.Background(), nil, in); errno != 0 {
		return errno
	}
	return nil
}
