package keys

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"cryptpt/crypt"
)

// Vault is an opened vault: its parsed config and the unwrapped master key.
// Call Wipe when the key is no longer needed. A Vault is not safe for
// concurrent Wipe and Master calls.
type Vault struct {
	cfg    *Config
	master [KeySize]byte
	// trusted: cfg's KDF parameters are the ones the vault was given (the
	// password wrap opened with them, or the version-2 config MAC
	// verifies), so a password change may keep them.
	trusted bool
}

// Master returns a pointer to the master key held by v. It is zero after Wipe.
func (v *Vault) Master() *[KeySize]byte { return &v.master }

// Config returns the parsed config the vault was opened with.
func (v *Vault) Config() *Config { return v.cfg }

// Wipe zeroes the master key held by v.
func (v *Vault) Wipe() { clear(v.master[:]) }

// Create makes a new vault config (version 2) in the existing directory dir:
// a random master key wrapped under password (Argon2id with p and a fresh
// salt) and under a new recovery key, and the config MAC. It returns the
// master key and the recovery key in text form, which the caller must show
// once; it is stored nowhere. Create refuses to replace an existing config
// (ErrExists) and rejects p outside the bounds MinMemoryKiB..MaxMemoryKiB,
// MinTime..MaxTime, threads >= 1. Production callers pass DefaultKDF (or
// stronger), tests MinKDF.
func Create(dir string, password []byte, p KDFParams) (master [KeySize]byte, recoveryKey string, err error) {
	return create(dir, password, p, nil)
}

