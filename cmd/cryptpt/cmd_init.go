package main

import (
	"errors"
	"flag"
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
	kdf := registerKDFFlags(fl, "the default takes about a second")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	params, err := kdf.params()
	if err != nil {
		return err
	}
	src.newKDF = params
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

// kdfFlags are the --kdf-time and --kdf-memory options of init and home
// init.
type kdfFlags struct{ time, memory *uint64 }

// registerKDFFlags adds --kdf-time and --kdf-memory to fl; timeNote says
// what the default costs.
func registerKDFFlags(fl *flag.FlagSet, timeNote string) kdfFlags {
	return kdfFlags{
		time:   fl.Uint64("kdf-time", uint64(keys.DefaultKDF.Time), "Argon2id passes (advanced; "+timeNote+")"),
		memory: fl.Uint64("kdf-memory", uint64(keys.DefaultKDF.MemoryKiB), "Argon2id memory in `KiB` (advanced)"),
	}
}

// params returns the KDF parameters the flags ask for, or a one-line error
// when one is outside the bounds every vault config is read with (so none
// wraps around in a conversion to 32 bits).
func (k kdfFlags) params() (keys.KDFParams, error) {
	switch t, m := *k.time, *k.memory; {
	case t < keys.MinTime || t > keys.MaxTime:
		return keys.KDFParams{}, fail(fmt.Sprintf("the default is %d", keys.DefaultKDF.Time),
			"--kdf-time %d is out of range: %d to %d passes", t, keys.MinTime, keys.MaxTime)
	case m < keys.MinMemoryKiB || m > keys.MaxMemoryKiB:
		return keys.KDFParams{}, fail(fmt.Sprintf("the default is %d (%d MiB)", keys.DefaultKDF.MemoryKiB, keys.DefaultKDF.MemoryKiB>>10),
			"--kdf-memory %d is out of range: %d (%d MiB) to %d (%d GiB) KiB", m, keys.MinMemoryKiB, keys.MinMemoryKiB>>10, keys.MaxMemoryKiB, keys.MaxMemoryKiB>>20)
	}
	return keys.KDFParams{Time: uint32(*k.time), MemoryKiB: uint32(*k.memory), Threads: keys.DefaultKDF.Threads}, nil
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
