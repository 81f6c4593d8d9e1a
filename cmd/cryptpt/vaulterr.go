package main

import (
	"errors"
	"strings"

	"cryptpt/crypt"
	"cryptpt/keys"
)

// vaultError turns an error from the keys package into one line for the user.
func vaultError(err error, dir string) error {
	var ce *keys.CorruptError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keys.ErrWrongPassword):
		return fail("", "wrong password for vault %s", dir)
	case errors.Is(err, keys.ErrRecoveryKeyTypo):
		return fail("check the recovery key for a typo: it is groups of letters and digits", "%v", err)
	case errors.Is(err, keys.ErrWrongRecoveryKey):
		return fail("", "that recovery key does not belong to vault %s", dir)
	case errors.Is(err, keys.ErrNotVault):
		return fail("create one with \"cryptpt init "+dir+"\"", "%s is not a cryptpt vault (it has no %s)", dir, crypt.VaultConfigName)
	case errors.Is(err, keys.ErrTampered):
		return fail("restore "+crypt.VaultConfigName+" from a backup of the vault; if only its password settings were changed, \"cryptpt passwd --recovery-key "+dir+"\" writes fresh ones",
			"%s: %v", dir, err)
	case errors.As(err, &ce) && strings.HasPrefix(ce.Field, "kdf."):
		// Below the floor: a downgrade, or a vault made before the floor
		// was raised. The recovery key path does not use these fields.
		return fail("restore "+crypt.VaultConfigName+" from a backup of the vault, or set a new password with \"cryptpt passwd --recovery-key "+dir+"\", which writes safe KDF settings",
			"%s: %v", dir, err)
	case errors.Is(err, keys.ErrCorrupt):
		return fail("restore "+crypt.VaultConfigName+" from a backup of the vault", "%s: %v", dir, err)
	case errors.Is(err, keys.ErrVersion):
		return fail("this vault needs a newer cryptpt", "%s: %v", dir, err)
	case errors.Is(err, keys.ErrExists):
		return fail("", "%s already holds a vault", dir)
	}
	return fail("", "%s: %v", dir, err)
}
