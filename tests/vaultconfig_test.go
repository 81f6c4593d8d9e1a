package tests

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptpt/crypt"
	"cryptpt/keys"

	"github.com/BurntSushi/toml"
)

// The vault config tests replay, on real files and through the cryptpt
// command, what someone who can write ~~vault.toml could do before issue
// 10's fixes: init wrote format 1, whose config binds nothing, and a reset
// with the recovery key kept whatever KDF parameters the config held.

// vaultConfig decodes the vault config of backing.
func vaultConfig(t *testing.T, backing string) map[string]any {
	t.Helper()
	var m map[string]any
	if _, err := toml.DecodeFile(filepath.Join(backing, crypt.VaultConfigName), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// writeVaultConfig replaces the vault config of backing with m, as an
// attacker who can write the vault would.
func writeVaultConfig(t *testing.T, backing string, m map[string]any) {
	t.Helper()
	var b bytes.Buffer
	must(t, toml.NewEncoder(&b).Encode(m))
	must(t, os.WriteFile(filepath.Join(backing, crypt.VaultConfigName), b.Bytes(), 0o600))
}

// table returns the TOML table name of m.
func table(t *testing.T, m map[string]any, name string) map[string]any {
	t.Helper()
	tb, ok := m[name].(map[string]any)
	if !ok {
		t.Fatalf("vault config has no [%s] table: %v", name, m)
	}
	return tb
}

// flipB64 returns the base64 value s with one bit of its first byte flipped.
func flipB64(t *testing.T, s any) string {
	t.Helper()
	str, _ := s.(string)
	b, err := base64.StdEncoding.DecodeString(str)
	if err != nil || len(b) == 0 {
		t.Fatalf("not a base64 value: %v", s)
	}
	b[0] ^= 1
	return base64.StdEncoding.EncodeToString(b)
}

// initVault runs "cryptpt init" with the given KDF flags and returns the
// vault and its recovery key.
func initVault(t *testing.T, kdfTime, kdfMemory string) (*cliVault, string) {
	t.Helper()
	v := newCLIVault(t)
	must(t, os.RemoveAll(v.backing))
	out := run(t, "init", "--passfile", v.pwfile, "--kdf-time", kdfTime, "--kdf-memory", kdfMemory, v.backing)
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); strings.Count(l, "-") == 8 && !strings.Contains(l, " ") {
			return v, l
		}
	}
	t.Fatalf("init printed no recovery key:\n%s", out)
	return nil, ""
}

// contentVersions returns the format version in the header of every
// encrypted content file of backing.
func contentVersions(t *testing.T, backing string) map[string]int {
	t.Helper()
	got := map[string]int{}
	must(t, filepath.Walk(backing, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Size() < 22 {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && string(data[:4]) == "CPT\x00" {
			got[p] = int(data[4])<<8 | int(data[5])
		}
		return err
	}))
	return got
}

// TestInitWritesFormat2: a vault made by "cryptpt init" is format 2 (its
// config is version 2, with a MAC; info says so) and its files are written
// in content format 2, which has the per-file keys and the zero-block
// check. Before, init wrote format 1 and format 2 existed only in tests.
func TestInitWritesFormat2(t *testing.T) {
	v := newCLIVault(t)
	cfg := vaultConfig(t, v.backing)
	if cfg["version"] != int64(2) {
		t.Errorf("init wrote config version %v, want 2", cfg["version"])
	}
	if _, ok := table(t, cfg, "keys")["mac"]; !ok {
		t.Error("init wrote a config without a MAC")
	}
	if out := run(t, "info", v.backing); !strings.Contains(out, "format:         2 ") {
		t.Errorf("info does not name format 2:\n%s", out)
	}
	v.mount(t)
	secret := canary(t, 5000)
	must(t, os.WriteFile(v.path("f"), secret, 0o600))
	v.unmount(t)
	noCanaries(t, v.backing, secret)
	versions := contentVersions(t, v.backing)
	if len(versions) != 1 {
		t.Fatalf("%d content files in the vault, want 1: %v", len(versions), versions)
	}
	for p, ver := range versions {
		if ver != 2 {
			t.Errorf("%s: content format %d, want 2", p, ver)
		}
	}
}

