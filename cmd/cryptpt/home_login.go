package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cryptpt/crypt"
	"cryptpt/fs"
	"cryptpt/keys"

	"golang.org/x/sys/unix"
)

// Login integration. pam_exec runs "cryptpt home pam" (as root) in three
// stacks; PAM_TYPE says which:
//
//   - auth (expose_authtok: the password on stdin): unwrap the vault's key
//     with the login password and keep it (keyFile), for at most keyTimeout
//     unless a session claims it. No mount yet: auth alone
//     (sudo, a screen locker, polkit) must not mount anything.
//   - open_session: mount the vault over the home with the kept key if it is
//     not mounted, and add the session (the PAM application's pid) to
//     /run/cryptpt-home/USER.sessions. The key stays while sessions are open.
//   - close_session: drop the session (and any whose process is gone); when
//     none is left, unmount and forget the key.
//
// A changed login password is picked up at the next authentication while a
// session is open (rewrapAtAuth).
//
// The daemon runs as the user, with no capabilities, mounting through
// fusermount3.

// keyTimeout bounds how long a key unwrapped at auth waits for its session.
const keyTimeout = 2 * time.Minute

// The key unwrapped at auth is kept for the session in /run/cryptpt-home/USER.key
// (tmpfs, root's, 0600 in a 0700 directory): 8 bytes of expiry (Unix
// seconds, big-endian; 0 = while sessions are open), then the 32-byte key.
// It holds nothing the daemon of the mounted home does not hold in memory
// anyway, and is removed when the last session closes. (The kernel keyring
// would be nicer, but from su it answers EACCES for root's user keyring.)
func keyFile(user string) string { return filepath.Join(homeRunDir, user+".key") }

// asRoot makes every id root: a setuid program (su) keeps the real uid of
// its caller, and files the hook makes must be root's.
func asRoot() error {
	if os.Geteuid() != 0 {
		return fail("run it with sudo", "this needs root")
	}
	return syscall.Setresuid(0, 0, 0)
}

// keepKey stores master for user until timeout (0: no expiry).
func keepKey(user string, master *[32]byte, timeout time.Duration) error {
	if err := os.MkdirAll(homeRunDir, 0o700); err != nil {
		return err
	}
	var buf [40]byte
	defer clear(buf[:])
	if timeout > 0 {
		binary.BigEndian.PutUint64(buf[:8], uint64(time.Now().Add(timeout).Unix()))
	}
	copy(buf[8:], master[:])
	tmp := keyFile(user) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(buf[:])
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, keyFile(user))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// keptKey returns the unexpired key kept for user.
func keptKey(user string) (*[32]byte, error) {
	data, err := os.ReadFile(keyFile(user))
	defer clear(data)
	if err != nil {
		return nil, err
	}
	if len(data) != 40 {
		return nil, fmt.Errorf("kept key of %s is damaged", user)
	}
	if exp := int64(binary.BigEndian.Uint64(data[:8])); exp != 0 && time.Now().Unix() > exp {
		forgetKey(user)
		return nil, fmt.Errorf("kept key of %s expired", user)
	}
	var k [32]byte
	copy(k[:], data[8:])
	return &k, nil
}

func forgetKey(user string) { os.Remove(keyFile(user)) }

// keyPinned reports whether a key is kept for user without expiry, that is
// for open sessions.
func keyPinned(user string) bool {
	f, err := os.Open(keyFile(user))
	if err != nil {
		return false
	}
	defer f.Close()
	var exp [8]byte
	n, _ := io.ReadFull(f, exp[:])
	return n == len(exp) && binary.BigEndian.Uint64(exp[:]) == 0
}

// homeReady reports whether h is a finished encrypted home.
func homeReady(h *homeLayout) bool {
	return exists(filepath.Join(h.vault, crypt.VaultConfigName)) && !exists(h.state)
}

func isMounted(dir string) bool {
	m, _ := fs.FindMount(dir)
	return m == dir
}

