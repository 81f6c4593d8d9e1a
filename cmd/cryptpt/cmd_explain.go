package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	saidNoFile := false
	running := map[string]*config.Policy{}
	for _, p := range pos {
		policy := cfg.Policy
		if mp := mountOf(p); mp != "" {
			// A path in a live mount: the daemon's policy decides.
			if _, ok := running[mp]; !ok {
				running[mp] = runningPolicy(mp, cfg)
			}
			if running[mp] != nil {
				policy = running[mp]
			}
		}
		if policy == cfg.Policy && cfg.File == "" && !saidNoFile {
			fmt.Println("(no config file: the policy is empty, so everything new is encrypted)")
			saidNoFile = true
		}
		explainOne(cfg, policy, p)
	}
	return nil
}

// mountOf returns the cryptpt mount p lies in, or "".
func mountOf(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return ""
	}
	mp, _ := fs.FindMount(a)
	return mp
}

// runningPolicy asks the daemon of mp for the policy it runs and says, in
// one line, where it comes from and whether the file on disk differs. It
// returns the file's policy when that is the same (its rules know their
// file:line:col), and nil when the daemon cannot be asked.
func runningPolicy(mp string, cfg *config.Config) *config.Policy {
	c, err := dialDaemon(mp)
	if err != nil {
		var ue *userError
		if errors.As(err, &ue) {
			err = errors.New(ue.msg)
		}
		fmt.Printf("(%v; explaining with the config file instead)\n", err)
		return nil
	}
	defer c.Close()
	st, err := c.Status()
	if err != nil {
		fmt.Printf("(cannot ask the daemon of %s: %v; explaining with the config file instead)\n", mp, err)
		return nil
	}
	policy, err := config.NewPolicy(st.Policy)
	if err != nil {
		fmt.Printf("(the daemon of %s sent a policy that does not compile: %v)\n", mp, err)
		return nil
	}
	if st.ConfigFile == "" || st.ConfigMissing {
		fmt.Printf("(the daemon of %s runs without a config file: %s)\n", mp, policyLine(st.Policy))
	}
	if st.ConfigFile == "" {
		return policy
	}
	disk, err := config.Load(st.ConfigFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !st.ConfigMissing {
			fmt.Printf("(the daemon of %s runs the policy of %s, which is gone from the disk)\n", mp, st.ConfigFile)
		}
	case err != nil:
		fmt.Printf("(the daemon of %s runs the policy it read from %s; the file on disk is now broken: %v)\n", mp, st.ConfigFile, err)
	case !slices.Equal(patterns(disk.Policy), st.Policy):
		fmt.Printf("(the daemon of %s runs %s; %s on disk differs: \"cryptpt reload %s\" puts it in force)\n", mp, policyLine(st.Policy), st.ConfigFile, mp)
	default:
		return disk.Policy
	}
	return policy
}

// explainOne prints the mode a new entry at p would get under policy and
// why, and for an existing entry in a live mount, its stored mode.
func explainOne(cfg *config.Config, policy *config.Policy, p string) {
	rel, abs := policyPath(cfg, p)
	isDir := strings.HasSuffix(p, "/")
	if st, err := os.Stat(abs); err == nil && st.IsDir() {
		isDir = true
	}
	d := policy.Decide(rel, isDir)
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
