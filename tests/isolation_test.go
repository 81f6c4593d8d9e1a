package tests

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"cryptpt/crypt"
	cfs "cryptpt/fs"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// The isolation tests check that the mount never shows the vault's own
// files, never follows links planted in the vault, never gives an encrypted
// file a passthrough fd, and never serves a forged encrypted entry as
// plaintext.

// storedNameIn returns the vault name of the encrypted entry name in vault
// directory dir (which must have a directory IV).
func storedNameIn(t *testing.T, tv *testvault.Vault, dir, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, crypt.DirIVName))
	must(t, err)
	iv, err := crypt.ParseDirIV(raw)
	must(t, err)
	k, err := crypt.NewKeys(&tv.Master)
	must(t, err)
	stored, _, err := k.Names().Encrypt(iv, name)
	must(t, err)
	return stored
}

// noCanaries fails the test if any of the plaintexts is found in the vault.
func noCanaries(t *testing.T, backing string, plain ...[]byte) {
	t.Helper()
	for _, p := range plain {
		if hits := vaultContains(t, backing, p[:min(len(p), 32)]); len(hits) != 0 {
			t.Errorf("plaintext of an encrypted file reached the vault: %v", hits)
		}
	}
}

func listNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestVaultConfigNeverVisible(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"pub/"}})
	secret := canary(t, 100)
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	must(t, os.Mkdir(tv.Path("pub"), 0o755))
	must(t, os.WriteFile(tv.Path("d/f"), secret, 0o644))
	must(t, os.WriteFile(tv.Path("pub/p"), []byte("public"), 0o644))
	configPath := filepath.Join(tv.Backing, crypt.VaultConfigName)
	config, err := os.ReadFile(configPath)
	must(t, err)

	for _, dir := range []string{tv.Mnt, tv.Path("d"), tv.Path("pub")} {
		for _, n := range listNames(t, dir) {
			if strings.HasPrefix(n, crypt.ReservedPrefix) {
				t.Errorf("vault file %q listed in %s", n, dir)
			}
		}
	}
	for _, name := range []string{crypt.VaultConfigName, crypt.DirIVName, "d/" + crypt.DirIVName, "pub/" + crypt.DirIVName} {
		var st unix.Stat_t
		if err := unix.Lstat(tv.Path(name), &st); !errors.Is(err, unix.ENOENT) {
			t.Errorf("lstat %s through the mount: %v, want ENOENT", name, err)
		}
		if _, err := os.ReadFile(tv.Path(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("open %s through the mount: %v, want ENOENT", name, err)
		}
	}

	// Where the policy encrypts, "~~vault.toml" is an ordinary name: the
	// user's file gets an encrypted vault name and never meets the config.
	mine := []byte("my own file called ~~vault.toml")
	must(t, os.WriteFile(tv.Path(crypt.VaultConfigName), mine, 0o644))
	if got, err := os.ReadFile(tv.Path(crypt.VaultConfigName)); err != nil || !bytes.Equal(got, mine) {
		t.Errorf("user file named %s: %q, %v", crypt.VaultConfigName, got, err)
	}
	must(t, os.Rename(tv.Path(crypt.VaultConfigName), tv.Path("d/"+crypt.VaultConfigName)))
	must(t, os.Link(tv.Path("d/f"), tv.Path(crypt.VaultConfigName)))
	if got, err := os.ReadFile(tv.Path(crypt.VaultConfigName)); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("link named %s: %v", crypt.VaultConfigName, err)
	}
	// Where entries are plaintext, names in cryptpt's namespace are refused.
	for op, err := range map[string]error{
		"create":  os.WriteFile(tv.Path("pub/"+crypt.VaultConfigName), []byte("x"), 0o644),
		"mkdir":   os.Mkdir(tv.Path("pub/"+crypt.DirIVName), 0o755),
		"symlink": os.Symlink("x", tv.Path("pub/~~cFake")),
		"rename":  os.Rename(tv.Path("pub/p"), tv.Path("pub/"+crypt.VaultConfigName)),
	} {
		if err == nil {
			t.Errorf("%s of a ~~ name in a plaintext directory succeeded", op)
		}
	}
	for _, n := range listNames(t, filepath.Join(tv.Backing, "pub")) {
		if n != "p" && n != crypt.DirIVName {
			t.Errorf("vault pub/ holds %q", n)
		}
	}
	after, err := os.ReadFile(configPath)
	must(t, err)
	if !bytes.Equal(config, after) {
		t.Error("the vault config changed")
	}
	for _, name := range []string{crypt.VaultConfigName, "d/" + crypt.VaultConfigName} {
		if got, _ := os.ReadFile(tv.Path(name)); bytes.Contains(got, config[:min(len(config), 40)]) {
			t.Errorf("%s shows the vault config", name)
		}
	}
	noCanaries(t, tv.Backing, secret, mine)
}

