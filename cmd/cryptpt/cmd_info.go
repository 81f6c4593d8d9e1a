package main

import (
	"fmt"

	"cryptpt/keys"
)

func runInfo(args []string) error {
	fl := newFlags("info", "info BACKING")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "info takes one argument, the vault directory")
	}
	dir := pos[0]
	cfg, err := keys.Load(dir)
	if err != nil {
		return vaultError(err, dir)
	}
	fmt.Printf("vault:          %s\n", dir)
	fmt.Printf("format:         %d (new encrypted files are written in content format %d)\n", cfg.Version, contentFormat(cfg.Version))
	fmt.Printf("password KDF:   argon2id, %d passes, %d MiB, %d threads\n", cfg.KDF.Time, cfg.KDF.MemoryKiB/1024, cfg.KDF.Threads)
	if cfg.KDF.Time < keys.DefaultKDF.Time || cfg.KDF.MemoryKiB < keys.DefaultKDF.MemoryKiB {
		fmt.Printf("                below the default (%d passes, %d MiB): \"cryptpt passwd\" writes the default\n", keys.DefaultKDF.Time, keys.DefaultKDF.MemoryKiB/1024)
	}
	if cfg.Version < keys.Version {
		fmt.Printf("                an older format: \"cryptpt passwd\" upgrades the vault config to format %d, which authenticates\n", keys.Version)
		fmt.Printf("                its KDF settings and gives new files keys of their own (then only this cryptpt or newer\n")
		fmt.Printf("                can open it; files already written stay as they are)\n")
	}
	return nil
}
