package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"cryptpt/keys"
)

func runPasswd(args []string) error {
	fl := newFlags("passwd", "passwd [--passfile F | --extpass CMD] [--new-passfile F] [--recovery-key [--recovery-key-file F]] BACKING")
	var old secretSource
	old.register(fl)
	var nw secretSource
	fl.StringVar(&nw.passfile, "new-passfile", "", "read the new password from `FILE`")
	useRecovery := fl.Bool("recovery-key", false, "reset a lost password with the recovery key that init printed")
	recoveryFile := fl.String("recovery-key-file", "", "read the recovery key from `FILE` (implies --recovery-key)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "passwd takes one argument, the vault directory")
	}
	dir := pos[0]
	recovery := *useRecovery || *recoveryFile != ""
	if _, err := keys.Load(dir); err != nil {
		// KDF settings out of bounds do not stop a reset: it replaces them.
		var ce *keys.CorruptError
		if !recovery || !errors.As(err, &ce) || !strings.HasPrefix(ce.Field, "kdf.") {
			return vaultError(err, dir)
		}
	}
	if recovery {
		rk := secretSource{passfile: *recoveryFile}
		key, err := rk.read("Recovery key: ")
		if err != nil {
			return err
		}
		defer clear(key)
		// Check the key before asking for a new password, and say when the
		// config was altered: the reset replaces what was.
		version := keys.Version
		switch v, err := keys.OpenWithRecoveryKey(dir, key); {
		case errors.Is(err, keys.ErrTampered):
			warnf("%s: %v; the reset writes a fresh salt, KDF settings and password wrap", dir, err)
		case err != nil:
			return vaultError(err, dir)
		default:
			version = v.Config().Version
			v.Wipe()
		}
		pw, err := nw.readNew("New password: ")
		if err != nil {
			return err
		}
		defer clear(pw)
		if err := keys.ResetPassword(dir, key, pw); err != nil {
			return vaultError(err, dir)
		}
		return passwdDone(dir, "Password reset", version)
	}
	oldPw, err := old.read("Current password: ")
	if err != nil {
		return err
	}
	defer clear(oldPw)
	// Check the old password before asking for a new one.
	v, err := keys.Open(dir, oldPw)
	if err != nil {
		return vaultError(err, dir)
	}
	version := v.Config().Version
	v.Wipe()
	pw, err := nw.readNew("New password: ")
	if err != nil {
		return err
	}
	defer clear(pw)
	if err := keys.ChangePassword(dir, oldPw, pw); err != nil {
		return vaultError(err, dir)
	}
	return passwdDone(dir, "Password changed", version)
}

// passwdDone reports a password change: the KDF now in use, and an upgrade
// of the config from version 1.
func passwdDone(dir, what string, before int) error {
	cfg, err := keys.Load(dir)
	if err != nil {
		return vaultError(err, dir)
	}
	fmt.Fprintf(os.Stderr, "%s (Argon2id, %d passes, %d MiB, a fresh salt).\n", what, cfg.KDF.Time, cfg.KDF.MemoryKiB>>10)
	if before < cfg.Version {
		fmt.Fprintf(os.Stderr, "The vault config is now format %d: new files get keys of their own and its KDF settings are authenticated. "+
			"Files already written stay as they are. A cryptpt older than this one cannot open the vault any more.\n", cfg.Version)
	}
	return nil
}
