package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"cryptpt/fs"
	"cryptpt/keys"
)

func runInit(args []string) error {
	fl := newFlags("init", "init [--passfile F | --extpass CMD] BACKING")
	var src secretSource
	src.register(fl)
	kdfTime := fl.Uint("kdf-time", uint(keys.DefaultKDF.Time), "Argon2id passes (advanced; the default takes about a second)")
	kdfMem := fl.Uint("kdf-memory", uint(keys.DefaultKDF.MemoryKiB), "Argon2id memory in `KiB` (advanced)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "init takes one argument, the vault directory")
	}
	dir := pos[0]
	if err := prepareVaultDir(dir); err != nil {
		return err
	}
	pw, err := src.readNew("New password: ")
	if err != nil {
		return err
	}
	defer clear(pw)
	params := keys.DefaultKDF
	params.Time, params.MemoryKiB = uint32(*kdfTime), uint32(*kdfMem)
	master, recovery, err := keys.Create(dir, pw, params)
	clear(master[:])
	if err != nil {
		return vaultError(err, dir)
	}
	if err := fs.InitLayout(dir); err != nil {
		return fail("", "cannot finish the vault layout in %s: %v", dir, err)
	}
	fmt.Printf("Created a vault in %s.\n\n", dir)
	fmt.Printf("Recovery key (shown only now; it resets a lost password, so write it down and keep it safe):\n\n    %s\n\n", recovery)
	fmt.Printf("Mount it with:  cryptpt mount %s MOUNTPOINT\n", dir)
	return nil
}

// prepareVaultDir creates dir, or accepts an existing empty one.
func prepareVaultDir(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fail("", "cannot create %s: %v", dir, err)
		}
		return nil
	}
	if err != nil {
		return fail("", "%v", err)
	}
	if !st.IsDir() {
		return fail("", "%s is not a directory", dir)
	}
	if _, err := keys.Load(dir); err == nil || !errors.Is(err, keys.ErrNotVault) {
		return fail("", "%s already holds a vault", dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fail("", "%v", err)
	}
	defer f.Close()
	if names, err := f.Readdirnames(1); len(names) > 0 {
		return fail("init needs an empty or missing directory, so nothing in it is left unencrypted", "%s is not empty", dir)
	} else if err != nil && err != io.EOF {
		return fail("", "%v", err)
	}
	return nil
}
