package keys

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptpt/crypt"
)

// stronger is a KDF cheap enough for tests but above MinKDF in both
// passes and memory: the "default" these tests hand to rewrite.
var stronger = KDFParams{Time: MinTime + 1, MemoryKiB: MinMemoryKiB + 1024, Threads: 1}

// TestConfigBindingLayout pins the byte layout of the version-2 binding
// to the table in doc.go and docs/format.md.
func TestConfigBindingLayout(t *testing.T) {
	t.Parallel()
	c := &Config{Version: 2, KDF: KDFParams{Time: 3, MemoryKiB: 0x10000, Threads: 4}, Flags: []string{"ab"}}
	for i := range c.Salt {
		c.Salt[i] = byte(i)
	}
	want := "00000002" + "00000003" + "00010000" + "04" +
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" +
		"0001" + "0002" + "6162"
	if got := hex.EncodeToString(c.configBinding()); got != want {
		t.Fatalf("binding\n got %s\nwant %s", got, want)
	}
	if ad := c.passwordWrapAD(); !strings.HasPrefix(ad, "cryptpt password wrap v2") || ad[24:] != string(c.configBinding()) {
		t.Fatalf("version-2 password AD %q", ad)
	}
	c.Version = 1
	if c.passwordWrapAD() != "cryptpt password wrap v1" {
		t.Fatal("version-1 password AD changed")
	}
}

// editConfig rewrites the vault config of dir through fn, as someone who
// can write the vault but knows no key would.
func editConfig(t *testing.T, dir string, fn func(c *Config)) {
	t.Helper()
	cfg, err := loadConfig(dir, lenient)
	if err != nil {
		t.Fatal(err)
	}
	fn(cfg)
	data, err := cfg.encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, crypt.VaultConfigName), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// createV1 writes a version-1 config as cryptpt before format 2 did.
func createV1(t *testing.T, dir, password string, p KDFParams) (master [KeySize]byte, recovery string) {
	t.Helper()
	master[0], master[31] = 0x11, 0x22
	rk, err := NewRecoveryKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Version: VersionV1, KDF: p}
	if err := cfg.setPassword(&master, []byte(password)); err != nil {
		t.Fatal(err)
	}
	rkek, err := recoveryWrapKey(&rk)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RecoveryWrap, err = wrapKey(&rkek, &master, recoveryAD); err != nil {
		t.Fatal(err)
	}
	data, err := cfg.encode()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("mac")) || !bytes.Contains(data, []byte("version = 1")) {
		t.Fatalf("not a version-1 config:\n%s", data)
	}
	if err := os.WriteFile(filepath.Join(dir, crypt.VaultConfigName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return master, FormatRecoveryKey(&rk)
}

// TestVersion2BindsConfig: each field of a version-2 config that someone
// without the keys changes makes it refuse to open: a changed KDF
// parameter or salt as a wrong password (the wrap is bound to them), a
// changed recovery wrap, MAC or version as ErrTampered.
func TestVersion2BindsConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(c *Config)
		want error
	}{
		{"time to the floor", func(c *Config) { c.KDF.Time = MinTime }, ErrWrongPassword},
		{"memory to the floor", func(c *Config) { c.KDF.MemoryKiB = MinMemoryKiB }, ErrWrongPassword},
		{"threads", func(c *Config) { c.KDF.Threads = 2 }, ErrWrongPassword},
		{"salt", func(c *Config) { c.Salt[0] ^= 1 }, ErrWrongPassword},
		{"recovery wrap", func(c *Config) { c.RecoveryWrap[30] ^= 1 }, ErrTampered},
		{"mac", func(c *Config) { c.MAC[0] ^= 1 }, ErrTampered},
		{"relabelled version 1", func(c *Config) { c.Version = VersionV1 }, ErrTampered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if _, _, err := Create(dir, []byte("pw"), stronger); err != nil {
				t.Fatal(err)
			}
			editConfig(t, dir, tt.edit)
			v, err := Open(dir, []byte("pw"))
			if v != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, %v; want %v", v, err, tt.want)
			}
			if errors.Is(err, ErrTampered) && errors.Is(err, ErrWrongPassword) {
				t.Fatalf("%v matches both sentinels", err)
			}
		})
	}
	// A version-1 config relabelled as version 2 (with some MAC) too.
	t.Run("relabelled version 2", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		createV1(t, dir, "pw", stronger)
		editConfig(t, dir, func(c *Config) { c.Version = Version })
		if _, err := Open(dir, []byte("pw")); !errors.Is(err, ErrTampered) {
			t.Fatalf("Open = %v, want ErrTampered", err)
		}
	})
}