// Symlinks planted in the vault are shown as symlinks and never followed by
// the daemon. The vault is mounted at a deeper path than the vault itself,
// so a relative link resolves to different places in the vault and in the
// mount: a daemon that followed a link inside the vault would reach
// directories the mount cannot.
func TestPlantedSymlinks(t *testing.T) {
	// Names in the log, to check that each planted link is logged.
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"media/", "pub/"}, Options: cfs.Options{LogNames: true}})
	secret := canary(t, 5000)
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	must(t, os.WriteFile(tv.Path("d/f"), secret, 0o644))
	for _, d := range []string{"media", "pub"} {
		must(t, os.Mkdir(tv.Path(d), 0o755))
		must(t, os.WriteFile(tv.Path(d+"/m"), []byte("media"), 0o644))
	}
	storedD := storedNameIn(t, tv, tv.Backing, "d")
	storedEvil := storedNameIn(t, tv, tv.Backing, "evil")
	tv.Unmount(t)

	// Outside the vault, next to it.
	top := filepath.Dir(tv.Backing)
	outFile := filepath.Join(top, "outside-file")
	outside := canary(t, 64)
	must(t, os.WriteFile(outFile, outside, 0o644))
	movedD := filepath.Join(top, "moved-d")
	movedMedia := filepath.Join(top, "moved-media")
	plant := func(target, link string) {
		t.Helper()
		must(t, os.Symlink(target, filepath.Join(tv.Backing, link)))
	}
	// A plaintext-form name at an encrypted path, to a host file.
	plant("/etc/passwd", "passwd")
	// An encrypted-form name with a raw (unsealed) target.
	plant(outFile, storedEvil)
	// A plaintext link whose relative target leaves the vault.
	plant("../../outside-file", "pub/escape")
	// Directories replaced by links to where they were moved.
	must(t, os.Rename(filepath.Join(tv.Backing, storedD), movedD))
	plant(movedD, storedD)
	must(t, os.Rename(filepath.Join(tv.Backing, "media"), movedMedia))
	plant("../moved-media", "media")

	outsideBefore := map[string][]string{}
	for _, dir := range []string{movedD, movedMedia} {
		outsideBefore[dir] = listNames(t, dir)
	}

	tv.Mnt = filepath.Join(t.TempDir(), "a", "b", "mnt")
	must(t, os.MkdirAll(tv.Mnt, 0o755))
	tv.Remount(t)

	for _, name := range []string{"passwd", "evil", "pub/escape", "d", "media"} {
		var st unix.Stat_t
		must(t, unix.Lstat(tv.Path(name), &st))
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("%s: mode %o, want a symlink", name, st.Mode)
		}
		fd, err := unix.Open(tv.Path(name), unix.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err == nil {
			unix.Close(fd)
		}
		if err != unix.ELOOP {
			t.Errorf("%s: open O_NOFOLLOW: %v, want ELOOP", name, err)
		}
	}
	// Plaintext links in a plaintext area read back as planted; the
	// kernel, not the daemon, resolves them, relative to the mount.
	if got, err := os.Readlink(tv.Path("pub/escape")); err != nil || got != "../../outside-file" {
		t.Errorf("readlink pub/escape = %q, %v; want %q", got, err, "../../outside-file")
	}
	// Plaintext-form links where the policy encrypts are quarantined:
	// never followed (readlink EIO), logged.
	before := len(tv.Log())
	for _, name := range []string{"passwd", "media"} {
		if got, err := os.Readlink(tv.Path(name)); !errors.Is(err, syscall.EIO) {
			t.Errorf("readlink %s = %q, %v; want EIO", name, got, err)
		}
	}
	if logged := tv.Log()[before:]; !strings.Contains(logged, "/passwd") || !strings.Contains(logged, "/media") {
		t.Errorf("no log line for the quarantined links:\n%s", logged)
	}
	// Encrypted-form links with unsealed targets fail authentication.
	before = len(tv.Log())
	for _, name := range []string{"evil", "d"} {
		if _, err := os.Readlink(tv.Path(name)); !errors.Is(err, syscall.EIO) {
			t.Errorf("readlink %s: %v, want EIO", name, err)
		}
		if got, err := os.ReadFile(tv.Path(name)); err == nil || bytes.Contains(got, outside) {
			t.Errorf("read through %s: %v (%d bytes)", name, err, len(got))
		}
	}
	logged := tv.Log()[before:]
	for _, stored := range []string{storedEvil, storedD} {
		if !strings.Contains(logged, stored) {
			t.Errorf("no log line names %s:\n%s", stored, logged)
		}
	}
	if got, err := os.ReadFile(tv.Path("pub/escape")); err == nil {
		t.Errorf("pub/escape resolved through the mount to %d bytes", len(got))
	}
	// Writes through the replaced directories create nothing outside.
	for _, name := range []string{"d/new", "media/new"} {
		if err := os.WriteFile(tv.Path(name), []byte("new"), 0o644); err == nil {
			t.Errorf("write %s succeeded", name)
		}
	}
	for _, dir := range []string{movedD, movedMedia} {
		if names := listNames(t, dir); !slices.Equal(names, outsideBefore[dir]) {
			t.Errorf("entries changed outside the vault in %s: %v -> %v", dir, outsideBefore[dir], names)
		}
	}
	got, err := os.ReadFile(outFile)
	must(t, err)
	if !bytes.Equal(got, outside) {
		t.Error("the file outside the vault changed")
	}
	// The daemon keeps working.
	must(t, os.WriteFile(tv.Path("ok"), secret, 0o644))
	if got, err := os.ReadFile(tv.Path("ok")); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("new file: %v", err)
	}
	noCanaries(t, tv.Backing, secret)
}

