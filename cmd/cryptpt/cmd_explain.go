package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cryptpt/config"
	"cryptpt/fs"

	"golang.org/x/sys/unix"
)

func runExplain(args []string) error {
	fl := newFlags("explain", "explain [--config C] PATH...")
	cfgPath := fl.String("config", "", "policy from `FILE` (default $XDG_CONFIG_HOME/cryptpt/config.toml)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError(fl, "explain needs at least one PATH")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.File == "" {
		fmt.Println("(no config file: the policy is empty, so everything new is encrypted)")
	}
	for _, p := range pos {
		explainOne(cfg, p)
	}
	return nil
}

// explainOne prints the mode a new entry at p would get and why, and for an
// existing entry in a live mount, its stored mode.
func explainOne(cfg *config.Config, p string) {
	rel, abs := policyPath(cfg, p)
	isDir := strings.HasSuffix(p, "/")
	if st, err := os.Stat(abs); err == nil && st.IsDir() {
		isDir = true
	}
	d := cfg.Policy.Decide(rel, isDir)
	mode, why := "encrypted", "no pattern matches, so the default applies"
	if d.Plaintext {
		mode = "plaintext"
	}
	if d.Rule != nil {
		why = "decided by pattern " + d.Rule.String()
	}
	fmt.Printf("%s: new entries are %s (%s)\n", p, mode, why)
	if abs == "" {
		return
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(abs, fs.ModeXattr, buf); err == nil {
		stored := string(buf[:n])
		note := ""
		if stored != mode {
			note = "; differs from the policy (\"cryptpt migrate\" converts it)"
		}
		fmt.Printf("%s: stored %s%s\n", p, stored, note)
	}
}

// policyPath maps p to the path the policy sees: relative to the mount root
// when p lies in a live cryptpt mount (abs is then its path on disk), else
// relative to the configured mountpoint, else taken as already relative.
func policyPath(cfg *config.Config, p string) (rel, abs string) {
	a, err := filepath.Abs(p)
	if err == nil {
		if mp, _ := fs.FindMount(a); mp != "" {
			r, _ := filepath.Rel(mp, a)
			return filepath.ToSlash(r), a
		}
		if cfg.Mountpoint != "" {
			if r, err := filepath.Rel(cfg.Mountpoint, a); err == nil && !strings.HasPrefix(r, "..") {
				return filepath.ToSlash(r), ""
			}
		}
	}
	return strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/"), ""
}