// TestResetAfterDowngrade replays the KDF downgrade: the config's KDF is
// edited to the floor, so the password fails; the reset with the recovery
// key must not write the downgraded parameters, in either version.
func TestResetAfterDowngrade(t *testing.T) {
	t.Parallel()
	for _, version := range []int{VersionV1, Version} {
		t.Run(map[int]string{VersionV1: "version 1", Version: "version 2"}[version], func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var master [KeySize]byte
			var rk string
			if version == VersionV1 {
				master, rk = createV1(t, dir, "pw", stronger)
			} else {
				var err error
				if master, rk, err = Create(dir, []byte("pw"), stronger); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := Load(dir)
			editConfig(t, dir, func(c *Config) { c.KDF = MinKDF })
			if _, err := Open(dir, []byte("pw")); !errors.Is(err, ErrWrongPassword) {
				t.Fatalf("password after the downgrade: %v", err)
			}
			_, err := OpenWithRecoveryKey(dir, []byte(rk))
			if version == Version && !errors.Is(err, ErrTampered) {
				t.Fatalf("recovery key on the downgraded version-2 config: %v, want ErrTampered", err)
			}
			if version == VersionV1 && err != nil {
				t.Fatalf("recovery key on a version-1 config: %v", err)
			}
			if err := resetPassword(dir, []byte(rk), []byte("new"), stronger, nil); err != nil {
				t.Fatal(err)
			}
			after, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if after.KDF != stronger || after.Salt == before.Salt || after.Version != Version {
				t.Errorf("after the reset: version %d, KDF %+v (want %+v), salt renewed %v", after.Version, after.KDF, stronger, after.Salt != before.Salt)
			}
			v, err := Open(dir, []byte("new"))
			if err != nil || *v.Master() != master {
				t.Fatalf("new password: %v", err)
			}
			if _, err := OpenWithRecoveryKey(dir, []byte(rk)); err != nil {
				t.Fatalf("recovery key after the reset: %v", err)
			}
		})
	}
}

// TestResetBelowFloor: a config whose KDF is below the floor (a downgrade
// past it, or a vault made before the floor was raised) is corrupt to Open
// but can still be reset, to safe parameters.
func TestResetBelowFloor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	master, rk := createV1(t, dir, "pw", MinKDF)
	editConfig(t, dir, func(c *Config) { c.KDF = KDFParams{Time: 1, MemoryKiB: 8192, Threads: 1} })
	var ce *CorruptError
	if _, err := Open(dir, []byte("pw")); !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "kdf.") {
		t.Fatalf("Open = %v, want a corrupt kdf field", err)
	}
	if err := resetPassword(dir, []byte(rk), []byte("new"), stronger, nil); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, []byte("new"))
	if err != nil || *v.Master() != master || v.Config().KDF != stronger {
		t.Fatalf("after the reset: %v", err)
	}
}

