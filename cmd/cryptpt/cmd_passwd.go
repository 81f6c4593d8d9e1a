package main

import (
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
	if _, err := keys.Load(dir); err != nil {
		return vaultError(err, dir)
	}
	if *useRecovery || *recoveryFile != "" {
		rk := secretSource{passfile: *recoveryFile}
		key, err := rk.read("Recovery key: ")
		if err != nil {
			return err
		}
		// Fail on a mistyped key before asking for a new password.
		if _, err := keys.ParseRecoveryKey(strings.TrimSpace(string(key))); err != nil {
			return vaultError(err, dir)
		}
		pw, err := nw.readNew("New password: ")
		if err != nil {
			return err
		}
		defer clear(pw)
		if err := keys.ResetPassword(dir, string(key), pw); err != nil {
			return vaultError(err, dir)
		}
		os.Stderr.WriteString("Password reset.\n")
		return nil
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
	v.Wipe()
	pw, err := nw.readNew("New password: ")
	if err != nil {
		return err
	}
	defer clear(pw)
	if err := keys.ChangePassword(dir, oldPw, pw); err != nil {
		return vaultError(err, dir)
	}
	os.Stderr.WriteString("Password changed.\n")
	return nil
}
