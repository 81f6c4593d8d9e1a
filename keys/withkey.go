package keys

// SetPasswordWithKey wraps master, the master key of the vault at dir as Open
// returned it earlier, under newPassword: a password change for when the old
// password is no longer at hand but the unwrapped key is (the PAM hook of an
// encrypted home, which kept the key since login). Like ChangePassword it
// keeps the KDF parameters and the recovery wrap and replaces the config
// atomically. The key is not checked (the config holds nothing to check it
// against): a wrong one would make the new password open a useless key.
func SetPasswordWithKey(dir string, master *[KeySize]byte, newPassword []byte) error {
	cfg, err := Load(dir)
	if err != nil {
		return err
	}
	v := &Vault{cfg: cfg, master: *master}
	defer v.Wipe()
	return rewrite(dir, v, newPassword, nil)
}