// An encrypted file is always served by the daemon, never through a
// passthrough backing fd, even in a mount where passthrough is active.
func TestEncryptedNeverPassthrough(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	secret := canary(t, 3*crypt.BlockSize)
	clip := canary(t, 3*crypt.BlockSize)
	must(t, os.WriteFile(v.path("secret"), secret, 0o644))
	must(t, os.Mkdir(v.path("media"), 0o755))
	must(t, os.WriteFile(v.path("media/clip"), clip, 0o644))

	st0 := v.status(t)
	got, err := os.ReadFile(v.path("secret"))
	must(t, err)
	if !bytes.Equal(got, secret) {
		t.Fatal("encrypted file reads back different bytes")
	}
	st1 := v.status(t)
	if st1.EncryptedOpens <= st0.EncryptedOpens || st1.EncryptedReads <= st0.EncryptedReads {
		t.Errorf("reading the encrypted file sent no OPEN/READ to the daemon: %+v -> %+v", st0, st1)
	}
	if st1.PlainOpensPassthrough != st0.PlainOpensPassthrough || st1.PlainOpensDaemon != st0.PlainOpensDaemon {
		t.Errorf("reading the encrypted file counted as a plaintext open: %+v -> %+v", st0, st1)
	}
	// The plaintext file next to it does get passthrough, so the check
	// above is not vacuous.
	got, err = os.ReadFile(v.path("media/clip"))
	must(t, err)
	if !bytes.Equal(got, clip) {
		t.Fatal("plaintext file reads back different bytes")
	}
	st2 := v.status(t)
	if st2.PassthroughActive && st2.PlainOpensPassthrough != st1.PlainOpensPassthrough+1 {
		t.Errorf("plaintext open did not use passthrough: %+v", st2)
	}
	if st2.EncryptedReads != st1.EncryptedReads {
		t.Errorf("plaintext read counted as encrypted: %+v", st2)
	}
	t.Logf("passthrough active: %v (%s)", st2.PassthroughActive, st2.PassthroughReason)
	noCanaries(t, v.backing, secret)
}

