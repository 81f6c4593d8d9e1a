package tests

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cfs "cryptpt/fs"
)

// A mixed tree: the vault holds no plaintext of encrypted files, and
// plaintext files byte-identical to what was written.
func TestMixedTreeCanary(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	secret := canary(t, 64)
	clip := canary(t, 100_000)
	must(t, os.MkdirAll(v.path("docs/deep/er"), 0o755))
	must(t, os.MkdirAll(v.path("media/x"), 0o755))
	must(t, os.WriteFile(v.path("docs/deep/er/secret.txt"), secret, 0o644))
	must(t, os.WriteFile(v.path("media/x/clip.bin"), clip, 0o644))
	// A symlink target cannot hold NUL: use the canary's hex form.
	target := hex.EncodeToString(secret[:16])
	must(t, os.Symlink(target, v.path("docs/link")))

	if hits := vaultContains(t, v.backing, secret[:16]); len(hits) != 0 {
		t.Errorf("plaintext of an encrypted file reached the vault: %v", hits)
	}
	if hits := vaultContains(t, v.backing, []byte(target)); len(hits) != 0 {
		t.Errorf("an encrypted symlink's target reached the vault: %v", hits)
	}
	if hits := vaultContains(t, v.backing, []byte("secret.txt")); len(hits) != 0 {
		t.Errorf("name of an encrypted file reached the vault: %v", hits)
	}
	got, err := os.ReadFile(filepath.Join(v.backing, "media/x/clip.bin"))
	must(t, err)
	if !bytes.Equal(got, clip) {
		t.Errorf("plaintext file differs in the vault")
	}
	if m := storedMode(t, v.path("docs/deep/er/secret.txt")); m != "encrypted" {
		t.Errorf("docs file stored %s", m)
	}
	if m := storedMode(t, v.path("media/x/clip.bin")); m != "plaintext" {
		t.Errorf("media file stored %s", m)
	}
	// The vault's own files never show through the mount.
	entries, err := os.ReadDir(v.mnt)
	must(t, err)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "~~") {
			t.Errorf("vault file %q visible in the mount", e.Name())
		}
	}
	if _, err := os.Stat(v.path("~~vault.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("vault config reachable through the mount: %v", err)
	}
}

// cpuSeconds returns a process's user+system CPU time in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	must(t, err)
	// Fields after the ")" of the command name: state is field 3.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// Passthrough is really used: reading a plaintext file that was written
// straight into the vault sends no READ to the daemon and costs it next to no
// CPU, while reading an encrypted file of the same size does both.
func TestPassthroughServesPlaintextReads(t *testing.T) {
	v := newCLIVault(t, "media/")
	const size = 128 << 20
	data := canary(t, size)
	must(t, os.Mkdir(filepath.Join(v.backing, "media"), 0o755))
	must(t, os.WriteFile(filepath.Join(v.backing, "media/big.bin"), data, 0o644))
	v.mount(t)
	must(t, os.WriteFile(v.path("big.enc"), data, 0o644))
	st := v.status(t)
	if !st.PassthroughActive {
		t.Fatalf("passthrough not active: %s", st.PassthroughReason)
	}
	// Drop the page cache so the encrypted read reaches the daemon.
	exec.Command("sync").Run()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)

	before := st
	cpu0 := cpuTicks(t, st.PID)
	got, err := os.ReadFile(v.path("media/big.bin"))
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Fatal("plaintext file read back differently")
	}
	cpuPlain := cpuTicks(t, st.PID) - cpu0
	mid := v.status(t)
	if n := mid.PlainReads - before.PlainReads; n != 0 {
		t.Errorf("daemon handled %d READ requests for a passthrough file", n)
	}
	if mid.PlainOpensPassthrough <= before.PlainOpensPassthrough {
		t.Errorf("plaintext open not counted as passthrough")
	}

	cpu1 := cpuTicks(t, st.PID)
	got, err = os.ReadFile(v.path("big.enc"))
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Fatal("encrypted file read back differently")
	}
	cpuEnc := cpuTicks(t, st.PID) - cpu1
	after := v.status(t)
	if after.EncryptedReads == mid.EncryptedReads {
		t.Errorf("encrypted read did not go through the daemon")
	}
	t.Logf("daemon CPU ticks for %d MiB: plaintext %d, encrypted %d", size>>20, cpuPlain, cpuEnc)
	if cpuPlain*4 > cpuEnc {
		t.Errorf("daemon CPU for the passthrough read (%d ticks) is not far below the encrypted read's (%d)", cpuPlain, cpuEnc)
	}
}

