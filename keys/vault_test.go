package keys

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptpt/crypt"
	"cryptpt/layout"
)

func TestCreateOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	master, rk := newTestVault(t, dir, "correct horse")
	if master == ([KeySize]byte{}) {
		t.Fatal("zero master key")
	}
	if _, err := ParseRecoveryKey([]byte(rk)); err != nil {
		t.Fatalf("recovery key %q does not parse: %v", rk, err)
	}

	v, err := Open(dir, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if *v.Master() != master {
		t.Fatal("Open returned another master key")
	}
	if v.Config().KDF != MinKDF {
		t.Fatalf("config KDF = %+v", v.Config().KDF)
	}
	v.Wipe()
	if *v.Master() != ([KeySize]byte{}) {
		t.Fatal("Wipe left key bytes")
	}

	v, err = OpenWithRecoveryKey(dir, []byte(strings.ToLower(rk)))
	if err != nil {
		t.Fatal(err)
	}
	if *v.Master() != master {
		t.Fatal("OpenWithRecoveryKey returned another master key")
	}

	info, err := os.Stat(filepath.Join(dir, crypt.VaultConfigName))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v, want 0600", info.Mode().Perm())
	}
	assertNoTemp(t, dir)
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, rk := newTestVault(t, dir, "pw")
	other := t.TempDir()
	_, otherRK := newTestVault(t, other, "pw")

	tests := []struct {
		name string
		open func() (*Vault, error)
		want error
	}{
		{"wrong password", func() (*Vault, error) { return Open(dir, []byte("pW")) }, ErrWrongPassword},
		{"empty password", func() (*Vault, error) { return Open(dir, nil) }, ErrWrongPassword},
		{"not a vault", func() (*Vault, error) { return Open(t.TempDir(), []byte("pw")) }, ErrNotVault},
		{"recovery key of another vault", func() (*Vault, error) { return OpenWithRecoveryKey(dir, []byte(otherRK)) }, ErrWrongRecoveryKey},
		{"recovery key typo", func() (*Vault, error) { return OpenWithRecoveryKey(dir, []byte("X"+rk[1:])) }, ErrRecoveryKeyTypo},
		{"recovery key truncated", func() (*Vault, error) { return OpenWithRecoveryKey(dir, []byte(rk[:len(rk)-5])) }, ErrRecoveryKeyTypo},
		{"password as recovery key", func() (*Vault, error) { return OpenWithRecoveryKey(dir, []byte("pw")) }, ErrRecoveryKeyTypo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := tt.open()
			if v != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, %v; want %v", v, err, tt.want)
			}
			if !errors.Is(tt.want, ErrCorrupt) && errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v also matches ErrCorrupt", err)
			}
		})
	}
}

// TestWrongPasswordVsCorrupt: a well-formed but altered wrap is a wrong
// password (it cannot be told apart), while a structural change is corrupt.
func TestWrongPasswordVsCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newTestVault(t, dir, "pw")
	path := filepath.Join(dir, crypt.VaultConfigName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}

	cfg.PasswordWrap[20] ^= 1
	flipped, err := cfg.encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, flipped, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, []byte("pw")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("flipped wrap: %v, want ErrWrongPassword", err)
	}

	trunc := bytes.Replace(data, []byte("password = \""), []byte("password = \"AAAA"), 1)
	if err := os.WriteFile(path, trunc, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, []byte("pw"))
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Field != "keys.password" || errors.Is(err, ErrWrongPassword) {
		t.Fatalf("lengthened wrap: %v, want CorruptError for keys.password", err)
	}
}

// TestWrapsNotSwappable: the password wrap placed in the recovery slot (or
// the other way round) does not open, thanks to the associated data.
func TestWrapsNotSwappable(t *testing.T) {
	t.Parallel()
	var master, kek [KeySize]byte
	master[0], kek[0] = 1, 2
	w, err := wrapKey(&kek, &master, passwordAD)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := unwrapKey(&kek, &w, recoveryAD); ok {
		t.Fatal("password wrap opened with recovery AD")
	}
	if m, ok := unwrapKey(&kek, &w, passwordAD); !ok || m != master {
		t.Fatal("wrap did not round trip")
	}
}

