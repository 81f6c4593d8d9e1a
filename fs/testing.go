package fs

import (
	"bytes"
	"log"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"cryptpt/config"
	"cryptpt/crypt"
	"cryptpt/keys"
)

// RequireFUSE skips the test when this machine cannot mount FUSE filesystems,
// except when CRYPTPT_REQUIRE_FUSE=1 (CI), where it fails instead: a skipped
// mount test would hide a broken product.
func RequireFUSE(tb testing.TB) {
	tb.Helper()
	why := ""
	if _, err := os.Stat("/dev/fuse"); err != nil {
		why = "no /dev/fuse"
	} else if os.Geteuid() != 0 {
		if _, err := os.Stat("/usr/bin/fusermount3"); err != nil {
			why = "not root and no fusermount3"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CRYPTPT_REQUIRE_FUSE") == "1" {
		tb.Fatalf("cannot mount FUSE (%s) but CRYPTPT_REQUIRE_FUSE=1", why)
	}
	tb.Skipf("cannot mount FUSE: %s", why)
}

// TestVault is a vault created and mounted for a test.
type TestVault struct {
	Backing string
	Mnt     string
	Master  [32]byte
	Mount   *Mount
	Opts    Options
	log     *syncBuffer
}

// TestOptions tweak NewTestVault; the zero value mounts an all-encrypted vault.
type TestOptions struct {
	Plaintext []string // policy patterns
	Options            // Backing, Keys and Policy are filled in
}

// NewTestVault creates a vault in a temp dir with a cheap KDF, mounts it, and
// unmounts it when the test ends.
func NewTestVault(tb testing.TB, o TestOptions) *TestVault {
	tb.Helper()
	return NewTestVaultIn(tb, tb.TempDir(), o)
}

// NewTestVaultOn mounts the existing vault at backing, whose master key is
// master, and unmounts it when the test ends.
func NewTestVaultOn(tb testing.TB, backing string, master [32]byte, o TestOptions) *TestVault {
	tb.Helper()
	RequireFUSE(tb)
	tv := &TestVault{Backing: backing, Mnt: filepath.Join(tb.TempDir(), "mnt"), Master: master}
	if err := os.Mkdir(tv.Mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	tv.mount(tb, o)
	return tv
}

// NewTestVaultIn is NewTestVault with the vault and mountpoint in dir.
func NewTestVaultIn(tb testing.TB, dir string, o TestOptions) *TestVault {
	tb.Helper()
	RequireFUSE(tb)
	tv := &TestVault{Backing: filepath.Join(dir, "vault"), Mnt: filepath.Join(dir, "mnt")}
	for _, d := range []string{tv.Backing, tv.Mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	tv.Master, _ = keys.NewTestVault(tb, tv.Backing, "test password")
	if err := InitLayout(tv.Backing); err != nil {
		tb.Fatal(err)
	}
	tv.mount(tb, o)
	return tv
}

// mount mounts tv's vault with o until the test ends.
func (tv *TestVault) mount(tb testing.TB, o TestOptions) {
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
func (tv *TestVault) Remount(tb testing.TB) {
	tb.Helper()
	m, err := MountVault(tv.Mnt, tv.Opts)
	if err != nil {
		tb.Fatalf("mount: %v", err)
	}
	tv.Mount = m
}

// Unmount unmounts the vault if it is mounted.
func (tv *TestVault) Unmount(tb testing.TB) {
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
func (tv *TestVault) Log() string { return tv.log.String() }

// Path returns the path of rel inside the mount.
func (tv *TestVault) Path(rel string) string { return filepath.Join(tv.Mnt, rel) }

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
