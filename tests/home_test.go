package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	cfs "cryptpt/fs"
	"cryptpt/internal/fstest"

	"golang.org/x/sys/unix"
)

// homeUser is a throwaway account with a home directory, made for a test
// (these tests run as root and change /etc/passwd, /home and /run/cryptpt-home;
// each removes what it made).
type homeUser struct {
	name, home, base, pwfile string
	canary                   []byte
}

// newHomeUser creates user name with password pw and a home holding a
// canary file, a plaintext-policy video, nested directories, a symlink, a
// fifo and unusual modes.
func newHomeUser(t *testing.T, name, pw, homeDir string) *homeUser {
	t.Helper()
	fstest.RequireFUSE(t)
	requireRoot(t)
	exec.Command("userdel", "-r", name).Run()
	args := []string{"-m", "-s", "/bin/sh"}
	if homeDir != "" {
		args = append(args, "-d", homeDir)
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	u := &homeUser{name: name, home: "/home/" + name, canary: []byte("canary-" + string(bytesHex(canary(t, 16))))}
	if homeDir != "" {
		u.home = homeDir
	}
	u.base = filepath.Join(filepath.Dir(u.home), ".cryptpt")
	t.Cleanup(func() {
		cryptpt("home", "unmount", name)
		if m, _ := cfs.FindMount(filepath.Join(u.base, name+".mnt")); m != "" {
			unix.Unmount(m, unix.MNT_DETACH)
		}
		exec.Command("pkill", "-KILL", "-u", name).Run()
		exec.Command("userdel", "-r", name).Run()
		os.RemoveAll(u.home)
		for _, suffix := range []string{"", ".toml", ".state", ".mnt", ".orig", ".log"} {
			os.RemoveAll(filepath.Join(u.base, name+suffix))
		}
		stray, _ := filepath.Glob(filepath.Join(u.base, name+".stray-*"))
		for _, p := range stray {
			os.RemoveAll(p)
		}
		os.Remove(u.base)
		os.Remove("/run/cryptpt-home/" + name + ".key")
		os.Remove("/run/cryptpt-home/" + name + ".sessions")
	})
	chpw := exec.Command("chpasswd")
	chpw.Stdin = strings.NewReader(name + ":" + pw + "\n")
	if out, err := chpw.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	u.pwfile = filepath.Join(t.TempDir(), "pw")
	must(t, os.WriteFile(u.pwfile, []byte(pw+"\n"), 0o600))
	video := bytes.Repeat([]byte("plain video frame "), 100000)
	u.asUser(t, `set -e; cd ~
		mkdir -p Videos .ssh docs/deep/er .cache/x
		printf %s "$1" > secret
		printf %s "$1" > docs/deep/er/also-secret
		cat > Videos/film.mkv
		printf 'key\n' > .ssh/id_ed25519; chmod 600 .ssh/id_ed25519; chmod 700 .ssh
		ln -s secret link; mkfifo fifo; : > empty
		touch -d 2001-02-03 docs/deep/er/also-secret; chmod 750 docs/deep`, video, string(u.canary))
	return u
}

func bytesHex(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

// asUser runs script with sh as the user ($1... are args), stdin from stdin.
func (u *homeUser) asUser(t *testing.T, script string, stdin []byte, args ...string) string {
	t.Helper()
	out, err := u.try(script, stdin, args...)
	if err != nil {
		t.Fatalf("as %s: %s: %v\n%s", u.name, script, err, out)
	}
	return out
}

func (u *homeUser) try(script string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("runuser", append([]string{"-u", u.name, "--", "sh", "-c", script, "sh"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Dir = "/"
	var o bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &o
	err := cmd.Run()
	return o.String(), err
}

// snapshot lists every entry under the home (type, mode, owner, size, mtime,
// symlink target, content hash), as the user sees it.
func (u *homeUser) snapshot(t *testing.T) string {
	t.Helper()
	return u.asUser(t, `cd ~ && find . -mindepth 1 -printf '%p %y %m %U %G %s %T@ %l\n' | sort && find . -type f -exec sha256sum {} + | sort`, nil)
}

func (u *homeUser) initHome(t *testing.T, env ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(binary, "home", "init", "--passfile", u.pwfile, "--kdf-time", "2", "--kdf-memory", "19456", u.name)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal())
		}
	} else if err != nil {
		code = -1000
	}
	return o.String(), e.String(), code
}

func (u *homeUser) vault() string { return filepath.Join(u.base, u.name) }

func emptyDir(t *testing.T, dir string) bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	return len(ents) == 0
}

// openFuse makes /dev/fuse usable by plain users (Debian ships it 0666;
// this machine 0600) for the test.
func openFuse(t *testing.T) {
	t.Helper()
	requireRoot(t)
	st, err := os.Stat("/dev/fuse")
	must(t, err)
	must(t, os.Chmod("/dev/fuse", 0o666))
	t.Cleanup(func() { os.Chmod("/dev/fuse", st.Mode().Perm()) })
}

// TestHomeInit encrypts a home, then mounts it as the user: every entry is
// there as it was, the vault holds no plaintext of the encrypted files, the
// policy's Videos/ is stored plain, and the home left behind is empty.
func TestHomeInit(t *testing.T) {
	openFuse(t)
	u := newHomeUser(t, "cpt-init", "pw-init", "")
	before := u.snapshot(t)
	out, errOut, code := u.initHome(t)
	if code != 0 {
		t.Fatalf("home init: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "Recovery key") || !strings.Contains(errOut, "Copied and verified") {
		t.Errorf("home init output lacks the recovery key or the progress:\n%s\n%s", out, errOut)
	}
	var st syscall.Stat_t
	must(t, syscall.Stat(u.vault(), &st))
	uid := strings.TrimSpace(u.asUser(t, "id -u", nil))
	if st.Mode&0o777 != 0o700 || strconv.Itoa(int(st.Uid)) != uid {
		t.Errorf("vault %s: mode %o uid %d, want 0700 and %s", u.vault(), st.Mode&0o777, st.Uid, uid)
	}
	for _, p := range []string{u.name + ".state", u.name + ".mnt", u.name + ".orig"} {
		if _, err := os.Lstat(filepath.Join(u.base, p)); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	if !emptyDir(t, u.home) {
		t.Errorf("%s is not empty after home init", u.home)
	}
	if hits := vaultContains(t, u.vault(), u.canary); len(hits) > 0 {
		t.Errorf("canary in the vault: %v", hits)
	}
	if _, err := os.Stat(filepath.Join(u.vault(), "Videos", "film.mkv")); err != nil {
		t.Errorf("Videos/film.mkv is not stored plain: %v", err)
	}
	policy, err := os.ReadFile(filepath.Join(u.base, u.name+".toml"))
	must(t, err)
	if !strings.Contains(string(policy), `"Videos/"`) || !strings.Contains(string(policy), "# ") {
		t.Errorf("home policy is not the commented template:\n%s", policy)
	}

	run(t, "home", "mount", "--passfile", u.pwfile, u.name)
	if after := u.snapshot(t); after != before {
		t.Errorf("the mounted home differs from the original:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	run(t, "home", "unmount", u.name)
	if !emptyDir(t, u.home) {
		t.Errorf("%s is not empty after unmount", u.home)
	}
	// A second init refuses; a finished home cannot be aborted.
	if _, e, code := u.initHome(t); code == 0 || !strings.Contains(e, "already has an encrypted home") {
		t.Errorf("second home init: exit %d, %s", code, e)
	}
	if _, e, code := cryptpt("home", "abort", u.name); code == 0 || !strings.Contains(e, "nothing to abort") {
		t.Errorf("abort of a finished home: exit %d, %s", code, e)
	}
}

// TestHomeInitResume kills home init after two verified files (as a power cut
// would, leaving its mount dead) and runs it again: it goes on from the
// journal and ends with the same home.
func TestHomeInitResume(t *testing.T) {
	openFuse(t)
	u := newHomeUser(t, "cpt-resume", "pw-resume", "")
	before := u.snapshot(t)
	if _, e, code := u.initHome(t, "CRYPTPT_TEST_KILL=files:2"); code != -int(syscall.SIGKILL) {
		t.Fatalf("home init with a kill: exit %d, want SIGKILL\n%s", code, e)
	}
	if _, err := os.Stat(filepath.Join(u.base, u.name+".state")); err != nil {
		t.Fatalf("no journal after the kill: %v", err)
	}
	if emptyDir(t, u.home) {
		t.Fatal("the home was emptied before the copy finished")
	}
	// The copy of the first journaled file goes missing from the vault
	// (deleted through a mount of it): the resumed init must see that,
	// not trust the journal alone.
	journal, err := os.ReadFile(filepath.Join(u.base, u.name+".state"))
	must(t, err)
	var first string
	for _, line := range strings.Split(string(journal), "\n") {
		if f := strings.SplitN(line, " ", 5); len(f) == 5 && f[0] == "e" {
			first, err = strconv.Unquote(f[4])
			must(t, err)
			break
		}
	}
	if first == "" {
		t.Fatalf("the journal lists no entry after 2 verified files:\n%s", journal)
	}
	mnt := t.TempDir()
	run(t, "mount", "--config", filepath.Join(u.base, u.name+".toml"), "--passfile", u.pwfile, u.vault(), mnt)
	must(t, os.Remove(filepath.Join(mnt, first)))
	run(t, "unmount", mnt)

	out, e, code := u.initHome(t)
	if code != 0 {
		t.Fatalf("resumed home init: exit %d\n%s\n%s", code, out, e)
	}
	if !strings.Contains(e, "Resuming") || !strings.Contains(e, "2 entries were copied and verified before") ||
		!strings.Contains(e, "1 of them are not and are copied again") {
		t.Errorf("resumed init does not say it resumed, or what it checked:\n%s", e)
	}
	run(t, "home", "mount", "--passfile", u.pwfile, u.name)
	if after := u.snapshot(t); after != before {
		t.Errorf("the resumed home differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestHomeAbort abandons home init at two points, in the copy and right
// after the originals were moved out, and checks that abort leaves the home
// exactly as it was and removes the vault. (TestHomeAbortTooLate kills it
// while it removes the originals.)
func TestHomeAbort(t *testing.T) {
	openFuse(t)
	for i, kill := range []string{"files:3", "swap"} {
		t.Run(kill, func(t *testing.T) {
			u := newHomeUser(t, "cpt-abort"+strconv.Itoa(i), "pw-abort", "")
			before := u.snapshot(t)
			if _, e, code := u.initHome(t, "CRYPTPT_TEST_KILL="+kill); code != -int(syscall.SIGKILL) {
				t.Fatalf("home init with a kill at %s: exit %d\n%s", kill, code, e)
			}
			if kill == "swap" && !emptyDir(t, u.home) {
				t.Fatal("killed after the swap, yet the home is not empty: the test kills at the wrong point")
			}
			run(t, "home", "abort", u.name)
			if after := u.snapshot(t); after != before {
				t.Errorf("home after abort differs:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			for _, p := range []string{"", ".toml", ".state", ".mnt", ".orig"} {
				if _, err := os.Lstat(filepath.Join(u.base, u.name+p)); err == nil {
					t.Errorf("%s%s left behind by abort", u.name, p)
				}
			}
		})
	}
}

// TestHomeAbortTooLate kills home init in the middle of removing the
// originals (after two of the top entries of the old home are deleted):
// abort must refuse, since putting back the half-deleted originals and
// deleting the vault would lose what is gone; the vault, the journal and the
// rest of the originals stay; a new init finishes the removal and the home
// mounts whole.
func TestHomeAbortTooLate(t *testing.T) {
	openFuse(t)
	u := newHomeUser(t, "cpt-late", "pw-late", "")
	before := u.snapshot(t)
	if _, e, code := u.initHome(t, "CRYPTPT_TEST_KILL=remove:2"); code != -int(syscall.SIGKILL) {
		t.Fatalf("home init with a kill in the removal: exit %d\n%s", code, e)
	}
	orig := filepath.Join(u.base, u.name+".orig")
	left, err := os.ReadDir(orig)
	if err != nil || len(left) == 0 {
		t.Fatalf("killed in the removal, yet %s is gone or empty (%v): the test kills at the wrong point", orig, err)
	}
	journal, err := os.ReadFile(filepath.Join(u.base, u.name+".state"))
	if err != nil || !strings.HasSuffix(string(journal), "phase swap\nphase remove\n") {
		t.Fatalf("journal after a kill in the removal: %v\n%s", err, journal)
	}
	_, e, code := cryptpt("home", "abort", u.name)
	if code != 1 || !strings.Contains(e, "cryptpt: error: too late to abort") || !strings.Contains(e, "cryptpt home init "+u.name) {
		t.Errorf("abort while the originals were being removed: exit %d\n%s", code, e)
	}
	for _, p := range []string{"", ".toml", ".state", ".orig"} {
		if _, err := os.Lstat(filepath.Join(u.base, u.name+p)); err != nil {
			t.Errorf("the refused abort removed %s%s: %v", u.name, p, err)
		}
	}
	if !emptyDir(t, u.home) {
		t.Error("the refused abort put something back into the home")
	}
	out, e, code := u.initHome(t)
	if code != 0 || !strings.Contains(e, "Finishing an init that was stopped while it removed the originals") {
		t.Fatalf("init after a kill in the removal: exit %d\n%s\n%s", code, out, e)
	}
	for _, p := range []string{".state", ".orig", ".mnt"} {
		if _, err := os.Lstat(filepath.Join(u.base, u.name+p)); err == nil {
			t.Errorf("%s%s left behind by the finished init", u.name, p)
		}
	}
	run(t, "home", "mount", "--passfile", u.pwfile, u.name)
	if after := u.snapshot(t); after != before {
		t.Errorf("the home after a kill in the removal and a finished init differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestHomeStrayFiles: a session that does not unlock the home (su from
// root here; an ssh key, a failed mount) writes into the empty mountpoint,
// a shell's history at least. The next mount must not fail on "not empty"
// for ever: it moves those entries to /home/.cryptpt/USER.stray-TIME, the
// user's, says so, and mounts the home as it was.
func TestHomeStrayFiles(t *testing.T) {
	openFuse(t)
	u := newHomeUser(t, "cpt-stray", "pw-stray", "")
	if _, e, code := u.initHome(t); code != 0 {
		t.Fatalf("home init: %d %s", code, e)
	}
	u.asUser(t, `cd ~ && echo ls > .bash_history && mkdir .cache && echo x > .cache/y`, nil)
	_, e, code := cryptpt("home", "mount", "--passfile", u.pwfile, u.name)
	if code != 0 {
		t.Fatalf("home mount over a home written into while locked: exit %d\n%s", code, e)
	}
	stray, _ := filepath.Glob(filepath.Join(u.base, u.name+".stray-*"))
	if len(stray) != 1 {
		t.Fatalf("stray directories: %v", stray)
	}
	if want := "cryptpt: note: 2 entries written into " + u.home + " while it was locked"; !strings.Contains(e, want) || !strings.Contains(e, stray[0]) {
		t.Errorf("home mount does not say where the stray entries went:\n%s", e)
	}
	if got := u.asUser(t, "cat ~/secret; cat "+stray[0]+"/.bash_history "+stray[0]+"/.cache/y", nil); got != string(u.canary)+"ls\nx\n" {
		t.Errorf("after the mount: the home's secret and the stray files read %q", got)
	}
	run(t, "home", "unmount", u.name)
	if !emptyDir(t, u.home) {
		t.Error("the home is not empty after unmount")
	}
}

// TestHomeFreeSpace refuses home init on a filesystem that cannot hold a
// second copy of the home, before creating anything.
func TestHomeFreeSpace(t *testing.T) {
	fstest.RequireFUSE(t)
	requireRoot(t)
	dir := t.TempDir()
	for p := dir; p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755) // the user must reach its home
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m,mode=755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	u := newHomeUser(t, "cpt-full", "pw-full", filepath.Join(dir, "cpt-full"))
	u.asUser(t, "head -c 3500000 /dev/zero > ~/big", nil)
	before := u.snapshot(t)
	_, e, code := u.initHome(t)
	if code != 1 || !strings.Contains(e, "cryptpt: error: not enough free space") {
		t.Fatalf("home init on a full disk: exit %d\n%s", code, e)
	}
	if _, err := os.Lstat(u.vault()); err == nil {
		t.Error("a refused init left a vault")
	}
	if after := u.snapshot(t); after != before {
		t.Errorf("a refused init changed the home")
	}
}
