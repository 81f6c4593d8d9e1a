package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"cryptpt/config"
	"cryptpt/fs"
	"cryptpt/internal/control"

	"golang.org/x/sys/unix"
)

// migration is one entry whose stored mode differs from the policy.
type migration struct {
	path, rel string
	want      string
	size      int64
	twin      bool // stored as the policy says, and also in the other form
}

func runMigrate(args []string) error {
	fl := newFlags("migrate", "migrate [--dry-run] [--config C] MOUNTPOINT")
	dryRun := fl.Bool("dry-run", false, "only list what would be converted")
	cfgPath := fl.String("config", "", "check that the daemon runs the policy of `FILE` (the daemon's own policy always decides; \"cryptpt reload\" changes it)")
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
	daemon, policy, err := daemonPolicy(mp, *cfgPath)
	if err != nil {
		return err
	}
	defer daemon.Close()
	todo, err := planMigration(mp, policy)
	if err != nil {
		return err
	}
	todo, err = addTwins(daemon, mp, policy, todo)
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
	var converted, skipped, encrypted int
	for _, m := range todo {
		res, err := daemon.Migrate(m.rel, func(inFile int64) {
			bar.update(done+min(inFile, m.size), int64(converted+skipped))
		})
		done += m.size
		bar.update(done, int64(converted+skipped+1))
		switch {
		case err == nil && m.twin:
			converted++
			bar.println(fmt.Sprintf("removed the stale %s copy of /%s (an interrupted migrate's)", otherMode(res.To), m.rel))
		case err == nil:
			converted++
			if res.Converted && res.To == fs.ModeEncrypted {
				encrypted++
			}
			bar.println(fmt.Sprintf("stored %s: /%s", res.To, m.rel))
		case m.twin && errors.Is(err, syscall.EEXIST):
			skipped++
			bar.println(fmt.Sprintf("left /%s: it is stored in both forms with different content; see the daemon's log", m.rel))
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
	if encrypted > 0 {
		fmt.Printf("Note: the old plaintext of the %d entries now encrypted may still be recoverable from the disk:\n", encrypted)
		fmt.Printf("its blocks stay until the disk reuses them, and in snapshots, backups, a sync service's\n")
		fmt.Printf("history and an SSD's spare blocks. Data that must never have been plaintext needs those\n")
		fmt.Printf("wiped too (\"Old plaintext after migrate\" in %s).\n", docRef("threat-model.md"))
	}
	if skipped > 0 {
		return &userError{code: exitError}
	}
	return nil
}

// daemonPolicy connects to the daemon of mp and returns its running policy,
// the one it converts toward. With cfgPath, it first checks that the file's
// policy is that one.
func daemonPolicy(mp, cfgPath string) (*control.Client, *config.Policy, error) {
	c, err := dialDaemon(mp)
	if err != nil {
		return nil, nil, err
	}
	st, err := c.Status()
	if err != nil {
		c.Close()
		return nil, nil, fail("", "cannot ask the daemon of %s: %v", mp, err)
	}
	policy, err := config.NewPolicy(st.Policy)
	if err != nil {
		c.Close()
		return nil, nil, fail("", "the daemon of %s sent a policy that does not compile: %v", mp, err)
	}
	if cfgPath != "" {
		cfg, err := loadConfig(cfgPath)
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		if !slices.Equal(patterns(cfg.Policy), st.Policy) {
			c.Close()
			return nil, nil, fail("run \"cryptpt reload "+mp+"\" first, so the daemon uses it", "the daemon of %s runs another policy than %s", mp, cfg.File)
		}
	}
	return c, policy, nil
}

// addTwins adds the entries that the walk found stored in both forms (the
// daemon lists them in its status), so that migrate removes the stale copy.
func addTwins(daemon *control.Client, mp string, policy *config.Policy, todo []migration) ([]migration, error) {
	st, err := daemon.Status()
	if err != nil {
		return nil, fail("", "cannot ask the daemon of %s: %v", mp, err)
	}
	planned := map[string]bool{}
	for _, m := range todo {
		planned[m.rel] = true
	}
	for _, rel := range st.Twins {
		if planned[rel] {
			continue
		}
		p := filepath.Join(mp, filepath.FromSlash(rel))
		info, err := os.Lstat(p)
		if err != nil {
			continue
		}
		want := fs.ModeEncrypted
		if policy.Decide(rel, info.IsDir()).Plaintext {
			want = fs.ModePlaintext
		}
		todo = append(todo, migration{path: p, rel: rel, want: want, twin: true})
	}
	return todo, nil
}

func otherMode(mode string) string {
	if mode == fs.ModeEncrypted {
		return fs.ModePlaintext
	}
	return fs.ModeEncrypted
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

// docRef names where a user finds cryptpt's document name: where make
// install put it (../share/doc/cryptpt/ from this program, as PREFIX/bin
// and PREFIX/share/doc/cryptpt are, else the default PREFIX /usr/local), or
// where it comes from when it is not installed.
func docRef(name string) string {
	var dirs []string
	if self, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(self), "..", "share", "doc", "cryptpt"))
	}
	dirs = append(dirs, "/usr/local/share/doc/cryptpt")
	for _, d := range dirs {
		if p := filepath.Join(d, name); exists(p) {
			return filepath.Clean(p)
		}
	}
	return name + " of cryptpt's documentation (/usr/local/share/doc/cryptpt after make install)"
}