// mountHome mounts the vault over the home: the daemon runs as the user,
// gets the key over a pipe and answers on another, as "cryptpt mount" does.
// What was written into the home while it was locked is moved aside first
// (moveStray), and note says where.
func mountHome(h *homeLayout, master *[32]byte, note func(format string, a ...any)) error {
	if isMounted(h.home) {
		return nil
	}
	if errors.Is(fs.CheckMountpoint(h.home), fs.ErrMountpointNotEmpty) {
		dir, n, err := moveStray(h)
		if err != nil {
			return fail("move the files out of "+h.home+" (it must be empty to be mounted over), then log in again",
				"cannot move what was written into the locked home %s aside: %v", h.home, err)
		}
		what := fmt.Sprintf("%d entries", n)
		if n == 1 {
			what = "1 entry"
		}
		note("%s written into %s while it was locked (a login without the password, or a failed mount) moved to %s, so that the encrypted home can be mounted over it", what, h.home, dir)
	}
	if err := checkMountpoint(h.home); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fail("", "cannot find my own executable: %v", err)
	}
	args := []string{"mount", "--config", h.policy}
	if _, err := os.Stat("/dev/log"); err != nil {
		// No syslog: log to a file beside the vault (never inside the home).
		f, err := os.OpenFile(h.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			f.Chown(h.uid, h.gid)
			f.Close()
			args = append(args, "--log", h.log)
		}
	}
	args = append(args, "--", h.vault, h.home)
	groups, err := userGroups(h)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = "/"
	cmd.Env = []string{daemonEnv + "=1", "HOME=" + h.home, "USER=" + h.user.Username, "LOGNAME=" + h.user.Username,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if p := os.Getenv("CRYPTPT_PTREG"); p != "" {
		cmd.Env = append(cmd.Env, "CRYPTPT_PTREG="+p) // a helper elsewhere than beside cryptpt
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Credential: &syscall.Credential{Uid: uint32(h.uid), Gid: uint32(h.gid), Groups: groups},
	}
	logHint := "see " + h.log + " or the system log"
	err = startDaemon(cmd, master, logHint)
	var ue *userError
	if errors.As(err, &ue) {
		if ue.hint == "" {
			ue.hint = logHint
		}
		return fail(ue.hint, "mounting the home of %s failed: %s", h.user.Username, ue.msg)
	}
	return err
}

// moveStray moves the entries of the (locked, unmounted) home into a new
// directory base/USER.stray-TIME, which it gives to the user: a session
// that did not unlock the home (su from root, an ssh key, a failed mount)
// writes there, a shell's history at least, and the vault must be mounted
// over an empty directory. Nothing is deleted. The renames stay within one
// filesystem (init checked it) and follow no symlink.
func moveStray(h *homeLayout) (dir string, n int, err error) {
	ents, err := os.ReadDir(h.home)
	if err != nil || len(ents) == 0 {
		return "", 0, err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	for i := 0; ; i++ {
		dir = filepath.Join(h.base, h.user.Username+".stray-"+stamp)
		if i > 0 {
			dir += "." + strconv.Itoa(i)
		}
		if err = os.Mkdir(dir, 0o700); !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", 0, err
	}
	if err := os.Lchown(dir, h.uid, h.gid); err != nil {
		return dir, 0, err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(h.home, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return dir, n, err
		}
		n++
	}
	syncDir(h.home)
	syncDir(h.base)
	return dir, n, nil
}

func userGroups(h *homeLayout) ([]uint32, error) {
	ids, err := h.user.GroupIds()
	if err != nil {
		return nil, fail("", "groups of %s: %v", h.user.Username, err)
	}
	var gs []uint32
	for _, id := range ids {
		if g, err := strconv.Atoi(id); err == nil {
			gs = append(gs, uint32(g))
		}
	}
	return gs, nil
}

// unmountHome unmounts the home, lazily if files are still open under it
// (the daemon then exits when the last one is closed).
func unmountHome(h *homeLayout) (lazy bool, err error) {
	if !isMounted(h.home) {
		return false, nil
	}
	daemon := homeDaemon(h)
	if err := unix.Unmount(h.home, 0); err != nil {
		if !errors.Is(err, unix.EBUSY) {
			return false, err
		}
		return true, unix.Unmount(h.home, unix.MNT_DETACH)
	}
	// Let the daemon finish, so that "unmounted" means the key is gone.
	for i := 0; daemon > 0 && i < 100 && unix.Kill(daemon, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	return false, nil
}

// procUID returns the real uid of process pid, or -1.
func procUID(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			if uid, err := strconv.Atoi(f[1]); err == nil {
				return uid
			}
		}
	}
	return -1
}

