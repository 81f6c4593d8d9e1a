package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cryptpt/crypt"
	"cryptpt/fsck"
	"cryptpt/keys"
)

func runFsck(args []string) error {
	fl := newFlags("fsck", "fsck [--passfile F | --extpass CMD] [--repair] BACKING")
	var src secretSource
	src.register(fl)
	repair := fl.Bool("repair", false, "salvage damaged files (bad blocks zeroed, a report of the lost bytes) and set damaged entries aside in "+fsck.LostFoundName+" at the vault root, shown in the mount (never deletes; the vault must not be mounted)")
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

	bar := newProgressBar("fsck")
	rep, err := fsck.Check(backing, k, fsck.Options{
		Repair:        *repair,
		FormatVersion: contentFormat(v.Config().Version),
		Problem: func(p fsck.Problem) {
			bar.println(formatProblem(p))
		},
		Moved: func(m fsck.Move) {
			bar.println(fmt.Sprintf("moved: %s -> %s", where(m.Path, "", m.VaultPath), m.To))
		},
		Salvaged: func(s fsck.Salvage) {
			bar.println(formatSalvage(s))
		},
		Progress: func(p fsck.Progress) {
			bar.setTotal(p.TotalBytes, p.TotalEntries)
			bar.update(p.Bytes, p.Entries)
		},
	})
	bar.done()
	if err != nil {
		return fail("", "fsck of %s: %v", backing, err)
	}
	fmt.Println(summary(rep))
	if rep.Unrepaired() == 0 {
		if len(rep.Salvages)+len(rep.Moves) > 0 {
			fmt.Printf("Repaired: the vault is consistent. See /%s in the mount.\n", fsck.LostFoundName)
		}
		return nil
	}
	hint := "run \"cryptpt fsck --repair " + backing + "\" (unmounted) to salvage damaged files and set damaged entries aside in " + fsck.LostFoundName
	if *repair {
		hint = "what repair could not fix is listed above (a damaged directory IV or xattr value, an unreadable entry); restore it from a backup"
	}
	return &userError{hint: hint, code: exitDamaged}
}

// formatSalvage words a salvaged file on one line:
//
//	salvaged: /Documents/report.odt (vault: ~~cXX/~~cYY) -> /cryptpt-lost+found/report.odt: lost bytes 12288-16383 (4096 bytes); original kept as /cryptpt-lost+found/report.odt.cryptpt-damaged; report /cryptpt-lost+found/report.odt.cryptpt-damage.txt
func formatSalvage(s fsck.Salvage) string {
	var b strings.Builder
	fmt.Fprintf(&b, "salvaged: %s -> ", where(s.Path, "", s.VaultPath))
	if s.Copy != "" {
		b.WriteString(s.Copy)
	} else {
		b.WriteString("nothing readable")
	}
	switch {
	case len(s.Lost) > 0:
		fmt.Fprintf(&b, ": lost %s", fsck.Ranges(s.Lost))
	case s.Cut == 0:
		b.WriteString(": nothing lost")
	}
	if s.Cut > 0 {
		fmt.Fprintf(&b, ": cut %d stored bytes after byte %d", s.Cut, s.Size)
	}
	fmt.Fprintf(&b, "; original kept as %s; report %s", s.Original, s.Report)
	return b.String()
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
	if len(r.Salvages) > 0 {
		fmt.Fprintf(&b, ", %d salvaged", len(r.Salvages))
	}
	if len(r.Moves) > 0 {
		fmt.Fprintf(&b, ", %d moved to %s", len(r.Moves), fsck.LostFoundName)
	}
	if n := r.Damaged() - r.Unrepaired(); n > 0 {
		fmt.Fprintf(&b, ", %d repaired", n)
	}
	if r.LostFound > 0 {
		fmt.Fprintf(&b, " (%s holds %d entries from earlier repairs)", fsck.LostFoundName, r.LostFound)
	}
	return b.String()
}