// TestKDFDowngradeThroughReset replays the downgrade: the vault's KDF
// parameters are edited to the floor, so the password fails ("wrong
// password"); the owner then resets it with the recovery key. The reset
// must not keep the downgraded parameters: it writes at least the
// defaults, with a fresh salt, and says the config was altered.
func TestKDFDowngradeThroughReset(t *testing.T) {
	v, recovery := initVault(t, "3", "20480")
	cfg := vaultConfig(t, v.backing)
	kdf := table(t, cfg, "kdf")
	salt := kdf["salt"]
	kdf["time"], kdf["memory_kib"], kdf["threads"] = int64(keys.MinTime), int64(keys.MinMemoryKiB), int64(1)
	writeVaultConfig(t, v.backing, cfg)

	expectFail(t, "wrong password", "fsck", "--passfile", v.pwfile, v.backing)

	rk := filepath.Join(v.dir, "rk")
	must(t, os.WriteFile(rk, []byte(recovery+"\n"), 0o600))
	pw2 := filepath.Join(v.dir, "pw2")
	must(t, os.WriteFile(pw2, []byte("a new long passphrase\n"), 0o600))
	_, stderr, code := cryptpt("passwd", "--recovery-key-file", rk, "--new-passfile", pw2, v.backing)
	if code != 0 {
		t.Fatalf("passwd --recovery-key: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "altered") {
		t.Errorf("the reset did not say the config was altered:\n%s", stderr)
	}
	after := vaultConfig(t, v.backing)
	k := table(t, after, "kdf")
	tm, _ := k["time"].(int64)
	mem, _ := k["memory_kib"].(int64)
	if tm < int64(keys.DefaultKDF.Time) || mem < int64(keys.DefaultKDF.MemoryKiB) {
		t.Errorf("the reset wrote time %d, memory %d KiB; want at least the defaults %+v", tm, mem, keys.DefaultKDF)
	}
	if k["salt"] == salt {
		t.Error("the reset kept the salt")
	}
	if after["version"] != int64(2) {
		t.Errorf("the reset wrote config version %v, want 2", after["version"])
	}
	run(t, "fsck", "--passfile", pw2, v.backing)
}

// TestEditedConfigRefused: every field of a format-2 config that someone
// without the keys edits makes the vault refuse to open: KDF parameters
// and salt as a wrong password (the password wrap is bound to them), the
// recovery wrap, the MAC and the version as an altered config.
func TestEditedConfigRefused(t *testing.T) {
	v := newCLIVault(t)
	orig, err := os.ReadFile(filepath.Join(v.backing, crypt.VaultConfigName))
	must(t, err)
	tests := []struct {
		name string
		edit func(t *testing.T, m map[string]any)
		want string
	}{
		{"time raised", func(t *testing.T, m map[string]any) { table(t, m, "kdf")["time"] = int64(3) }, "wrong password"},
		{"memory raised", func(t *testing.T, m map[string]any) { table(t, m, "kdf")["memory_kib"] = int64(20480) }, "wrong password"},
		{"threads", func(t *testing.T, m map[string]any) {
			table(t, m, "kdf")["threads"] = table(t, m, "kdf")["threads"].(int64) + 1
		}, "wrong password"},
		{"salt", func(t *testing.T, m map[string]any) {
			table(t, m, "kdf")["salt"] = flipB64(t, table(t, m, "kdf")["salt"])
		}, "wrong password"},
		{"recovery wrap", func(t *testing.T, m map[string]any) {
			table(t, m, "keys")["recovery"] = flipB64(t, table(t, m, "keys")["recovery"])
		}, "altered"},
		{"mac", func(t *testing.T, m map[string]any) {
			table(t, m, "keys")["mac"] = flipB64(t, table(t, m, "keys")["mac"])
		}, "altered"},
		{"version relabelled 1", func(t *testing.T, m map[string]any) { m["version"] = int64(1); delete(table(t, m, "keys"), "mac") }, "altered"},
		{"feature flag", func(t *testing.T, m map[string]any) { m["features"] = map[string]any{"flags": []string{"x"}} }, "unsupported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := vaultConfig(t, v.backing)
			tt.edit(t, cfg)
			writeVaultConfig(t, v.backing, cfg)
			expectFail(t, tt.want, "fsck", "--passfile", v.pwfile, v.backing)
			must(t, os.WriteFile(filepath.Join(v.backing, crypt.VaultConfigName), orig, 0o600))
		})
	}
	run(t, "fsck", "--passfile", v.pwfile, v.backing)
}