// homeDaemon returns the pid of the daemon serving h, or 0.
func homeDaemon(h *homeLayout) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The owner of /proc/PID is root for a process that is not
		// dumpable, as cryptpt's are: read its real uid instead.
		if procUID(pid) != h.uid {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) >= 3 && args[1] == "mount" && slices.Contains(args, h.vault) && slices.Contains(args, h.home) {
			return pid
		}
	}
	return 0
}

func runHomeMount(args []string) error {
	fl := newFlags("home mount", "home mount [--passfile F | --extpass CMD] USER")
	var src secretSource
	src.register(fl)
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	name, err := homeUserArg(fl, pos)
	if err != nil {
		return err
	}
	if err := asRoot(); err != nil {
		return err
	}
	h, err := lookupHome(name)
	if err != nil {
		return err
	}
	if !homeReady(h) {
		return fail("", "%s has no finished encrypted home", name)
	}
	if isMounted(h.home) {
		fmt.Fprintf(os.Stderr, "%s is mounted already.\n", h.home)
		return nil
	}
	v, err := src.openVault(h.vault)
	if err != nil {
		return err
	}
	defer v.Wipe()
	return mountHome(h, v.Master(), func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "cryptpt: note: "+format+"\n", a...)
	})
}

func runHomeUnmount(args []string) error {
	fl := newFlags("home unmount", "home unmount USER")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	name, err := homeUserArg(fl, pos)
	if err != nil {
		return err
	}
	if err := asRoot(); err != nil {
		return err
	}
	h, err := lookupHome(name)
	if err != nil {
		return err
	}
	lazy, err := unmountHome(h)
	if err != nil {
		return fail("", "cannot unmount %s: %v", h.home, err)
	}
	if lazy {
		fmt.Fprintf(os.Stderr, "%s is detached; files still open under it keep the daemon until they are closed.\n", h.home)
	}
	os.Remove(h.sessions)
	forgetKey(name)
	return nil
}

// runHomePAM is the pam_exec hook. It succeeds silently for users without an
// encrypted home. Its messages go to syslog (authpriv), one line each, never
// with the password, and to its stdout, which the profile's pam_exec
// "stdout" option shows to the user.
func runHomePAM(args []string) error {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
		fmt.Fprint(os.Stderr, "Usage: cryptpt home pam\n\nThe pam_exec hook of the pam-auth-update profile \"cryptpt\": PAM_TYPE auth and password read\nthe password on stdin (expose_authtok); open_session mounts the home, close_session of the\nlast session unmounts it. Users without an encrypted home are left alone.\n")
		return errHelp
	}
	if len(args) != 0 {
		return &userError{msg: "home pam takes no arguments (PAM_TYPE and PAM_USER come from pam_exec)", code: exitUsage}
	}
	typ, name := os.Getenv("PAM_TYPE"), os.Getenv("PAM_USER")
	if typ == "" || name == "" {
		return &userError{msg: "home pam is run by pam_exec, which sets PAM_TYPE and PAM_USER", code: exitUsage}
	}
	if err := asRoot(); err != nil {
		return err
	}
	h, err := lookupHome(name)
	if err != nil || !homeReady(h) {
		return nil
	}
	logger, _ := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_NOTICE, "cryptpt")
	logf := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		if logger != nil {
			logger.Notice(msg)
		} else if f, err := os.OpenFile(h.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			// No syslog: the log beside the vault, where the daemon's goes.
			fmt.Fprintf(f, "cryptpt: %s pam %s: %s\n", time.Now().Format("2006/01/02 15:04:05"), typ, msg)
			f.Close()
		}
		// pam_exec's "stdout" option shows this to the user (su, login,
		// a display manager's message area), so that an empty home is
		// never a mystery.
		fmt.Println("cryptpt: " + msg)
	}
	switch typ {
	case "auth":
		pw, err := readAuthtok()
		if err != nil {
			return err
		}
		defer clear(pw)
		v, err := keys.Open(h.vault, pw)
		if errors.Is(err, keys.ErrWrongPassword) {
			return rewrapAtAuth(h, pw, logf)
		}
		if err != nil {
			logf("cannot open the encrypted home %s of %s: %v", h.vault, name, err)
			return &userError{code: exitError}
		}
		defer v.Wipe()
		timeout := keyTimeout
		if keyPinned(name) {
			timeout = 0 // a session holds it (sudo, a screen unlock): keep it so
		}
		if err := keepKey(name, v.Master(), timeout); err != nil {
			logf("cannot keep the key of %s: %v", name, err)
			return &userError{code: exitError}
		}
		return nil
	case "open_session":
		if err := addSession(h); err != nil {
			logf("cannot record the session of %s: %v", name, err)
		}
		k, err := keptKey(name)
		if err != nil {
			if !isMounted(h.home) {
				logf("the encrypted home of %s stays locked: this login gave no password to unlock it (log in with the password, or as root: cryptpt home mount %s)", name, name)
			}
			return nil
		}
		defer clear(k[:])
		keepKey(name, k, 0) // kept while a session is open (password changes)
		if err := mountHome(h, k, logf); err != nil {
			logf("%v", err)
			var ue *userError
			if errors.As(err, &ue) && ue.hint != "" {
				logf("hint: %s", ue.hint)
			}
			return &userError{code: exitError}
		}
		return nil
	case "close_session":
		if left := dropSession(h); left > 0 {
			return nil
		}
		lazy, err := unmountHome(h)
		forgetKey(name)
		os.Remove(h.sessions)
		if err != nil {
			logf("cannot unmount the home of %s: %v", name, err)
			return &userError{code: exitError}
		}
		if lazy {
			logf("the home of %s is detached; open files keep its daemon until they are closed", name)
		}
		return nil
	}
	return nil
}