// A plaintext file written straight into the vault where the policy
// encrypts is flagged; on untrusted storage it is hidden with a log line.
func TestInjectedPlaintext(t *testing.T) {
	v := newCLIVault(t)
	planted := []byte("planted by someone who can write the vault\n")
	must(t, os.WriteFile(filepath.Join(v.backing, "planted.txt"), planted, 0o644))
	v.mount(t)
	secret := canary(t, 100)
	must(t, os.WriteFile(v.path("real"), secret, 0o644))
	if !slices.Contains(listNames(t, v.mnt), "planted.txt") {
		t.Error("planted.txt not shown on trusted storage")
	}
	if st := v.status(t); !slices.Contains(st.Injected, "planted.txt") {
		t.Errorf("status does not flag planted.txt as injected: %v", st.Injected)
	}
	if m := storedMode(t, v.path("planted.txt")); m != "plaintext" {
		t.Errorf("planted.txt stored mode %s", m)
	}
	v.unmount(t)

	v.mount(t, "--untrusted-storage")
	if slices.Contains(listNames(t, v.mnt), "planted.txt") {
		t.Error("planted.txt listed on untrusted storage")
	}
	if _, err := os.ReadFile(v.path("planted.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("open planted.txt on untrusted storage: %v, want ENOENT", err)
	}
	if got, err := os.ReadFile(v.path("real")); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("encrypted file on untrusted storage: %v", err)
	}
	if st := v.status(t); st.HiddenEntries == 0 {
		t.Errorf("status counts no hidden entries: %+v", st)
	}
	logged, err := os.ReadFile(v.log)
	must(t, err)
	if !bytes.Contains(logged, []byte("hidden: a plaintext entry")) {
		t.Errorf("no log line tells of planted.txt:\n%s", logged)
	}
	noCanaries(t, v.backing, secret)
}

// An encrypted-form entry whose content has no valid header is EIO, never
// plaintext.
func TestEncryptedNameWithoutHeader(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	fake := []byte("this is plaintext pretending to be an encrypted file, long enough to span the header....")
	cases := map[string]func(old []byte) []byte{
		"zeroed-header": func(old []byte) []byte {
			clear(old[:crypt.HeaderSize])
			return old
		},
		"plaintext-header": func(old []byte) []byte {
			copy(old, fake[:crypt.HeaderSize])
			return old
		},
		"all-plaintext":   func([]byte) []byte { return fake },
		"short":           func([]byte) []byte { return fake[:5] },
		"header-only-bad": func([]byte) []byte { return fake[:crypt.HeaderSize] },
	}
	stored := map[string]string{}
	var secrets [][]byte
	for name := range cases {
		s := canary(t, 6000)
		secrets = append(secrets, s)
		must(t, os.WriteFile(tv.Path(name), s, 0o644))
		stored[name] = storedNameIn(t, tv, tv.Backing, name)
	}
	must(t, os.WriteFile(tv.Path("control"), fake, 0o644))
	tv.Unmount(t)
	for name, mangle := range cases {
		p := filepath.Join(tv.Backing, stored[name])
		old, err := os.ReadFile(p)
		must(t, err)
		must(t, os.WriteFile(p, mangle(old), 0o644))
	}
	tv.Remount(t)
	for name := range cases {
		before := len(tv.Log())
		got, err := os.ReadFile(tv.Path(name))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: read gave %d bytes, err %v; want EIO", name, len(got), err)
		}
		if bytes.Contains(got, fake[:10]) {
			t.Errorf("%s: served the planted plaintext", name)
		}
		if !strings.Contains(tv.Log()[before:], stored[name]) {
			t.Errorf("%s: no log line names it:\n%s", name, tv.Log()[before:])
		}
	}
	if got, err := os.ReadFile(tv.Path("control")); err != nil || !bytes.Equal(got, fake) {
		t.Errorf("control: %v", err)
	}
	noCanaries(t, tv.Backing, secrets...)
}

