package fs

import gofs "github.com/hanwen/go-fuse/v2/fs"

// EncryptedHandleForTest returns a zero encrypted handle, for type checks.
func EncryptedHandleForTest() gofs.FileHandle { return &encFile{} }

// PassthroughHandleForTest returns a zero passthrough handle, for type checks.
func PassthroughHandleForTest() *passthroughFile { return &passthroughFile{} }

// SettleWatcherForTest waits until the mount's watcher has acted on every
// change made to the vault so far.
func (m *Mount) SettleWatcherForTest() { m.v.watch.settle() }