func TestCreateRefuses(t *testing.T) {
	t.Parallel()
	t.Run("exists", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		master, _ := newTestVault(t, dir, "pw")
		before, _ := os.ReadFile(filepath.Join(dir, crypt.VaultConfigName))
		m, rk, err := Create(dir, []byte("other"), MinKDF)
		if !errors.Is(err, ErrExists) || m != ([KeySize]byte{}) || rk != "" {
			t.Fatalf("got %x, %q, %v; want ErrExists", m, rk, err)
		}
		after, _ := os.ReadFile(filepath.Join(dir, crypt.VaultConfigName))
		if !bytes.Equal(before, after) {
			t.Fatal("existing config changed")
		}
		if v, err := Open(dir, []byte("pw")); err != nil || *v.Master() != master {
			t.Fatalf("old vault no longer opens: %v", err)
		}
		assertNoTemp(t, dir)
	})
	t.Run("exists race", func(t *testing.T) {
		t.Parallel()
		// A config that appears between the check and the write is not replaced.
		dir := t.TempDir()
		hook := func(step string) error {
			if step == layout.StepClose {
				return os.WriteFile(filepath.Join(dir, crypt.VaultConfigName), []byte("other"), 0o600)
			}
			return nil
		}
		if _, _, err := create(dir, []byte("pw"), MinKDF, hook); !errors.Is(err, ErrExists) {
			t.Fatalf("got %v, want ErrExists", err)
		}
		if data, _ := os.ReadFile(filepath.Join(dir, crypt.VaultConfigName)); string(data) != "other" {
			t.Fatal("config replaced")
		}
		assertNoTemp(t, dir)
	})
	t.Run("weak kdf", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		for _, p := range []KDFParams{{0, MinMemoryKiB, 1}, {1, 1024, 1}, {1, MinMemoryKiB, 0}} {
			if _, _, err := Create(dir, []byte("pw"), p); err == nil {
				t.Fatalf("Create accepted %+v", p)
			}
		}
		assertNoTemp(t, dir)
		if _, err := Load(dir); !errors.Is(err, ErrNotVault) {
			t.Fatalf("config written anyway: %v", err)
		}
	})
	t.Run("no dir", func(t *testing.T) {
		t.Parallel()
		if _, _, err := Create(filepath.Join(t.TempDir(), "missing"), []byte("pw"), MinKDF); err == nil {
			t.Fatal("Create made a config in a missing directory")
		}
	})
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	master, rk := newTestVault(t, dir, "old")
	before, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := changePassword(dir, []byte("wrong"), []byte("new"), MinKDF, nil); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("with wrong old password: %v", err)
	}
	if err := changePassword(dir, []byte("old"), []byte("new"), MinKDF, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, []byte("old")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("old password still opens: %v", err)
	}
	v, err := Open(dir, []byte("new"))
	if err != nil || *v.Master() != master {
		t.Fatalf("new password: %v", err)
	}
	after := v.Config()
	if after.Salt == before.Salt {
		t.Error("salt not renewed")
	}
	if after.RecoveryWrap != before.RecoveryWrap || after.KDF != before.KDF {
		t.Error("recovery wrap or KDF params changed")
	}
	if v, err := OpenWithRecoveryKey(dir, []byte(rk)); err != nil || *v.Master() != master {
		t.Fatalf("recovery key after change: %v", err)
	}
	assertNoTemp(t, dir)
}

func TestResetPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	master, rk := newTestVault(t, dir, "forgotten")
	// Change the last character (to one it is not: a "0" would do nothing
	// to a key that ends in 0, one time in 32).
	typo := "0"
	if strings.HasSuffix(rk, "0") {
		typo = "1"
	}
	if err := resetPassword(dir, []byte(rk[:len(rk)-1]+typo), []byte("x"), MinKDF, nil); !errors.Is(err, ErrRecoveryKeyTypo) && !errors.Is(err, ErrWrongRecoveryKey) {
		t.Fatalf("bad recovery key: %v", err)
	}
	other := t.TempDir()
	_, otherRK := newTestVault(t, other, "x")
	if err := resetPassword(dir, []byte(otherRK), []byte("x"), MinKDF, nil); !errors.Is(err, ErrWrongRecoveryKey) {
		t.Fatalf("other vault's recovery key: %v", err)
	}
	if err := resetPassword(dir, []byte(strings.ReplaceAll(rk, "-", " ")), []byte("fresh"), MinKDF, nil); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, []byte("fresh"))
	if err != nil || *v.Master() != master {
		t.Fatalf("new password: %v", err)
	}
	if _, err := Open(dir, []byte("forgotten")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("old password still opens: %v", err)
	}
	// The same recovery key keeps working.
	if err := resetPassword(dir, []byte(rk), []byte("again"), MinKDF, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, []byte("again")); err != nil {
		t.Fatal(err)
	}
}

// TestErrorsHoldNoSecrets: error strings never contain the password or the
// recovery key.
func TestErrorsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, rk := newTestVault(t, dir, "pw")
	const secret = "hunter2-secret"
	_, err := Open(dir, []byte(secret))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("error %v", err)
	}
	// A different first character: "Z" + rk[1:] was the key itself one
	// time in 32.
	first := "Z"
	if rk[0] == 'Z' {
		first = "Y"
	}
	typo := first + rk[1:]
	_, err = OpenWithRecoveryKey(dir, []byte(typo))
	if err == nil || strings.Contains(err.Error(), typo[5:20]) {
		t.Fatalf("error %v", err)
	}
}

// assertNoTemp fails if a temp file is left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), crypt.TempPrefix) {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}
