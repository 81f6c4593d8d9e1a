package main

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"cryptpt/config"
	"cryptpt/fs"
	"cryptpt/keys"

	"golang.org/x/sys/unix"
)

// homePolicy is the policy "home init" writes, with a comment on each choice.
//
//go:embed home-policy.toml
var homePolicy []byte

const homeUsage = `Usage:
  cryptpt home init    [--passfile F | --extpass CMD] [--keep-originals] USER
  cryptpt home abort   USER
  cryptpt home mount   [--passfile F | --extpass CMD] USER
  cryptpt home unmount USER
  cryptpt home pam     (run by pam_exec: PAM_TYPE and PAM_USER from the environment)

An encrypted home directory (run as root). "init" makes the vault of USER in
/home/.cryptpt/USER, writes the home policy /home/.cryptpt/USER.toml and moves
the files of the home into the vault, verified, resumable after a kill (run
"init" again) and undone by "abort". The vault password should be the login
password: then "pam-auth-update --enable cryptpt" mounts the vault over the
home at login and unmounts it when the last session ends. More: %s.
`

func runHome(args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(os.Stderr, homeUsage, docRef("home.md"))
		return &userError{code: exitUsage}
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprintf(os.Stderr, homeUsage, docRef("home.md"))
		return errHelp
	case "init":
		return runHomeInit(args[1:])
	case "abort":
		return runHomeAbort(args[1:])
	case "mount":
		return runHomeMount(args[1:])
	case "unmount", "umount":
		return runHomeUnmount(args[1:])
	case "pam":
		return runHomePAM(args[1:])
	}
	return &userError{msg: fmt.Sprintf("unknown home command %q", args[0]), hint: "run \"cryptpt home --help\" for the list", code: exitUsage}
}

// homeLayout names the files of one user's encrypted home. All but the home
// itself live in a root-owned directory beside the homes (/home/.cryptpt), on
// the same filesystem, so the originals can be renamed out of the way.
type homeLayout struct {
	user     *user.User
	uid, gid int
	home     string // the home directory, the mountpoint once encrypted
	base     string // /home/.cryptpt
	vault    string // base/USER: the vault, owned by the user, 0700
	policy   string // base/USER.toml: the home policy, owned by the user
	state    string // base/USER.state: the journal of a running init, root's
	staging  string // base/USER.mnt: where init mounts the vault while copying
	orig     string // base/USER.orig: the original home, between swap and removal
	log      string // base/USER.log: the daemon's log where there is no syslog
	sessions string // /run/cryptpt-home/USER.sessions: the PAM sessions of USER
}

func lookupHome(name string) (*homeLayout, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fail("", "no user %q: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 {
		return nil, fail("", "root's home cannot be an encrypted home")
	}
	home := filepath.Clean(u.HomeDir)
	if !filepath.IsAbs(home) || home == "/" {
		return nil, fail("", "user %s has home directory %q, which cannot be an encrypted home", name, u.HomeDir)
	}
	base := filepath.Join(filepath.Dir(home), ".cryptpt")
	return &homeLayout{
		user: u, uid: uid, gid: gid, home: home, base: base,
		vault:    filepath.Join(base, name),
		policy:   filepath.Join(base, name+".toml"),
		state:    filepath.Join(base, name+".state"),
		staging:  filepath.Join(base, name+".mnt"),
		orig:     filepath.Join(base, name+".orig"),
		log:      filepath.Join(base, name+".log"),
		sessions: filepath.Join(homeRunDir, name+".sessions"),
	}, nil
}

// homeRunDir holds the session lists (tmpfs: gone at reboot, as sessions are).
const homeRunDir = "/run/cryptpt-home"

func requireRoot(what string) error {
	if os.Geteuid() != 0 {
		return fail("run it with sudo", "%s needs root", what)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// homeUserArg parses a home subcommand's flags and its one USER argument.
func homeUserArg(fl interface {
	Name() string
}, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", &userError{msg: fl.Name() + " takes one argument, the user name", hint: "run \"cryptpt " + fl.Name() + " --help\" for its usage", code: exitUsage}
	}
	return pos[0], nil
}