// TestKDFFlagsRangeChecked: --kdf-* values outside the bounds every config
// is read with are refused with one line, instead of wrapping around in a
// conversion to 32 bits (--kdf-memory 4294975488 was stored as 8192).
func TestKDFFlagsRangeChecked(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	must(t, os.WriteFile(pw, []byte("a long passphrase here\n"), 0o600))
	for i, flags := range [][]string{
		{"--kdf-memory", "4294975488"},
		{"--kdf-memory", "8192"},
		{"--kdf-memory", "4194305"},
		{"--kdf-time", "1"},
		{"--kdf-time", "4294967298"},
		{"--kdf-time", "1025"},
	} {
		vault := filepath.Join(dir, "v"+string(rune('a'+i)))
		expectFail(t, flags[0]+" "+flags[1]+" is out of range", append(append([]string{"init", "--passfile", pw}, flags...), vault)...)
		if _, err := os.Stat(filepath.Join(vault, crypt.VaultConfigName)); err == nil {
			t.Errorf("init %v wrote a vault config", flags)
		}
	}
}

// TestGoldenVaultV1PasswdUpgrades: a password change of the golden format-1
// vault writes a format-2 config with at least the default KDF (before, it
// kept version 1 and the vault's KDF parameters); its files still read as
// they were written, and new files are written in content format 2.
func TestGoldenVaultV1PasswdUpgrades(t *testing.T) {
	v, want := unpackGolden(t, "v1")
	before := contentVersions(t, v.backing)
	pw2 := filepath.Join(v.dir, "pw2")
	must(t, os.WriteFile(pw2, []byte("a new long passphrase\n"), 0o600))
	_, stderr, code := cryptpt("passwd", "--passfile", v.pwfile, "--new-passfile", pw2, v.backing)
	if code != 0 {
		t.Fatalf("passwd: exit %d\n%s", code, stderr)
	}
	cfg := vaultConfig(t, v.backing)
	kdf := table(t, cfg, "kdf")
	tm, _ := kdf["time"].(int64)
	mem, _ := kdf["memory_kib"].(int64)
	if cfg["version"] != int64(2) || tm < int64(keys.DefaultKDF.Time) || mem < int64(keys.DefaultKDF.MemoryKiB) {
		t.Errorf("after passwd: version %v, time %d, memory %d KiB; want 2 and at least %+v", cfg["version"], tm, mem, keys.DefaultKDF)
	}
	if !strings.Contains(stderr, "now format 2") {
		t.Errorf("passwd did not say it upgraded the config:\n%s", stderr)
	}
	if out := run(t, "info", v.backing); !strings.Contains(out, "format:         2 ") {
		t.Errorf("info does not name format 2:\n%s", out)
	}

	v.pwfile = pw2
	v.mount(t)
	checkGolden(t, v, want)
	fresh := canary(t, 6000)
	must(t, os.WriteFile(v.path("upgraded.bin"), fresh, 0o600))
	v.unmount(t)
	noCanaries(t, v.backing, fresh)
	after := contentVersions(t, v.backing)
	for p, ver := range after {
		if old, ok := before[p]; ok && ver != old {
			t.Errorf("%s: content format %d, was %d", p, ver, old)
		} else if !ok && ver != 2 {
			t.Errorf("%s: new file in content format %d, want 2", p, ver)
		}
	}
	if len(after) != len(before)+1 {
		t.Errorf("%d content files after one new one, %d before", len(after), len(before))
	}
}
