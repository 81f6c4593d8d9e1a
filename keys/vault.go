package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Vault is an opened vault: its parsed config and the unwrapped master key.
// Call Wipe when the key is no longer needed. A Vault is not safe for
// concurrent Wipe and Master calls.
type Vault struct {
	cfg    *Config
	master [KeySize]byte
}

// Master returns a pointer to the master key held by v. It is zero after Wipe.
func (v *Vault) Master() *[KeySize]byte { return &v.master }

// Config returns the parsed config the vault was opened with.
func (v *Vault) Config() *Config { return v.cfg }

// Wipe zeroes the master key held by v.
func (v *Vault) Wipe() { clear(v.master[:]) }

// Create makes a new vault config in the existing directory dir: a random
// master key wrapped under password (Argon2id with p and a fresh salt) and
// under a new recovery key. It returns the master key and the recovery key in
// text form, which the caller must show once; it is stored nowhere. Create
// refuses to replace an existing config (ErrExists) and rejects p outside the
// bounds MinMemoryKiB..MaxMemoryKiB, MinTime..MaxTime, threads >= 1.
// Production callers pass DefaultKDF, tests FastKDF.
func Create(dir string, password []byte, p KDFParams) (master [KeySize]byte, recoveryKey string, err error) {
	return create(dir, password, p, nil)
}

func create(dir string, password []byte, p KDFParams, hook hookFunc) (master [KeySize]byte, recoveryKey string, err error) {
	if field, err := p.check(); err != nil {
		return master, "", fmt.Errorf("keys: invalid %s: %w", field, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, ConfigName)); err == nil {
		return master, "", fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, ConfigName))
	}
	if _, err := rand.Read(master[:]); err != nil {
		return master, "", err
	}
	defer func() {
		if err != nil {
			clear(master[:])
		}
	}()
	rk, err := NewRecoveryKey()
	if err != nil {
		return master, "", err
	}
	defer clear(rk[:])
	cfg := &Config{Version: Version, KDF: p}
	if err := cfg.setPassword(&master, password); err != nil {
		return master, "", err
	}
	rkek, err := recoveryWrapKey(&rk)
	if err != nil {
		return master, "", err
	}
	defer clear(rkek[:])
	if cfg.RecoveryWrap, err = wrapKey(&rkek, &master, recoveryAD); err != nil {
		return master, "", err
	}
	data, err := cfg.encode()
	if err != nil {
		return master, "", err
	}
	if err := writeConfig(dir, data, true, hook); err != nil {
		return master, "", err
	}
	return master, FormatRecoveryKey(&rk), nil
}

// setPassword picks a new salt and wraps master under password with c.KDF.
func (c *Config) setPassword(master *[KeySize]byte, password []byte) error {
	if _, err := rand.Read(c.Salt[:]); err != nil {
		return err
	}
	kek := passwordKey(password, &c.Salt, c.KDF)
	defer clear(kek[:])
	w, err := wrapKey(&kek, master, passwordAD)
	if err != nil {
		return err
	}
	c.PasswordWrap = w
	return nil
}

// Open loads the config of the vault at dir and unwraps the master key with
// password. Errors: ErrNotVault, ErrCorrupt (a *CorruptError), ErrVersion,
// ErrWrongPassword.
func Open(dir string, password []byte) (*Vault, error) {
	cfg, err := Load(dir)
	if err != nil {
		return nil, err
	}
	return openPassword(cfg, password)
}

func openPassword(cfg *Config, password []byte) (*Vault, error) {
	kek := passwordKey(password, &cfg.Salt, cfg.KDF)
	defer clear(kek[:])
	m, ok := unwrapKey(&kek, &cfg.PasswordWrap, passwordAD)
	if !ok {
		return nil, ErrWrongPassword
	}
	return &Vault{cfg: cfg, master: m}, nil
}

// OpenWithRecoveryKey loads the config of the vault at dir and unwraps the
// master key with a recovery key in text form. Errors: ErrRecoveryKeyTypo
// (checked before the vault is read), ErrNotVault, ErrCorrupt, ErrVersion,
// ErrWrongRecoveryKey.
func OpenWithRecoveryKey(dir, recoveryKey string) (*Vault, error) {
	rk, err := ParseRecoveryKey(recoveryKey)
	if err != nil {
		return nil, err
	}
	defer clear(rk[:])
	cfg, err := Load(dir)
	if err != nil {
		return nil, err
	}
	return openRecovery(cfg, &rk)
}

func openRecovery(cfg *Config, rk *[RecoveryKeySize]byte) (*Vault, error) {
	kek, err := recoveryWrapKey(rk)
	if err != nil {
		return nil, err
	}
	defer clear(kek[:])
	m, ok := unwrapKey(&kek, &cfg.RecoveryWrap, recoveryAD)
	if !ok {
		return nil, ErrWrongRecoveryKey
	}
	return &Vault{cfg: cfg, master: m}, nil
}

// ChangePassword rewraps the master key of the vault at dir from oldPassword
// to newPassword, with a new salt and the same KDF parameters. The master key
// and the recovery wrap are unchanged. The config is replaced atomically: a
// crash leaves a config that opens with the old or the new password.
func ChangePassword(dir string, oldPassword, newPassword []byte) error {
	return changePassword(dir, oldPassword, newPassword, nil)
}

func changePassword(dir string, oldPassword, newPassword []byte, hook hookFunc) error {
	v, err := Open(dir, oldPassword)
	if err != nil {
		return err
	}
	defer v.Wipe()
	return rewrite(dir, v, newPassword, hook)
}

// ResetPassword sets a new password on the vault at dir using its recovery
// key, for when the password is lost. Like ChangePassword it keeps the master
// key, the KDF parameters and the recovery wrap, and replaces the config
// atomically.
func ResetPassword(dir, recoveryKey string, newPassword []byte) error {
	return resetPassword(dir, recoveryKey, newPassword, nil)
}

func resetPassword(dir, recoveryKey string, newPassword []byte, hook hookFunc) error {
	v, err := OpenWithRecoveryKey(dir, recoveryKey)
	if err != nil {
		return err
	}
	defer v.Wipe()
	return rewrite(dir, v, newPassword, hook)
}

// rewrite writes v's config with the master key wrapped under newPassword.
func rewrite(dir string, v *Vault, newPassword []byte, hook hookFunc) error {
	cfg := *v.cfg
	cfg.Flags = append([]string(nil), v.cfg.Flags...)
	if err := cfg.setPassword(&v.master, newPassword); err != nil {
		return err
	}
	data, err := cfg.encode()
	if err != nil {
		return err
	}
	if err := writeConfig(dir, data, false, hook); err != nil {
		if errors.Is(err, errCrash) {
			return err
		}
		return fmt.Errorf("write vault config: %w", err)
	}
	return nil
}
