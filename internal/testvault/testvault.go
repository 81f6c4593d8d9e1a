// Package testvault creates and mounts vaults for tests: a vault in a temp
// dir with the cheapest KDF, mounted in-process, unmounted when the test
// ends. It lives outside fs and keys so that the daemon does not carry it.
package testvault

import (
	"bytes"
	"log"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"cryptpt/config"
	"cryptpt/crypt"
	"cryptpt/fs"
	"cryptpt/internal/fstest"
	"cryptpt/keys"
)

// Password is the password of the vaults New creates.
const Password = "test password"

// Vault is a vault created and mounted for a test.
type Vault struct {
	Backing string
	Mnt     string
	Master  [32]byte
	Mount   *fs.Mount
	Opts    fs.Options
	log     *syncBuffer
}

// Options tweak New; the zero value mounts an all-encrypted vault.
type Options struct {
	Plaintext  []string // policy patterns
	fs.Options          // Backing, Keys and Policy are filled in
}

// New creates a vault in a temp dir with the cheapest KDF (keys.MinKDF),
// mounts it, and unmounts it when the test ends.
func New(tb testing.TB, o Options) *Vault {
	tb.Helper()
	return NewIn(tb, tb.TempDir(), o)
}

// NewOn mounts the existing vault at backing, whose master key is master,
// and unmounts it when the test ends.
func NewOn(tb testing.TB, backing string, master [32]byte, o Options) *Vault {
	tb.Helper()
	fstest.RequireFUSE(tb)
	tv := &Vault{Backing: backing, Mnt: filepath.Join(tb.TempDir(), "mnt"), Master: master}
	if err := os.Mkdir(tv.Mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	tv.mount(tb, o)
	return tv
}

// NewIn is New with the vault and mountpoint in dir.
func NewIn(tb testing.TB, dir string, o Options) *Vault {
	tb.Helper()
	fstest.RequireFUSE(tb)
	tv := &Vault{Backing: filepath.Join(dir, "vault"), Mnt: filepath.Join(dir, "mnt")}
	for _, d := range []string{tv.Backing, tv.Mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	var err error
	if tv.Master, _, err = keys.Create(tv.Backing, []byte(Password), keys.MinKDF); err != nil {
		tb.Fatal(err)
	}
	if err = fs.InitLayout(tv.Backing); err != nil {
		tb.Fatal(err)
	}
	tv.mount(tb, o)
	return tv
}

// mount mounts tv's vault with o until the test ends.
func (tv *Vault) mount(tb testing.TB, o Options) {
	tb.Helper()
	policy, err := config.NewPolicy(o.Plaintext)
	if err != nil {
		tb.Fatal(err)
	}
	tv.Opts = o.Options
	tv.Opts.Backing = tv.Backing
	tv.Opts.Policy = policy
	tv.Opts.Keys, err = crypt.NewKeys(&tv.Master)
	if err != nil {
		tb.Fatal(err)
	}
	tv.log = &syncBuffer{}
	tv.Opts.Logger = log.New(tv.log, "", 0)
	tv.Remount(tb)
	tb.Cleanup(func() { tv.Unmount(tb) })
}

// Remount mounts the vault again (after Unmount) with the same options.
func (tv *Vault) Remount(tb testing.TB) {
	tb.Helper()
	m, err := fs.MountVault(tv.Mnt, tv.Opts)
	if err != nil {
		tb.Fatalf("mount: %v", err)
	}
	tv.Mount = m
}

// Unmount unmounts the vault if it is mounted.
func (tv *Vault) Unmount(tb testing.TB) {
	tb.Helper()
	if tv.Mount == nil {
		return
	}
	if err := tv.Mount.Unmount(); err != nil {
		tb.Errorf("unmount: %v", err)
	}
	tv.Mount.Wait()
	tv.Mount = nil
}

// Log returns what the daemon logged so far.
func (tv *Vault) Log() string { return tv.log.String() }

// Path returns the path of rel inside the mount.
func (tv *Vault) Path(rel string) string { return filepath.Join(tv.Mnt, rel) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