// Files a sync tool drops into the vault never crash the daemon: names in
// cryptpt's namespace that do not decrypt are skipped with a log line, a
// conflict copy of an encrypted entry is shown under its decrypted name
// (conflict_test.go), Syncthing's own files are hidden quietly, other names
// are shown as plaintext entries.
func TestForeignSyncFiles(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	secret := canary(t, 10000)
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	must(t, os.WriteFile(tv.Path("a"), secret, 0o644))
	must(t, os.WriteFile(tv.Path("d/b"), secret, 0o644))
	storedA := storedNameIn(t, tv, tv.Backing, "a")
	storedD := storedNameIn(t, tv, tv.Backing, "d")
	tv.Unmount(t)

	ciphertext, err := os.ReadFile(filepath.Join(tv.Backing, storedA))
	must(t, err)
	conflictCopy := storedA + ".sync-conflict-20240101-120000-ABCDEFG"
	skipped := []string{
		"~~cXYZ.sync-conflict-20240102-150405-ABCDEF2",
		"~~cXYZ.sync-conflict-20240101",
		storedA + "~",
		"~~c!!not-base64!!",
		"~~lAAAAorphanlongnamewithoutsidecarAAAAAAAAAAAA",
		"~~nAAAAorphansidecarAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"~~tleftover-temp-file",
		"~~zz-unknown-kind",
		"~~",
	}
	shown := []string{"x.part", "desktop.ini"}
	quiet := []string{".stfolder", ".stignore", ".syncthing.a.tmp"}
	for _, n := range append(skipped, conflictCopy) {
		must(t, os.WriteFile(filepath.Join(tv.Backing, n), ciphertext, 0o644))
	}
	must(t, os.WriteFile(filepath.Join(tv.Backing, storedD, "~~c.conflict"), ciphertext, 0o644))
	for _, n := range append(shown, quiet...) {
		if n == ".stfolder" {
			must(t, os.Mkdir(filepath.Join(tv.Backing, n), 0o755))
			continue
		}
		must(t, os.WriteFile(filepath.Join(tv.Backing, n), []byte("foreign"), 0o644))
	}
	tv.Remount(t)

	names := listNames(t, tv.Mnt)
	for _, n := range shown {
		if !slices.Contains(names, n) {
			t.Errorf("foreign plaintext entry %s not shown: %v", n, names)
		}
	}
	for _, n := range quiet {
		if slices.Contains(names, n) || strings.Contains(tv.Log(), n) {
			t.Errorf("Syncthing's %s shown or logged: %v\n%s", n, names, tv.Log())
		}
	}
	if got, err := os.ReadFile(tv.Path("a.sync-conflict-20240101-120000-ABCDEFG")); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("conflict copy of a: %v", err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, crypt.ReservedPrefix) {
			t.Errorf("vault-owned name %q shown", n)
		}
		// Every listed entry can be looked at without harm.
		var st unix.Stat_t
		must(t, unix.Lstat(tv.Path(n), &st))
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			if _, err := os.ReadFile(tv.Path(n)); err != nil {
				t.Errorf("read %s: %v", n, err)
			}
		}
	}
	if sub := listNames(t, tv.Path("d")); !slices.Equal(sub, []string{"b"}) {
		t.Errorf("d lists %v, want [b]", sub)
	}
	logged := tv.Log()
	for _, n := range []string{skipped[0], skipped[1], skipped[3], skipped[4]} {
		if !strings.Contains(logged, n) {
			t.Errorf("no log line for skipped %s", n)
		}
	}
	for _, n := range []string{"a", "d/b"} {
		if got, err := os.ReadFile(tv.Path(n)); err != nil || !bytes.Equal(got, secret) {
			t.Errorf("%s next to foreign files: %v", n, err)
		}
	}
	must(t, os.WriteFile(tv.Path("new"), secret, 0o644))
	noCanaries(t, tv.Backing, secret)
}

// An encrypted directory moved out of the vault and replaced by a symlink
// while mounted: until the kernel forgets the directory, the daemon may keep
// writing into it where it now is (it holds the directory open), but only
// ciphertext and encrypted names; once forgotten, the symlink is not
// followed.
func TestDirectoryMovedOutWhileMounted(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	must(t, os.WriteFile(tv.Path("d/f"), []byte("x"), 0o644))
	stored := storedNameIn(t, tv, tv.Backing, "d")
	moved := filepath.Join(filepath.Dir(tv.Backing), "moved")
	must(t, os.Rename(filepath.Join(tv.Backing, stored), moved))
	must(t, os.Symlink(moved, filepath.Join(tv.Backing, stored)))

	early := canary(t, 100)
	earlyErr := os.WriteFile(tv.Path("d/early-name"), early, 0o644)
	t.Logf("write before the kernel forgets d: %v", earlyErr)
	dropCaches(t)
	late := canary(t, 100)
	// Whether the kernel has forgotten d by now is up to it; either way
	// only ciphertext may land anywhere.
	t.Logf("write after dropping caches: %v", os.WriteFile(tv.Path("d/late"), late, 0o644))
	if hits := vaultContains(t, moved, []byte("early-name")); len(hits) != 0 {
		t.Errorf("plaintext name in the moved directory: %v", hits)
	}
	noCanaries(t, moved, early, late)
	noCanaries(t, tv.Backing, early, late)
}
