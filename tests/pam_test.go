package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	cfs "cryptpt/fs"
)

// pamFiles are the files pam-auth-update rewrites; the test restores them.
var pamFiles = []string{"common-auth", "common-account", "common-session", "common-session-noninteractive", "common-password"}

// enablePAMProfile installs contrib/pam/cryptpt (pointed at the test binary)
// as the profile "cryptpt-test", enables it with pam-auth-update as an admin
// would, and undoes both when the test ends, restoring /etc/pam.d byte for
// byte.
func enablePAMProfile(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"pamtester", "pam-auth-update"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CRYPTPT_REQUIRE_FUSE") == "1" {
				t.Fatalf("%s is missing (make deps-test installs pamtester)", tool)
			}
			t.Skipf("%s is missing (apt-get install pamtester)", tool)
		}
	}
	saved := map[string][]byte{}
	for _, f := range pamFiles {
		data, err := os.ReadFile("/etc/pam.d/" + f)
		if err == nil {
			saved[f] = data
		}
	}
	profile, err := os.ReadFile(filepath.Join(contribDir, "pam", "cryptpt"))
	must(t, err)
	if !bytes.Contains(profile, []byte("/usr/local/bin/cryptpt home pam")) {
		t.Fatal("the profile does not run /usr/local/bin/cryptpt home pam")
	}
	profile = bytes.ReplaceAll(profile, []byte("/usr/local/bin/cryptpt"), []byte(binary))
	const name = "/usr/share/pam-configs/cryptpt-test"
	must(t, os.WriteFile(name, profile, 0o644))
	pamAuthUpdate := func(args ...string) {
		cmd := exec.Command("pam-auth-update", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("pam-auth-update %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		pamAuthUpdate("--remove", "cryptpt-test")
		os.Remove(name)
		for f, data := range saved {
			os.WriteFile("/etc/pam.d/"+f, data, 0o644)
		}
	})
	pamAuthUpdate("--enable", "cryptpt-test")
	for _, f := range []string{"common-auth", "common-session"} {
		data, err := os.ReadFile("/etc/pam.d/" + f)
		must(t, err)
		if !bytes.Contains(data, []byte(binary+" home pam")) {
			t.Fatalf("pam-auth-update --enable did not put the hook into %s:\n%s", f, data)
		}
	}
}

