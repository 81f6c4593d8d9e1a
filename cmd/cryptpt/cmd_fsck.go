package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"cryptpt/crypt"
	"cryptpt/fsck"
	"cryptpt/keys"

	"golang.org/x/term"
)

// progressEvery is how often the progress line on a terminal is redrawn.
const progressEvery = 200 * time.Millisecond

func runFsck(args []string) error {
	fl := newFlags("fsck", "fsck [--passfile F | --extpass CMD] [--repair] BACKING")
	var src secretSource
	src.register(fl)
	repair := fl.Bool("repair", false, "move damaged entries, leftover temp files and orphan sidecars into "+fsck.LostFoundName+" at the vault root (never deletes; the vault must not be mounted)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fl, "fsck takes one argument, the vault directory")
	}
	backing, _ := filepath.Abs(pos[0])
	if _, err := keys.Load(backing); err != nil {
		return vaultError(err, backing)
	}
	mounts, err := fsck.MountedAt(backing)
	if err != nil {
		return fail("", "cannot read the mount table: %v", err)
	}
	if len(mounts) > 0 {
		if *repair {
			return fail("unmount it first with \"cryptpt unmount "+mounts[0]+"\"", "vault %s is mounted on %s; --repair needs it unmounted", backing, mounts[0])
		}
		warnf("vault %s is mounted on %s: entries changed while fsck runs may be reported wrongly", backing, mounts[0])
	}
	v, err := src.openVault(backing)
	if err != nil {
		return err
	}
	k, err := crypt.NewKeys(v.Master())
	v.Wipe()
	if err != nil {
		return fail("", "%v", err)
	}

	bar := newProgressBar(term.IsTerminal(int(os.Stderr.Fd())))
	rep, err := fsck.Check(backing, k, fsck.Options{
		Repair: *repair,
		Problem: func(p fsck.Problem) {
			bar.clear()
			fmt.Println(formatProblem(p))
		},
		Moved: func(m fsck.Move) {
			bar.clear()
			fmt.Printf("moved: %s -> %s\n", where(m.Path, "", m.VaultPath), m.To)
		},
		Progress: bar.update,
	})
	bar.clear()
	if err != nil {
		return fail("", "fsck of %s: %v", backing, err)
	}
	fmt.Println(summary(rep))
	if rep.Damaged() == 0 {
		return nil
	}
	hint := "run \"cryptpt fsck --repair " + backing + "\" (unmounted) to move the damaged entries into " + fsck.LostFoundName + "; restore them from a backup"
	if *repair {
		hint = "what could be moved is in " + filepath.Join(backing, fsck.LostFoundName) + " (shown in the mount); restore those files from a backup"
	}
	return &userError{hint: hint, code: exitDamaged}
}

func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cryptpt: warning: "+format+"\n", args...)
}

// formatProblem words one finding on one line:
//
//	damaged: /Documents/report.odt (vault: ~~cXX/~~cYY): block 3 fails authentication
//	damaged: vault ~~cXX/~~cZZ (in /Documents): name fails authentication
//	warning: vault ~~t1234 (in /): leftover temporary file
func formatProblem(p fsck.Problem) string {
	label := "damaged"
	if !p.Kind.Damage() {
		label = "warning"
	}
	return fmt.Sprintf("%s: %s: %s", label, where(p.Path, p.Dir, p.VaultPath), p.Detail)
}

func where(path, dir, vaultPath string) string {
	switch {
	case path != "" && vaultPath == ".":
		return path
	case path != "":
		return fmt.Sprintf("%s (vault: %s)", path, vaultPath)
	case dir != "":
		return fmt.Sprintf("vault %s (in %s)", vaultPath, dir)
	}
	return "vault " + vaultPath
}

func summary(r *fsck.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d directories, %d encrypted files (%s), %d names, %d symlinks, %d xattrs; %d plaintext entries",
		r.Dirs, r.Files, humanBytes(r.Bytes), r.Names, r.Symlinks, r.Xattrs, r.Plaintext)
	fmt.Fprintf(&b, ": %d damaged, %d warnings", r.Damaged(), r.Warnings())
	if len(r.Moves) > 0 {
		fmt.Fprintf(&b, ", %d moved to %s", len(r.Moves), fsck.LostFoundName)
	}
	if r.LostFound > 0 {
		fmt.Fprintf(&b, " (%s holds %d entries from earlier repairs)", fsck.LostFoundName, r.LostFound)
	}
	return b.String()
}

// progressBar draws "files/bytes checked" on one stderr line of a terminal.
type progressBar struct {
	on    bool
	shown bool
	last  time.Time
}

func newProgressBar(on bool) *progressBar { return &progressBar{on: on} }

func (b *progressBar) update(p fsck.Progress) {
	if !b.on || time.Since(b.last) < progressEvery {
		return
	}
	b.last = time.Now()
	fmt.Fprintf(os.Stderr, "\r\033[Kfsck: %d directories, %d files, %s checked", p.Dirs, p.Files, humanBytes(p.Bytes))
	b.shown = true
}

// clear erases the progress line so a report line can be printed.
func (b *progressBar) clear() {
	if b.shown {
		fmt.Fprint(os.Stderr, "\r\033[K")
		b.shown = false
	}
}