func runHomeInit(args []string) error {
	fl := newFlags("home init", "home init [--passfile F | --extpass CMD] [--keep-originals] USER")
	var src secretSource
	src.register(fl)
	keep := fl.Bool("keep-originals", false, "keep the original (plaintext) home in /home/.cryptpt/USER.orig instead of deleting it at the end")
	kdf := registerKDFFlags(fl, "the default takes about a second at each login")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	params, err := kdf.params()
	if err != nil {
		return err
	}
	name, err := homeUserArg(fl, pos)
	if err != nil {
		return err
	}
	if err := requireRoot("home init"); err != nil {
		return err
	}
	h, err := lookupHome(name)
	if err != nil {
		return err
	}
	if pid := userProcess(h.uid); pid > 0 {
		return fail("log "+name+" out (and stop their services) first: files changing during the move could be lost", "%s has running processes (pid %d)", name, pid)
	}
	resume := exists(h.state)
	if !resume && exists(h.vault) {
		return fail("\"cryptpt home abort "+name+"\" removes an unfinished one", "%s already has an encrypted home (%s)", name, h.vault)
	}
	if resume {
		j, _, err := readJournal(h.state)
		if err != nil {
			return fail("", "cannot read the journal %s: %v", h.state, err)
		}
		if j.phase == phaseRemove {
			// Past the point of no return: the copy is done and
			// verified, some originals are gone. Only finish.
			return finishHomeInit(h, nil, *keep, true)
		}
	}
	if err := checkHomeDir(h, resume); err != nil {
		return err
	}

	var master *[32]byte
	if resume {
		v, err := src.openVault(h.vault)
		if err != nil {
			return err
		}
		defer v.Wipe()
		master = v.Master()
		fmt.Fprintf(os.Stderr, "Resuming the move of %s into %s.\n", h.home, h.vault)
	} else {
		if err := checkFreeSpace(h, nil); err != nil {
			return err
		}
		pw, err := src.readNew("Password of " + name + "'s home (use their login password, so it unlocks at login): ")
		if err != nil {
			return err
		}
		defer clear(pw)
		m, recovery, err := createHomeVault(h, pw, params)
		if err != nil {
			return err
		}
		defer clear(m[:])
		master = &m
		fmt.Printf("Recovery key of %s's home (shown only now; it resets a lost password: write it down and keep it safe):\n\n    %s\n\n", name, recovery)
	}
	return finishHomeInit(h, master, *keep, resume)
}

// finishHomeInit runs the rest of "home init" from where the journal says
// it stopped: the copy (master is needed only there), the swap, the removal
// of the originals. resume says whether an earlier run made the vault.
func finishHomeInit(h *homeLayout, master *[32]byte, keep, resume bool) error {
	name := h.user.Username
	j, err := openJournal(h.state)
	if err != nil {
		return fail("", "cannot open the journal %s: %v", h.state, err)
	}
	defer j.close()

	if j.phase < phaseSwap {
		if resume {
			if err := checkFreeSpace(h, j); err != nil {
				return err
			}
		}
		if err := copyHome(h, j, master); err != nil {
			return err
		}
		if err := j.setPhase(phaseSwap); err != nil {
			return fail("", "cannot write the journal %s: %v", h.state, err)
		}
	}
	if j.phase == phaseRemove {
		fmt.Fprintf(os.Stderr, "Finishing an init that was stopped while it removed the originals of %s (every file is in the vault, verified).\n", name)
		if keep {
			fmt.Fprintf(os.Stderr, "--keep-originals comes too late: part of them is deleted already.\n")
		}
		keep = false
	}
	if err := swapHome(h, j, keep); err != nil {
		return err
	}
	j.close()
	if err := os.Remove(h.state); err != nil {
		return fail("", "cannot remove the journal %s: %v", h.state, err)
	}
	syncDir(h.base)
	os.Remove(h.staging)
	fmt.Fprintf(os.Stderr, "%s's home is encrypted in %s; %s is now an empty mountpoint.\n", name, h.vault, h.home)
	if keep {
		fmt.Fprintf(os.Stderr, "The original files are in %s: delete them (rm -rf) once you have checked the encrypted home.\n", h.orig)
	}
	fmt.Fprintf(os.Stderr, "Unlock at login: pam-auth-update --enable cryptpt (once per machine). By hand: cryptpt home mount %s\n", name)
	return nil
}

