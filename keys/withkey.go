package keys

import "fmt"

// SetPasswordWithKey wraps master, the master key of the vault at dir as Open
// returned it earlier, under newPassword: a password change for when the old
// password is no longer at hand but the unwrapped key is (the PAM hook of an
// encrypted home, which kept the key since login). Like ChangePassword it
// keeps the recovery wrap, writes version 2 and replaces the config
// atomically. In a version-2 config the key is checked against the config
// MAC first: a wrong key, or a config altered since (its KDF parameters,
// salt or wraps), is ErrTampered and nothing is written. A version-1 config
// holds nothing to check the key against (a wrong one would make the new
// password open a useless key), nor its KDF parameters: DefaultKDF is
// written.
func SetPasswordWithKey(dir string, master *[KeySize]byte, newPassword []byte) error {
	cfg, err := loadConfig(dir, lenient)
	if err != nil {
		return err
	}
	v := &Vault{cfg: cfg, master: *master}
	defer v.Wipe()
	v.trusted = cfg.macOK(&v.master)
	if cfg.Version >= Version && !v.trusted {
		return fmt.Errorf("%w: it does not match the key kept since login", ErrTampered)
	}
	return rewrite(dir, v, newPassword, DefaultKDF, nil)
}