// TestRewriteKDF: a password change keeps KDF parameters it can vouch for
// when they are at least the default's, and otherwise writes the default;
// a reset of a config whose MAC fails never keeps them, not even higher
// ones (which would only slow every later open).
func TestRewriteKDF(t *testing.T) {
	t.Parallel()
	high := KDFParams{Time: stronger.Time + 1, MemoryKiB: stronger.MemoryKiB + 1024, Threads: 2}
	mixed := KDFParams{Time: stronger.Time + 5, MemoryKiB: MinMemoryKiB, Threads: 1}
	tests := []struct {
		name    string
		created KDFParams
		version int
		change  func(dir, rk string) error
		want    KDFParams
	}{
		{"change from weaker", MinKDF, Version, func(dir, _ string) error { return changePassword(dir, []byte("pw"), []byte("new"), stronger, nil) }, stronger},
		{"change from stronger", high, Version, func(dir, _ string) error { return changePassword(dir, []byte("pw"), []byte("new"), stronger, nil) }, high},
		{"change from less memory, more passes", mixed, Version, func(dir, _ string) error { return changePassword(dir, []byte("pw"), []byte("new"), stronger, nil) }, stronger},
		{"change of a version-1 config from stronger", high, VersionV1, func(dir, _ string) error { return changePassword(dir, []byte("pw"), []byte("new"), stronger, nil) }, high},
		{"reset from stronger", high, Version, func(dir, rk string) error { return resetPassword(dir, []byte(rk), []byte("new"), stronger, nil) }, high},
		{"reset of a version-1 config from stronger", high, VersionV1, func(dir, rk string) error { return resetPassword(dir, []byte(rk), []byte("new"), stronger, nil) }, stronger},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var rk string
			if tt.version == VersionV1 {
				_, rk = createV1(t, dir, "pw", tt.created)
			} else {
				var err error
				if _, rk, err = Create(dir, []byte("pw"), tt.created); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.change(dir, rk); err != nil {
				t.Fatal(err)
			}
			v, err := Open(dir, []byte("new"))
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Config().KDF; got != tt.want {
				t.Errorf("KDF %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("reset of an altered config from stronger", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		_, rk, err := Create(dir, []byte("pw"), stronger)
		if err != nil {
			t.Fatal(err)
		}
		editConfig(t, dir, func(c *Config) { c.KDF = high })
		if err := resetPassword(dir, []byte(rk), []byte("new"), stronger, nil); err != nil {
			t.Fatal(err)
		}
		if c, _ := Load(dir); c.KDF != stronger {
			t.Errorf("KDF %+v after resetting an altered config, want %+v", c.KDF, stronger)
		}
	})
}

// TestChangeUpgradesVersion1: a password change of a version-1 config
// writes version 2 with a valid MAC, keeping the master key and the
// recovery wrap.
func TestChangeUpgradesVersion1(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	master, rk := createV1(t, dir, "pw", MinKDF)
	before, _ := Load(dir)
	if err := changePassword(dir, []byte("pw"), []byte("new"), MinKDF, nil); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, []byte("new"))
	if err != nil || *v.Master() != master {
		t.Fatalf("new password: %v", err)
	}
	c := v.Config()
	if c.Version != Version || !c.macOK(&master) || c.RecoveryWrap != before.RecoveryWrap {
		t.Fatalf("after the change: version %d, MAC ok %v, recovery wrap kept %v", c.Version, c.macOK(&master), c.RecoveryWrap == before.RecoveryWrap)
	}
	if rv, err := OpenWithRecoveryKey(dir, []byte(rk)); err != nil || *rv.Master() != master {
		t.Fatalf("recovery key after the upgrade: %v", err)
	}
}

// TestSetPasswordWithKeyChecksKey: in version 2 the kept key is checked
// against the config MAC, so a wrong key (or an altered config) writes
// nothing.
func TestSetPasswordWithKeyChecksKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	master, _ := newTestVault(t, dir, "pw")
	before, _ := os.ReadFile(filepath.Join(dir, crypt.VaultConfigName))
	wrong := master
	wrong[0] ^= 1
	if err := SetPasswordWithKey(dir, &wrong, []byte("new")); !errors.Is(err, ErrTampered) {
		t.Fatalf("wrong key: %v, want ErrTampered", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, crypt.VaultConfigName)); !bytes.Equal(before, after) {
		t.Fatal("config written with a wrong key")
	}
	editConfig(t, dir, func(c *Config) { c.KDF.Time++ })
	if err := SetPasswordWithKey(dir, &master, []byte("new")); !errors.Is(err, ErrTampered) {
		t.Fatalf("altered config: %v, want ErrTampered", err)
	}
}