// pamtester runs pamtester for service and user with the given operations,
// feeding input as the answers to its prompts.
func pamtester(service, user, input string, ops ...string) (string, error) {
	cmd := exec.Command("pamtester", append([]string{service, user}, ops...)...)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// daemonOf returns the pid of the process of uid serving mountpoint.
func daemonOf(t *testing.T, uid int, mountpoint string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || int(st.Uid) != uid {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 2 && args[1] == "mount" && strings.Contains(string(cmdline), "\x00"+mountpoint+"\x00") {
			return pid
		}
	}
	t.Fatalf("no daemon of uid %d serves %s", uid, mountpoint)
	return 0
}

func capEff(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no CapEff in /proc/%d/status", pid)
	return ""
}

func isMountpoint(dir string) bool {
	m, _ := cfs.FindMount(dir)
	return m == dir
}

// TestPAM enables the pam-auth-update profile and logs a user in and out
// with pamtester and su: the right password mounts the home decrypted with
// a daemon that runs as the user without capabilities, the last logout
// unmounts it, a wrong password mounts nothing, and a password change
// through the PAM password stack keeps the home opening with the new one.
func TestPAM(t *testing.T) {
	openFuse(t)
	u := newHomeUser(t, "cpt-pam", "pam-old-pw", "")
	if _, e, code := u.initHome(t); code != 0 {
		t.Fatalf("home init: %d %s", code, e)
	}
	enablePAMProfile(t)
	uid, _ := strconv.Atoi(strings.TrimSpace(u.asUser(t, "id -u", nil)))
	keyFile := "/run/cryptpt-home/" + u.name + ".key"

	// A wrong password logs in nobody and mounts nothing.
	if out, err := pamtester("login", u.name, "wrong password\n", "authenticate", "open_session"); err == nil {
		t.Fatalf("pamtester accepted a wrong password:\n%s", out)
	}
	if isMountpoint(u.home) || !emptyDir(t, u.home) {
		t.Fatal("a wrong password mounted the home")
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Fatal("a wrong password left a key behind")
	}
	// A session without a password (su from root, an ssh key) leaves the
	// home locked and tells the user why (pam_exec's stdout option).
	out, err := pamtester("login", u.name, "", "open_session", "close_session")
	if err != nil || !strings.Contains(out, "cryptpt: the encrypted home of "+u.name+" stays locked: this login gave no password") {
		t.Errorf("a session without a password: %v, the user was told:\n%s", err, out)
	}
	if isMountpoint(u.home) {
		t.Fatal("a session without a password mounted the home")
	}

	login := func(pw string) {
		t.Helper()
		out, err := pamtester("login", u.name, pw+"\n", "authenticate", "open_session")
		if err != nil {
			t.Fatalf("pamtester authenticate open_session: %v\n%s", err, out)
		}
		if !isMountpoint(u.home) {
			logged, _ := os.ReadFile(u.vault() + ".log")
			t.Fatalf("login did not mount the home; pamtester said:\n%s\ndaemon log:\n%s", out, logged)
		}
	}
	logout := func() {
		t.Helper()
		// pamtester ends without close_session; a second one closes (its
		// own pid is not in the list, the first one's is gone: none left).
		if out, err := pamtester("login", u.name, "", "close_session"); err != nil {
			t.Fatalf("pamtester close_session: %v\n%s", err, out)
		}
		if isMountpoint(u.home) || !emptyDir(t, u.home) {
			t.Fatal("logout left the home mounted")
		}
		if _, err := os.Stat(keyFile); err == nil {
			t.Fatal("logout left the key behind")
		}
	}

	// The helper beside cryptpt, where the daemon of a PAM login finds it
	// (make install puts it in ../lib/cryptpt); no test runs in parallel.
	besides := filepath.Join(filepath.Dir(binary), "cryptpt-ptreg")
	buildHelperAt(t, besides)
	t.Cleanup(func() { os.Remove(besides) })

	login("pam-old-pw")
	if got := u.asUser(t, "cat ~/secret", nil); got != string(u.canary) {
		t.Errorf("~/secret after login reads %q, want the canary", got)
	}
	// A plaintext Videos/ file is served by passthrough, through the helper.
	u.asUser(t, "cat ~/Videos/film.mkv > /dev/null", nil)
	var st cfs.Status
	must(t, json.Unmarshal([]byte(u.asUser(t, binary+" status --json ~", nil)), &st))
	if !st.PassthroughActive || !strings.Contains(st.PassthroughReason, "via helper") || st.PlainOpensPassthrough < 1 {
		t.Errorf("Videos/film.mkv after a PAM login: passthrough %v (%s), %d passthrough opens",
			st.PassthroughActive, st.PassthroughReason, st.PlainOpensPassthrough)
	}
	if hits := vaultContains(t, u.vault(), u.canary); len(hits) > 0 {
		t.Errorf("canary in the vault: %v", hits)
	}
	if ce := capEff(t, daemonOf(t, uid, u.home)); ce != "0000000000000000" {
		t.Errorf("daemon CapEff %s, want 0", ce)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key kept for the session: %v %v", st, err)
	}
	// An authentication during the session (sudo, a screen unlock) leaves
	// the key kept for the session, not for two minutes.
	if out, err := pamtester("login", u.name, "pam-old-pw\n", "authenticate"); err != nil {
		t.Fatalf("pamtester authenticate during the session: %v\n%s", err, out)
	}
	if key, err := os.ReadFile(keyFile); err != nil || len(key) != 40 || !bytes.Equal(key[:8], make([]byte, 8)) {
		t.Errorf("the session's key got an expiry from a second authentication")
	}

	// The login password changes while logged in (passwd; chpasswd here);
	// the next authentication (a screen unlock, sudo) rewraps the vault key.
	chpw := exec.Command("chpasswd")
	chpw.Stdin = strings.NewReader(u.name + ":pam-new-pw\n")
	if out, err := chpw.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	if out, err := pamtester("login", u.name, "pam-new-pw\n", "authenticate"); err != nil {
		t.Fatalf("pamtester authenticate with the new password: %v\n%s", err, out)
	}
	logout()
	if _, e, code := cryptpt("home", "mount", "--passfile", u.pwfile, u.name); code == 0 || !strings.Contains(e, "wrong password") {
		t.Errorf("the old password still opens the vault after the change: %d %s", code, e)
	}
	login("pam-new-pw")
	if got := u.asUser(t, "cat ~/secret", nil); got != string(u.canary) {
		t.Errorf("~/secret after login with the new password reads %q", got)
	}
	logout()

	// su from another user, through a terminal as a person would.
	other := newHomeUser(t, "cpt-pam-su", "other-pw", "")
	out = suWithPassword(t, other.name, u.name, "pam-new-pw", "cat ~/secret")
	if !strings.Contains(out, string(u.canary)) {
		t.Errorf("su - %s -c 'cat ~/secret' printed %q, want the canary", u.name, out)
	}
	if isMountpoint(u.home) {
		t.Error("the home is still mounted after su ended")
	}
}

// suWithPassword runs "su - target -c cmd" as user from on a new terminal,
// types password when su asks for it, and returns what the terminal showed.
func suWithPassword(t *testing.T, from, target, password, cmd string) string {
	t.Helper()
	ptmx, pts := openPty(t)
	defer ptmx.Close()
	c := exec.Command("runuser", "-u", from, "--", "su", "-", target, "-c", cmd)
	c.Stdin, c.Stdout, c.Stderr = pts, pts, pts
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	c.Dir = "/"
	must(t, c.Start())
	pts.Close()
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	typed := false
	for {
		n, err := ptmx.Read(buf)
		seen.Write(buf[:n])
		if !typed && bytes.Contains(seen.Bytes(), []byte("Password:")) {
			ptmx.Write([]byte(password + "\n"))
			typed = true
		}
		if err != nil { // EIO once su and its child have closed the terminal
			break
		}
	}
	if err := c.Wait(); err != nil {
		t.Errorf("su: %v\n%s", err, seen.String())
	}
	if !typed {
		t.Errorf("su never asked for the password:\n%s", seen.String())
	}
	return seen.String()
}

// TestPAMDisplayManager logs in through the PAM stacks of Debian's display
// managers (testdata/pam: lightdm's and gdm3's gdm-password, as their
// packages ship them, with @include common-auth, common-account,
// common-session and common-password) with pamtester, as the display
// manager would call them: authenticate, acct_mgmt, open_session, and
// close_session at logout. One line is added at the end of each stack: a
// pam_exec probe that records, at open_session, whether the home is
// mounted by then, which is what the session the display manager starts
// next would see. A wrong password mounts nothing; the right one mounts the
// home decrypted; close_session unmounts it, also when the same process
// that opened the session closes it (as a display manager does).
func TestPAMDisplayManager(t *testing.T) {
	openFuse(t)
	u := newHomeUser(t, "cpt-dm", "dm-login-pw", "")
	if _, e, code := u.initHome(t); code != 0 {
		t.Fatalf("home init: %d %s", code, e)
	}
	enablePAMProfile(t)
	keyFile := "/run/cryptpt-home/" + u.name + ".key"
	probeOut := filepath.Join(t.TempDir(), "probe")
	probe := filepath.Join(t.TempDir(), "probe.sh")
	must(t, os.WriteFile(probe, []byte("#!/bin/sh\n[ \"$PAM_TYPE\" = open_session ] || exit 0\n"+
		"if findmnt -M "+u.home+" >/dev/null; then echo mounted; else echo locked; fi >> "+probeOut+"\n"), 0o755))
	probed := func() string {
		t.Helper()
		data, _ := os.ReadFile(probeOut)
		os.Remove(probeOut)
		return strings.TrimSpace(string(data))
	}
	for _, dm := range []string{"lightdm", "gdm-password"} {
		t.Run(dm, func(t *testing.T) {
			stack, err := os.ReadFile(filepath.Join("testdata", "pam", dm))
			must(t, err)
			service := "cryptpt-test-" + dm
			stack = append(stack, []byte("\n# cryptpt test probe: is the home mounted when the session starts?\nsession optional pam_exec.so "+probe+"\n")...)
			must(t, os.WriteFile("/etc/pam.d/"+service, stack, 0o644))
			t.Cleanup(func() { os.Remove("/etc/pam.d/" + service) })

			if out, err := pamtester(service, u.name, "not the password\n", "authenticate", "acct_mgmt", "open_session"); err == nil {
				t.Fatalf("%s accepted a wrong password:\n%s", dm, out)
			}
			if isMountpoint(u.home) || !emptyDir(t, u.home) {
				t.Fatalf("a wrong password at %s mounted the home", dm)
			}
			if _, err := os.Stat(keyFile); err == nil {
				t.Fatalf("a wrong password at %s left a key behind", dm)
			}

			// Login and logout as two processes (the first one ends
			// without close_session; the second closes).
			out, err := pamtester(service, u.name, "dm-login-pw\n", "authenticate", "acct_mgmt", "open_session")
			if err != nil {
				t.Fatalf("%s login: %v\n%s", dm, err, out)
			}
			if got := probed(); got != "mounted" {
				t.Errorf("%s: at the end of open_session the home was %q, want mounted", dm, got)
			}
			if got := u.asUser(t, "cat ~/secret", nil); got != string(u.canary) {
				t.Errorf("%s: ~/secret after login reads %q, want the canary", dm, got)
			}
			if out, err := pamtester(service, u.name, "", "close_session"); err != nil {
				t.Fatalf("%s close_session: %v\n%s", dm, err, out)
			}
			if isMountpoint(u.home) || !emptyDir(t, u.home) {
				t.Fatalf("%s logout left the home mounted", dm)
			}
			if _, err := os.Stat(keyFile); err == nil {
				t.Fatalf("%s logout left the key behind", dm)
			}

			// One process through the whole session, as the display
			// manager's session worker is.
			out, err = pamtester(service, u.name, "dm-login-pw\n", "authenticate", "acct_mgmt", "open_session", "close_session")
			if err != nil {
				t.Fatalf("%s session in one process: %v\n%s", dm, err, out)
			}
			if got := probed(); got != "mounted" {
				t.Errorf("%s: at the end of open_session (one process) the home was %q, want mounted", dm, got)
			}
			if isMountpoint(u.home) || !emptyDir(t, u.home) {
				t.Errorf("%s: close_session by the process that opened the session left the home mounted", dm)
			}
		})
	}
}