// With passthrough off, plaintext files are still plaintext, served by the
// daemon, and status says why.
func TestPassthroughOff(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t, "--no-passthrough")
	data := canary(t, 1<<20)
	must(t, os.Mkdir(v.path("media"), 0o755))
	must(t, os.WriteFile(v.path("media/a.bin"), data, 0o644))
	got, err := os.ReadFile(v.path("media/a.bin"))
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	st := v.status(t)
	if st.PassthroughActive || !strings.Contains(st.PassthroughReason, "--no-passthrough") {
		t.Errorf("status: active=%v reason=%q", st.PassthroughActive, st.PassthroughReason)
	}
	if st.PlainOpensDaemon == 0 || st.PlainWrites == 0 {
		t.Errorf("plaintext I/O not served by the daemon: %+v", st)
	}
	raw, err := os.ReadFile(filepath.Join(v.backing, "media/a.bin"))
	must(t, err)
	if !bytes.Equal(raw, data) {
		t.Error("plaintext file not stored as-is")
	}
	out := run(t, "status", v.mnt)
	if !strings.Contains(out, "passthrough:  off") {
		t.Errorf("status output does not say passthrough is off:\n%s", out)
	}
}

// Everything written reads back identical after unmount and mount.
func TestRemountRoundTrip(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	files := map[string][]byte{
		"empty":                            {},
		"one":                              []byte("x"),
		"block":                            canary(t, 4096),
		"block+1":                          canary(t, 4097),
		"docs/big":                         canary(t, 3<<20+17),
		"media/big":                        canary(t, 1<<20+5),
		"media/private/n":                  canary(t, 10),
		strings.Repeat("L", 255):           []byte("long name"),
		"docs/" + strings.Repeat("é", 120): []byte("long utf-8 name"),
	}
	for name, data := range files {
		must(t, os.MkdirAll(filepath.Dir(v.path(name)), 0o755))
		must(t, os.WriteFile(v.path(name), data, 0o640))
	}
	must(t, os.Symlink("../one", v.path("docs/link")))
	must(t, os.Symlink("plain-target", v.path("media/link")))
	must(t, syscall.Setxattr(v.path("docs/big"), "user.note", []byte("secret xattr value"), 0))
	must(t, syscall.Mkfifo(v.path("fifo"), 0o600))
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, os.Chtimes(v.path("one"), mtime, mtime))
	must(t, os.Chmod(v.path("block"), 0o600))

	v.unmount(t)
	if hits := vaultContains(t, v.backing, []byte("secret xattr value")); len(hits) != 0 {
		t.Errorf("xattr value stored in the clear: %v", hits)
	}
	v.mount(t)
	for name, data := range files {
		got, err := os.ReadFile(v.path(name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: read back %d bytes, wrote %d", name, len(got), len(data))
		}
	}
	for link, want := range map[string]string{"docs/link": "../one", "media/link": "plain-target"} {
		if got, err := os.Readlink(v.path(link)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(v.path("docs/big"), "user.note", buf)
	if err != nil || string(buf[:n]) != "secret xattr value" {
		t.Errorf("xattr after remount: %q, %v", buf[:n], err)
	}
	st, err := os.Lstat(v.path("fifo"))
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo after remount: %v %v", st, err)
	}
	if st, err := os.Stat(v.path("one")); err != nil || !st.ModTime().Equal(mtime) {
		t.Errorf("mtime after remount: %v", err)
	}
	if st, err := os.Stat(v.path("block")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode after remount: %v %v", st.Mode(), err)
	}
}

// Renames follow the asymmetric rule: plaintext into an encrypted area is
// EXDEV (and mv then copies it encrypted); encrypted into a plaintext area
// stays encrypted and counts as drift.
func TestRenameAcrossModes(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	must(t, os.MkdirAll(v.path("media"), 0o755))
	must(t, os.MkdirAll(v.path("docs"), 0o755))
	secret := canary(t, 4000)
	must(t, os.WriteFile(v.path("media/clip"), secret, 0o644))

	err := os.Rename(v.path("media/clip"), v.path("docs/clip"))
	if !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename plaintext into encrypted area: %v, want EXDEV", err)
	}
	if out, err := exec.Command("mv", v.path("media/clip"), v.path("docs/clip")).CombinedOutput(); err != nil {
		t.Fatalf("mv: %v\n%s", err, out)
	}
	if m := storedMode(t, v.path("docs/clip")); m != "encrypted" {
		t.Errorf("mv'd file stored %s", m)
	}
	if hits := vaultContains(t, v.backing, secret[:32]); len(hits) != 0 {
		t.Errorf("plaintext left in the vault after mv: %v", hits)
	}
	got, err := os.ReadFile(v.path("docs/clip"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Errorf("mv'd file reads back wrong: %v", err)
	}

	// A plaintext directory cannot move into an encrypted area either.
	must(t, os.Mkdir(v.path("media/album"), 0o755))
	if err := os.Rename(v.path("media/album"), v.path("docs/album")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("rename plaintext dir into encrypted area: %v, want EXDEV", err)
	}

	// Encrypted into plaintext: allowed, stays encrypted, counted as drift.
	must(t, os.Rename(v.path("docs/clip"), v.path("media/clip2")))
	if m := storedMode(t, v.path("media/clip2")); m != "encrypted" {
		t.Errorf("encrypted file moved into media is stored %s", m)
	}
	if hits := vaultContains(t, v.backing, secret[:32]); len(hits) != 0 {
		t.Errorf("plaintext reached the vault after a rename: %v", hits)
	}
	st := v.status(t)
	if !contains(st.Drift, "media/clip2") {
		t.Errorf("drift %v does not list media/clip2", st.Drift)
	}
	// Hard links follow the same rule.
	must(t, os.WriteFile(v.path("media/p"), []byte("p"), 0o644))
	if err := os.Link(v.path("media/p"), v.path("docs/p")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("link plaintext into encrypted area: %v, want EXDEV", err)
	}
	must(t, os.Link(v.path("media/clip2"), v.path("docs/clip3")))
	if got, err := os.ReadFile(v.path("docs/clip3")); err != nil || !bytes.Equal(got, secret) {
		t.Errorf("hard link reads back wrong: %v", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Atomic-save patterns of real programs work in both areas.
func TestAtomicSavePatterns(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	for _, area := range []string{"docs", "media"} {
		t.Run(area, func(t *testing.T) {
			dir := v.path(area)
			must(t, os.MkdirAll(dir, 0o755))
			target := filepath.Join(dir, "note.txt")
			must(t, os.WriteFile(target, []byte("old"), 0o644))
			// Editor: write a temp file, fsync, rename over the target.
			tmp := filepath.Join(dir, ".note.txt.swp123")
			f, err := os.Create(tmp)
			must(t, err)
			_, err = f.Write([]byte("new content"))
			must(t, err)
			must(t, f.Sync())
			must(t, f.Close())
			must(t, os.Rename(tmp, target))
			if got, _ := os.ReadFile(target); string(got) != "new content" {
				t.Errorf("after editor save: %q", got)
			}
			// Downloader: x.part -> x.
			part := filepath.Join(dir, "x.iso.part")
			data := canary(t, 200_000)
			must(t, os.WriteFile(part, data, 0o644))
			must(t, os.Rename(part, filepath.Join(dir, "x.iso")))
			if got, _ := os.ReadFile(filepath.Join(dir, "x.iso")); !bytes.Equal(got, data) {
				t.Errorf("after download rename: wrong content")
			}
			// rsync into the mount (temp files + renames).
			src := t.TempDir()
			must(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
			must(t, os.WriteFile(filepath.Join(src, "sub/a"), canary(t, 5000), 0o644))
			must(t, os.WriteFile(filepath.Join(src, "b"), []byte("bee"), 0o644))
			out, err := exec.Command("rsync", "-a", src+"/", filepath.Join(dir, "rs")+"/").CombinedOutput()
			if err != nil {
				t.Fatalf("rsync: %v\n%s", err, out)
			}
			out, err = exec.Command("diff", "-r", src, filepath.Join(dir, "rs")).CombinedOutput()
			if err != nil {
				t.Errorf("rsync copy differs: %v\n%s", err, out)
			}
		})
	}
	if m := storedMode(t, v.path("media/note.txt")); m != "plaintext" {
		t.Errorf("media/note.txt stored %s after the editor's save", m)
	}
}

// A daemon without CAP_SYS_ADMIN (an ordinary user mounting through
// fusermount3) cannot register backing files: plaintext I/O falls back to
// the daemon and status explains how to get passthrough.
func TestPassthroughWithoutCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv")
	}
	// Desktops ship /dev/fuse as 0666 so users can mount through
	// fusermount3; containers often make it 0600. Open it up for the test.
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		must(t, os.Chmod("/dev/fuse", 0o666))
		t.Cleanup(func() { os.Chmod("/dev/fuse", st.Mode().Perm()) })
	}
	v := newCLIVault(t, "media/")
	// Hand everything to "nobody" and mount as nobody.
	for _, p := range []string{v.dir, v.backing, v.mnt, v.pwfile, v.config} {
		must(t, os.Chown(p, 65534, 65534))
	}
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	filepath.Walk(v.backing, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
	asNobody := func(args ...string) ([]byte, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", binary}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+v.dir)
		return cmd.CombinedOutput()
	}
	out, err := asNobody("mount", "--config", v.config, "--passfile", v.pwfile, v.backing, v.mnt)
	if err != nil {
		t.Fatalf("mount as nobody: %v\n%s", err, out)
	}
	t.Cleanup(func() { asNobody("unmount", v.mnt) })
	out, err = asNobody("status", v.mnt)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CAP_SYS_ADMIN") || !strings.Contains(string(out), "passthrough:  off") {
		t.Errorf("status does not explain the missing capability:\n%s", out)
	}
	if !strings.Contains(string(out), "cryptpt@nobody.service") || strings.Contains(string(out), "contrib/ (") || !strings.Contains(string(out), "to every user who can run that binary") {
		t.Errorf("status gives the wrong passthrough advice:\n%s", out)
	}
	out, err = asNobody("unmount", v.mnt)
	if err != nil {
		t.Errorf("unmount as nobody: %v\n%s", err, out)
	}
	if m, _ := cfs.FindMount(v.mnt); m != "" {
		t.Errorf("still mounted after unmount")
	}
}