func create(dir string, password []byte, p KDFParams, hook hookFunc) (master [KeySize]byte, recoveryKey string, err error) {
	if field, err := p.check(); err != nil {
		return master, "", fmt.Errorf("keys: invalid %s: %w", field, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, crypt.VaultConfigName)); err == nil {
		return master, "", fmt.Errorf("%w: %s", ErrExists, filepath.Join(dir, crypt.VaultConfigName))
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
	if cfg.MAC, err = cfg.configMAC(&master); err != nil {
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

// setPassword picks a new salt and wraps master under password with c.KDF,
// bound (in version 2) to c's version, KDF parameters, salt and flags. The
// caller renews the MAC afterwards.
func (c *Config) setPassword(master *[KeySize]byte, password []byte) error {
	if _, err := rand.Read(c.Salt[:]); err != nil {
		return err
	}
	kek := passwordKey(password, &c.Salt, c.KDF)
	defer clear(kek[:])
	w, err := wrapKey(&kek, master, c.passwordWrapAD())
	if err != nil {
		return err
	}
	c.PasswordWrap = w
	return nil
}

// Open loads the config of the vault at dir and unwraps the master key with
// password. Errors: ErrNotVault, ErrCorrupt (a *CorruptError), ErrVersion,
// ErrWrongPassword (also when a version-2 config's KDF parameters, salt or
// flags were changed: the wrap is bound to them), ErrTampered (a version-2
// config whose MAC does not match, or a config whose version was changed).
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
	m, ok := unwrapKey(&kek, &cfg.PasswordWrap, cfg.passwordWrapAD())
	if !ok {
		// A config relabelled from one version to the other: its wrap
		// opens with the other version's associated data.
		other := *cfg
		other.Version = VersionV1 + Version - cfg.Version
		if m, ok := unwrapKey(&kek, &cfg.PasswordWrap, other.passwordWrapAD()); ok {
			clear(m[:])
			return nil, fmt.Errorf("%w: it says version %d, but its password wrap was made for version %d", ErrTampered, cfg.Version, other.Version)
		}
		return nil, ErrWrongPassword
	}
	v := &Vault{cfg: cfg, master: m, trusted: true}
	if cfg.Version >= Version && !cfg.macOK(&v.master) {
		// The password wrap binds everything else: the recovery wrap or
		// the MAC itself was changed.
		v.Wipe()
		return nil, fmt.Errorf("%w: the recovery wrap or the MAC was changed", ErrTampered)
	}
	return v, nil
}

// OpenWithRecoveryKey loads the config of the vault at dir and unwraps the
// master key with a recovery key in text form (which it does not keep; the
// caller wipes it). The KDF is not run, so its
// parameters are read leniently (see kdfBounds). Errors: ErrRecoveryKeyTypo
// (checked before the vault is read), ErrNotVault, ErrCorrupt, ErrVersion,
// ErrWrongRecoveryKey, ErrTampered (a version-2 config whose MAC does not
// match: its KDF parameters, salt, password wrap or MAC were changed;
// ResetPassword repairs that).
func OpenWithRecoveryKey(dir string, recoveryKey []byte) (*Vault, error) {
	rk, err := ParseRecoveryKey(recoveryKey)
	if err != nil {
		return nil, err
	}
	defer clear(rk[:])
	cfg, err := loadConfig(dir, lenient)
	if err != nil {
		return nil, err
	}
	v, err := openRecovery(cfg, &rk)
	if err != nil {
		return nil, err
	}
	if cfg.Version >= Version && !v.trusted {
		v.Wipe()
		return nil, fmt.Errorf("%w: its KDF parameters, salt, password wrap or MAC were changed", ErrTampered)
	}
	return v, nil
}

// openRecovery unwraps the master key with the recovery key; the vault is
// trusted when its version-2 MAC verifies.
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
	v := &Vault{cfg: cfg, master: m}
	v.trusted = cfg.macOK(&v.master)
	return v, nil
}

// ChangePassword rewraps the master key of the vault at dir from oldPassword
// to newPassword, with a new salt. The KDF parameters are kept when they are
// at least DefaultKDF's (passes and memory), else DefaultKDF is written. The
// master key and the recovery wrap are unchanged. A version-1 config is
// written as version 2 (see Version). The config is replaced atomically: a
// crash leaves a config that opens with the old or the new password.
func ChangePassword(dir string, oldPassword, newPassword []byte) error {
	return changePassword(dir, oldPassword, newPassword, DefaultKDF, nil)
}

func changePassword(dir string, oldPassword, newPassword []byte, min KDFParams, hook hookFunc) error {
	v, err := Open(dir, oldPassword)
	if err != nil {
		return err
	}
	defer v.Wipe()
	return rewrite(dir, v, newPassword, min, hook)
}

// ResetPassword sets a new password on the vault at dir using its recovery
// key, for when the password is lost. Like ChangePassword it keeps the master
// key and the recovery wrap, writes version 2 and replaces the config
// atomically. It also repairs a config whose KDF parameters, salt or password
// wrap were changed (the cause of a password that no longer opens):
// everything such a change can reach is written afresh, and the KDF
// parameters are kept only when the config MAC vouches for them and they
// are at least DefaultKDF's, so a reset never writes a downgraded KDF.
// OpenWithRecoveryKey tells beforehand whether the config was altered.
func ResetPassword(dir string, recoveryKey, newPassword []byte) error {
	return resetPassword(dir, recoveryKey, newPassword, DefaultKDF, nil)
}

func resetPassword(dir string, recoveryKey, newPassword []byte, min KDFParams, hook hookFunc) error {
	rk, err := ParseRecoveryKey(recoveryKey)
	if err != nil {
		return err
	}
	defer clear(rk[:])
	cfg, err := loadConfig(dir, lenient)
	if err != nil {
		return err
	}
	v, err := openRecovery(cfg, &rk)
	if err != nil {
		return err
	}
	defer v.Wipe()
	return rewrite(dir, v, newPassword, min, hook)
}

// rewrite writes v's config as version 2 with the master key wrapped under
// newPassword and a fresh salt. It keeps the KDF parameters only when v
// vouches for them and they are valid and at least min; otherwise it
// writes min.
func rewrite(dir string, v *Vault, newPassword []byte, min KDFParams, hook hookFunc) error {
	cfg := *v.cfg
	cfg.Version = Version
	cfg.Flags = slices.Clone(v.cfg.Flags)
	if _, err := cfg.KDF.check(); err != nil || !v.trusted || !cfg.KDF.atLeast(min) {
		cfg.KDF = min
	}
	if err := cfg.setPassword(&v.master, newPassword); err != nil {
		return err
	}
	var err error
	if cfg.MAC, err = cfg.configMAC(&v.master); err != nil {
		return err
	}
	data, err := cfg.encode()
	if err != nil {
		return err
	}
	if err := writeConfig(dir, data, false, hook); err != nil {
		return fmt.Errorf("write vault config: %w", err)
	}
	return nil
}