// rewrapAtAuth handles a login password that does not open the vault. The
// hook runs after the primary module (pam_unix) accepted it, so it is the
// current login password: if a session of the user still holds the key, the
// password was changed during that session (passwd, a desktop's settings),
// and the vault is rewrapped under it now, at the first authentication after
// the change (sudo, the screen locker, the next login). Debian's pam_exec
// hands no password to the password stack (expose_authtok is auth-only in
// Linux-PAM 1.5), so this is where a change is seen.
func rewrapAtAuth(h *homeLayout, pw []byte, logf func(string, ...any)) error {
	k, err := keptKey(h.user.Username)
	if err != nil {
		logf("the login password of %s does not open the encrypted home %s, which stays locked: "+
			"if the password was changed while logged out, run \"cryptpt passwd %s\" with the old one (or --recovery-key)",
			h.user.Username, h.vault, h.vault)
		return &userError{code: exitError}
	}
	defer clear(k[:])
	if err := keys.SetPasswordWithKey(h.vault, k, pw); err != nil {
		logf("cannot rewrap the encrypted home of %s under the new login password: %v", h.user.Username, err)
		return &userError{code: exitError}
	}
	logf("the login password of %s changed: the encrypted home now opens with the new one", h.user.Username)
	return nil
}

// readAuthtok reads the password pam_exec writes on stdin (NUL-terminated).
func readAuthtok() ([]byte, error) {
	buf := make([]byte, 4096)
	n, _ := io.ReadFull(os.Stdin, buf)
	pw := buf[:n]
	if i := bytes.IndexByte(pw, 0); i >= 0 {
		pw = pw[:i]
	}
	pw = firstLine(pw)
	if len(pw) == 0 {
		clear(buf)
		return nil, &userError{code: exitError}
	}
	out := append([]byte(nil), pw...)
	clear(buf)
	return out, nil
}

// The sessions file lists the pids of the PAM applications (login, su, sshd,
// the display manager) holding a session of the user, one a line; the hook's
// parent is that application. A pid whose process is gone (killed without
// close_session) no longer counts.
func addSession(h *homeLayout) error {
	return editSessions(h, func(pids map[int]bool) { pids[os.Getppid()] = true })
}

// dropSession removes this session and returns how many are left.
func dropSession(h *homeLayout) int {
	left := 0
	editSessions(h, func(pids map[int]bool) {
		delete(pids, os.Getppid())
		left = len(pids)
	})
	return left
}

func editSessions(h *homeLayout, edit func(map[int]bool)) error {
	if err := os.MkdirAll(homeRunDir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(h.sessions, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	data, _ := io.ReadAll(f)
	pids := map[int]bool{}
	for _, line := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(line); err == nil && unix.Kill(pid, 0) == nil {
			pids[pid] = true
		}
	}
	edit(pids)
	var b strings.Builder
	for pid := range pids {
		fmt.Fprintf(&b, "%d\n", pid)
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt([]byte(b.String()), 0)
	return err
}
