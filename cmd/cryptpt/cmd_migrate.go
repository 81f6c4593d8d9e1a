package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"syscall"

	"cryptpt/config"
	"cryptpt/fs"

	"golang.org/x/sys/unix"
)

// migration is one entry whose stored mode differs from the policy.
type migration struct {
	path, rel string
	want      string
	size      int64
}

func runMigrate(args []string) error {
	fl := newFlags("migrate", "migrate [--dry-run] [--config C] MOUNTPOINT")
	dryRun := fl.Bool("dry-run", false, "only list what would be converted")
	cfgPath := fl.String("config", "", "policy from `FILE` (default $XDG_CONFIG_HOME/cryptpt/config.toml)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "migrate takes one argument, the mountpoint")
	}
	mp, _ := filepath.Abs(pos[0])
	if m, _ := fs.FindMount(mp); m != mp {
		return fail("mount the vault first; migrate works through the mount", "%s is not a cryptpt mount", mp)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	todo, err := planMigration(mp, cfg.Policy)
	if err != nil {
		return err
	}
	var total int64
	for _, m := range todo {
		total += m.size
	}
	if len(todo) == 0 {
		fmt.Println("Nothing to migrate: every entry is stored as the policy says.")
		return nil
	}
	if *dryRun {
		for _, m := range todo {
			fmt.Printf("would store %s: /%s (%s)\n", m.want, m.rel, humanBytes(m.size))
		}
		fmt.Printf("%d entries, %s to convert. Run without --dry-run to convert them.\n", len(todo), humanBytes(total))
		return nil
	}
	bar := newProgressBar("migrate")
	bar.setTotal(total, int64(len(todo)))
	bar.update(0, 0)
	var done int64
	var converted, skipped int
	for _, m := range todo {
		err := unix.Setxattr(filepath.Dir(m.path), fs.MigrateXattr, []byte(m.want+"\x00"+filepath.Base(m.path)), 0)
		done += m.size
		bar.update(done, int64(converted+skipped+1))
		switch {
		case err == nil:
			converted++
			bar.println(fmt.Sprintf("stored %s: /%s", m.want, m.rel))
		case errors.Is(err, syscall.EBUSY):
			skipped++
			bar.println(fmt.Sprintf("skipped /%s: it is open; close it and run migrate again", m.rel))
		case errors.Is(err, syscall.EMLINK):
			skipped++
			bar.println(fmt.Sprintf("skipped /%s: it has several hard links", m.rel))
		default:
			skipped++
			bar.println(fmt.Sprintf("failed /%s: %v", m.rel, err))
		}
	}
	bar.done()
	fmt.Printf("Converted %d entries (%s); %d left as they were.\n", converted, humanBytes(total), skipped)
	if skipped > 0 {
		return &userError{code: exitError}
	}
	return nil
}

// planMigration walks the mount top-down and lists entries whose stored
// mode differs from the policy. Directories come before what they hold.
func planMigration(mp string, policy *config.Policy) ([]migration, error) {
	var todo []migration
	buf := make([]byte, 16)
	err := filepath.WalkDir(mp, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == mp {
			return nil
		}
		rel, _ := filepath.Rel(mp, p)
		rel = filepath.ToSlash(rel)
		n, err := unix.Lgetxattr(p, fs.ModeXattr, buf)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		want := "encrypted"
		if policy.Decide(rel, d.IsDir()).Plaintext {
			want = "plaintext"
		}
		if string(buf[:n]) != want {
			var size int64
			if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
				size = info.Size()
			}
			todo = append(todo, migration{path: p, rel: rel, want: want, size: size})
		}
		return nil
	})
	if err != nil {
		return nil, fail("", "cannot walk %s: %v", mp, err)
	}
	return todo, nil
}