// checkHomeDir checks that the home is a directory owned by the user and not
// mounted; during the swap phase of a resumed init it may be missing.
func checkHomeDir(h *homeLayout, resume bool) error {
	st, err := os.Lstat(h.home)
	if err != nil {
		if resume && errors.Is(err, os.ErrNotExist) && exists(h.orig) {
			return nil
		}
		return fail("", "home directory %s: %v", h.home, err)
	}
	if !st.IsDir() {
		return fail("", "home %s is not a directory", h.home)
	}
	if m, _ := fs.IsMountpoint(h.home); m {
		return fail("", "%s is a mount point", h.home)
	}
	var hs, bs syscall.Stat_t
	if err := syscall.Stat(filepath.Dir(h.home), &bs); err == nil && syscall.Stat(h.home, &hs) == nil && hs.Dev != bs.Dev {
		return fail("", "%s is on another filesystem than %s: cryptpt home needs them on one", h.home, filepath.Dir(h.home))
	}
	return nil
}

// createHomeVault makes the vault, the policy and the staging mountpoint.
func createHomeVault(h *homeLayout, pw []byte, params keys.KDFParams) ([32]byte, string, error) {
	var none [32]byte
	if err := os.MkdirAll(h.base, 0o711); err != nil {
		return none, "", fail("", "cannot create %s: %v", h.base, err)
	}
	os.Chmod(h.base, 0o711)
	if err := os.Mkdir(h.vault, 0o700); err != nil {
		return none, "", fail("", "cannot create %s: %v", h.vault, err)
	}
	master, recovery, err := keys.Create(h.vault, pw, params)
	if err != nil {
		os.RemoveAll(h.vault)
		return none, "", vaultError(err, h.vault)
	}
	if err := fs.InitLayout(h.vault); err != nil {
		clear(master[:])
		os.RemoveAll(h.vault)
		return none, "", fail("", "cannot finish the vault layout in %s: %v", h.vault, err)
	}
	if err := chownTree(h.vault, h.uid, h.gid); err != nil {
		clear(master[:])
		os.RemoveAll(h.vault)
		return none, "", fail("", "cannot give %s to %s: %v", h.vault, h.user.Username, err)
	}
	if err := writeOwned(h.policy, homePolicy, 0o644, h.uid, h.gid); err != nil {
		clear(master[:])
		os.RemoveAll(h.vault)
		return none, "", fail("", "cannot write the policy %s: %v", h.policy, err)
	}
	return master, recovery, nil
}

func writeOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// userProcess returns the pid of a process running as uid, or 0.
func userProcess(uid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
				if f[1] == strconv.Itoa(uid) {
					return pid
				}
				break
			}
		}
	}
	return 0
}

// checkFreeSpace refuses to start when the filesystem of the vault cannot
// hold a second copy of the home (the originals are deleted only at the end).
// j, if not nil, says what is copied already.
func checkFreeSpace(h *homeLayout, j *journal) error {
	need, _, err := homeSize(h.home, j)
	if err != nil {
		return fail("", "cannot measure %s: %v", h.home, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(h.home), &sfs); err != nil {
		return fail("", "statfs %s: %v", filepath.Dir(h.home), err)
	}
	avail := int64(sfs.Bavail) * int64(sfs.Bsize)
	if need > avail {
		return fail("free space on the filesystem of "+filepath.Dir(h.home)+", or move big plaintext-to-be directories elsewhere first",
			"not enough free space: moving %s needs %s, %s is free", h.home, homeBytes(need), homeBytes(avail))
	}
	return nil
}

// homeSize estimates the space the encrypted copy of home needs: each file's
// size with the encryption overhead (a header and 16 bytes per 4 KiB block,
// rounded up to whole blocks), plus a block per directory and symlink and a
// margin.
func homeSize(home string, j *journal) (need int64, files int, err error) {
	const block = 4096
	err = filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(home, p)
		if j != nil && j.done(rel, fi) {
			return nil
		}
		switch {
		case fi.Mode().IsRegular():
			size := fi.Size()
			size += 64 + size/block*16 + 16
			need += (size + block - 1) / block * block
			files++
		default:
			need += block
		}
		return nil
	})
	return need + 16<<20, files, err
}

func homeBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// swapHome moves the original home out of the way, leaves an empty
// directory with the same owner and mode as the mountpoint, and removes the
// originals unless keep. Each step can be redone after a kill. Before the
// first original is deleted the journal records "phase remove", synced:
// from then on abort refuses and a new init only finishes the removal.
func swapHome(h *homeLayout, j *journal, keep bool) error {
	if j.phase < phaseRemove {
		if !exists(h.orig) {
			if err := os.Rename(h.home, h.orig); err != nil {
				return fail("", "cannot move %s to %s: %v", h.home, h.orig, err)
			}
			syncDir(filepath.Dir(h.home))
		}
		if !exists(h.home) {
			st, err := os.Lstat(h.orig)
			if err != nil {
				return fail("", "%v", err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if err := os.Mkdir(h.home, 0o700); err != nil {
				return fail("", "cannot create the mountpoint %s: %v", h.home, err)
			}
			os.Chown(h.home, int(sys.Uid), int(sys.Gid))
			os.Chmod(h.home, st.Mode().Perm())
			syncDir(filepath.Dir(h.home))
		}
		testKill("swap", 0)
		if keep {
			return nil
		}
		if err := j.setPhase(phaseRemove); err != nil {
			return fail("", "cannot write the journal %s: %v", h.state, err)
		}
	}
	if err := removeOriginals(h.orig); err != nil {
		return fail("run \"cryptpt home init "+h.user.Username+"\" again to finish", "cannot remove the originals in %s: %v", h.orig, err)
	}
	syncDir(h.base)
	return nil
}

// removeOriginals deletes the original home, one entry of its top directory
// at a time (the tests kill it in between).
func removeOriginals(orig string) error {
	ents, err := os.ReadDir(orig)
	if errors.Is(err, os.ErrNotExist) {
		return nil // removed before a kill that came before the journal's end
	}
	if err != nil {
		return err
	}
	for i, e := range ents {
		if err := os.RemoveAll(filepath.Join(orig, e.Name())); err != nil {
			return err
		}
		testKill("remove", i+1)
	}
	return os.Remove(orig)
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

func runHomeAbort(args []string) error {
	fl := newFlags("home abort", "home abort USER")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	name, err := homeUserArg(fl, pos)
	if err != nil {
		return err
	}
	if err := requireRoot("home abort"); err != nil {
		return err
	}
	h, err := lookupHome(name)
	if err != nil {
		return err
	}
	if !exists(h.state) {
		if exists(h.vault) {
			return fail("the home lives in the vault now; copy it out through \"cryptpt home mount "+name+"\" to undo", "the encrypted home of %s is finished: there is nothing to abort", name)
		}
		return fail("", "%s has no encrypted home being set up", name)
	}
	j, _, err := readJournal(h.state)
	if err != nil {
		return fail("look at it; \"cryptpt home init "+name+"\" again resumes", "cannot read the journal %s: %v", h.state, err)
	}
	if j.phase == phaseRemove {
		// The originals are partly deleted: putting them back and
		// deleting the vault would lose what is gone from them.
		return fail("run \"cryptpt home init "+name+"\" to finish; then the home lives in the vault (mount it and copy the files out to undo)",
			"too late to abort: init of %s was removing the originals (every file is in the vault, verified)", name)
	}
	if m, _ := fs.FindMount(h.staging); m == h.staging {
		if err := unix.Unmount(h.staging, 0); err != nil {
			unix.Unmount(h.staging, unix.MNT_DETACH)
		}
	}
	if exists(h.orig) {
		// The swap had begun: put the original home back.
		if m, _ := fs.IsMountpoint(h.home); m {
			return fail("run \"cryptpt home unmount "+name+"\" first", "%s is mounted", h.home)
		}
		if exists(h.home) {
			if err := os.Remove(h.home); err != nil {
				return fail("", "cannot remove the empty mountpoint %s to put the original back: %v", h.home, err)
			}
		}
		if err := os.Rename(h.orig, h.home); err != nil {
			return fail("", "cannot move %s back to %s: %v", h.orig, h.home, err)
		}
		syncDir(filepath.Dir(h.home))
	}
	for _, p := range []string{h.vault, h.policy, h.staging, h.log} {
		if err := os.RemoveAll(p); err != nil {
			return fail("", "cannot remove %s: %v", p, err)
		}
	}
	os.Remove(h.state)
	os.Remove(h.base) // only if empty
	fmt.Fprintf(os.Stderr, "Aborted: %s is as it was, the vault is removed.\n", h.home)
	return nil
}

// homeConfig loads the home policy.
func homeConfig(h *homeLayout) (*config.Config, error) {
	cfg, err := config.Load(h.policy)
	if err != nil {
		var pe *config.ParseError
		if errors.As(err, &pe) {
			return nil, fail("", "%v", pe)
		}
		return nil, fail("", "cannot read the home policy: %v", err)
	}
	return cfg, nil
}
