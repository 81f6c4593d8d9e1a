package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cfs "cryptpt/fs"
	"cryptpt/internal/control"
)

// requireRoot skips a test that switches users when not root; under
// CRYPTPT_REQUIRE_FUSE=1 (CI runs as root) it fails instead.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CRYPTPT_REQUIRE_FUSE") == "1" {
			t.Fatal("needs root to switch to an unprivileged user")
		}
		t.Skip("needs root to switch to an unprivileged user")
	}
}

// asNobody runs a program as uid and gid nobody, without groups or
// capabilities, and returns its stdout, stderr and exit code.
func asNobody(env []string, prog string, args ...string) (string, string, int) {
	cmd := exec.Command(prog, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = "/"
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code
}

// xattrToolSrc is a tiny program the tests run as another user, to use the
// xattr syscalls without depending on the attr package.
const xattrToolSrc = `package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	var err error
	switch os.Args[1] {
	case "set":
		// The value: the remaining arguments joined by NUL bytes.
		err = syscall.Setxattr(os.Args[2], os.Args[3], []byte(strings.Join(os.Args[4:], "\x00")), 0)
	case "get":
		buf := make([]byte, 1<<16)
		var n int
		if n, err = syscall.Getxattr(os.Args[2], os.Args[3], buf); err == nil {
			os.Stdout.Write(buf[:n])
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

// buildXattrTool compiles xattrToolSrc into a directory everyone can read.
func buildXattrTool(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cryptpt-xattr-tool-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(xattrToolSrc), 0o644))
	bin := filepath.Join(dir, "xattr")
	cmd := exec.Command("go", "build", "-o", bin, "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the xattr tool: %v\n%s", err, out)
	}
	return bin
}

// openToOthers makes the test's directories traversable, so another user
// can reach the mount.
func openToOthers(t *testing.T, v *cliVault) {
	t.Helper()
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	must(t, os.Chmod(v.dir, 0o755))
	must(t, os.Chmod(v.mnt, 0o755))
}

// Issue 10, attack 4 and 5: another user on an --allow-other mount can
// neither convert an entry nor read the status. On the old code, user nobody
// set user.cryptpt.migrate on a 0777 directory and root's 0600 file then sat
// verbatim in the vault; user.cryptpt.status answered nobody with names.
func TestControlRefusesOtherUsers(t *testing.T) {
	requireRoot(t)
	v := newCLIVault(t, "media/")
	v.mount(t, "--allow-other")
	openToOthers(t, v)
	must(t, os.Mkdir(v.path("shared"), 0o777))
	must(t, os.Chmod(v.path("shared"), 0o777))
	secret := canary(t, 4000)
	must(t, os.WriteFile(v.path("shared/secret"), secret, 0o600))
	if _, err := os.ReadFile(v.path("shared/secret")); err != nil {
		t.Fatal(err)
	}
	tool := buildXattrTool(t)

	// The attack as it worked: ask for plaintext through the old xattr.
	asNobody(nil, tool, "set", v.path("shared"), "user.cryptpt.migrate", "plaintext", "secret")
	// And through the new channel.
	_, stderr, code := asNobody(nil, binary, "migrate", v.mnt)
	if code == 0 || !strings.Contains(stderr, "only the mount's owner and root") {
		t.Errorf("migrate as nobody: exit %d\n%s", code, stderr)
	}
	if m := storedMode(t, v.path("shared/secret")); m != "encrypted" {
		t.Errorf("shared/secret is stored %s after nobody's requests", m)
	}
	if hits := vaultContains(t, v.backing, secret[:32]); len(hits) != 0 {
		t.Errorf("root's 0600 file is in the vault in the clear: %v", hits)
	}

	// Status: neither the old xattr nor the socket answers nobody.
	out, _, _ := asNobody(nil, tool, "get", v.mnt, "user.cryptpt.status")
	if strings.Contains(out, "shared") || strings.Contains(out, "pid") {
		t.Errorf("user.cryptpt.status answered nobody: %s", out)
	}
	out, stderr, code = asNobody(nil, binary, "status", "--json", v.mnt)
	if code != 1 || out != "" || !strings.Contains(stderr, "only the mount's owner and root may ask") {
		t.Errorf("status as nobody: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	_, stderr, code = asNobody(nil, binary, "reload", v.mnt)
	if code != 1 || !strings.Contains(stderr, "only the mount's owner and root") {
		t.Errorf("reload as nobody: exit %d\n%s", code, stderr)
	}

	// The owner names only the entry; the daemon's policy picks the mode.
	c, err := control.Dial(v.mnt)
	must(t, err)
	defer c.Close()
	res, err := c.Migrate("shared/secret", nil)
	must(t, err)
	if res.To != cfs.ModeEncrypted || res.Converted {
		t.Errorf("migrate of an entry stored as the policy says: %+v", res)
	}
	if _, err := c.Migrate("shared/../../etc", nil); err == nil {
		t.Error("migrate of a path with .. was accepted")
	}
}

// The socket lives in a 0700 directory, goes away on unmount, and a stale
// one left by a killed daemon is replaced on the next mount.
func TestControlSocketLifecycle(t *testing.T) {
	requireRoot(t)
	v := newCLIVault(t)
	v.mount(t)
	sock := v.daemonStatus(t).Socket
	if filepath.Dir(sock) != "/run/cryptpt" {
		t.Errorf("a root daemon's socket is %s, want it in /run/cryptpt", sock)
	}
	st, err := os.Stat("/run/cryptpt")
	must(t, err)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("/run/cryptpt has mode %v, want 0700", st.Mode().Perm())
	}
	v.unmount(t)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after unmount: %v", err)
	}

	v.mount(t)
	pid := v.status(t).PID
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	waitGone(t, pid)
	expectFail(t, "daemon of "+v.mnt+" is gone", "status", v.mnt)
	run(t, "unmount", v.mnt)
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("a killed daemon left no socket (%v): the test shows nothing", err)
	}
	v.mount(t)
	if st := v.daemonStatus(t); st.PID == pid || st.Socket != sock {
		t.Errorf("after remount: pid %d (killed: %d), socket %s", st.PID, pid, st.Socket)
	}
	logged, err := os.ReadFile(v.log)
	must(t, err)
	if !strings.Contains(string(logged), "is stale") {
		t.Errorf("the stale socket was not noticed:\n%s", logged)
	}
}

// daemonStatus is status --json with the daemon's own fields.
func (v *cliVault) daemonStatus(t *testing.T) control.Status {
	t.Helper()
	var st control.Status
	must(t, json.Unmarshal([]byte(run(t, "status", "--json", v.mnt)), &st))
	return st
}

// Issue 12, item 1: status shows the running policy and its file, explain
// says when the file differs, reload and SIGHUP read it again, and a broken
// file is refused with file:line:col and changes nothing.
func TestReloadPolicy(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	out := run(t, "status", v.mnt)
	if !strings.Contains(out, "config:       "+v.config) || !strings.Contains(out, `plaintext = ["media/"]`) {
		t.Errorf("status does not show the config and policy:\n%s", out)
	}
	must(t, os.Mkdir(v.path("pics"), 0o755))

	v.setPolicy(t, `"pics/"`)
	out = run(t, "explain", v.path("pics/new.jpg"))
	if !strings.Contains(out, "pics/new.jpg: new entries are encrypted") || !strings.Contains(out, "differs") || !strings.Contains(out, "cryptpt reload "+v.mnt) {
		t.Errorf("explain does not answer with the running policy:\n%s", out)
	}

	must(t, os.WriteFile(v.config, []byte("[policy]\nplaintext = [\"pics/\",\n  \"[z-a]\"]\n"), 0o600))
	expectFail(t, "config.toml:3:3", "reload", v.mnt)
	if st := v.daemonStatus(t); !slices.Equal(st.Policy, []string{"media/"}) {
		t.Errorf("a broken file changed the policy to %q", st.Policy)
	}

	v.setPolicy(t, `"pics/"`)
	if out := run(t, "reload", v.mnt); !strings.Contains(out, "now in force") {
		t.Errorf("reload said:\n%s", out)
	}
	if st := v.daemonStatus(t); !slices.Equal(st.Policy, []string{"pics/"}) || st.ConfigFile != v.config {
		t.Errorf("after reload: policy %q from %q", st.Policy, st.ConfigFile)
	}
	must(t, os.WriteFile(v.path("pics/b.jpg"), []byte("x"), 0o644))
	if m := storedMode(t, v.path("pics/b.jpg")); m != "plaintext" {
		t.Errorf("a file created after reload is stored %s", m)
	}
	if out := run(t, "explain", v.path("pics/c.jpg")); strings.Contains(out, "differs") || !strings.Contains(out, "new entries are plaintext") {
		t.Errorf("explain after reload:\n%s", out)
	}

	// SIGHUP does the same.
	v.setPolicy(t, `"docs/"`)
	must(t, syscall.Kill(v.status(t).PID, syscall.SIGHUP))
	for i := 0; ; i++ {
		if st := v.daemonStatus(t); slices.Equal(st.Policy, []string{"docs/"}) {
			break
		}
		if i == 300 {
			t.Fatal("SIGHUP did not reload the policy")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A mount without a policy file says so in one line.
func TestStatusWithoutConfig(t *testing.T) {
	v := newCLIVault(t)
	cmd := exec.Command(binary, "mount", "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(v.dir, "noconfig"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { cryptpt("unmount", v.mnt) })
	out := run(t, "status", v.mnt)
	want := "policy:       none: no config file at " + filepath.Join(v.dir, "noconfig", "cryptpt", "config.toml") + ", so everything new is encrypted\n"
	if !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
}

// Issue 12, item 2: a background mount that fusermount3 refuses says why,
// with the hint for that cause, and the daemon's log has it too.
func TestBackgroundMountError(t *testing.T) {
	requireRoot(t)
	for _, fg := range []bool{false, true} {
		v := newCLIVault(t)
		giveToNobody(t, v)
		args := []string{"mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt}
		if fg {
			args = append(args, "-f")
		}
		st, err := os.Stat("/dev/fuse")
		must(t, err)
		must(t, os.Chmod("/dev/fuse", 0o600))
		_, stderr, code := asNobody([]string{"HOME=" + v.dir}, binary, args...)
		must(t, os.Chmod("/dev/fuse", st.Mode().Perm()))
		if code == 0 {
			asNobody(nil, binary, "unmount", v.mnt)
			t.Fatalf("-f %v: mount as nobody worked with /dev/fuse at mode 0600", fg)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "cryptpt: error: ") || !strings.Contains(lines[0], "failed to open /dev/fuse: Permission denied") {
			t.Errorf("-f %v: mount error does not name the cause in one line:\n%s", fg, stderr)
		}
		if len(lines) == 2 && (!strings.HasPrefix(lines[1], "cryptpt: hint: ") || !strings.Contains(lines[1], "/dev/fuse") || strings.Contains(lines[1], "install fuse3")) {
			t.Errorf("-f %v: wrong hint:\n%s", fg, stderr)
		}
		logged, err := os.ReadFile(v.log)
		must(t, err)
		if !strings.Contains(string(logged), "failed to open /dev/fuse: Permission denied") {
			t.Errorf("-f %v: the daemon's log lacks the cause:\n%s", fg, logged)
		}
	}
}

// giveToNobody hands the vault, mountpoint and files of v to user nobody.
func giveToNobody(t *testing.T, v *cliVault) {
	t.Helper()
	for _, p := range []string{v.dir, v.backing, v.mnt, v.pwfile, v.config} {
		must(t, os.Chown(p, nobody, nobody))
	}
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	filepath.Walk(v.backing, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, nobody, nobody) })
}

// Root asks about a user's mount: the client finds the daemon's socket from
// the mount's user_id=, in that user's directory.
func TestRootAsksUserDaemon(t *testing.T) {
	requireRoot(t)
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		must(t, os.Chmod("/dev/fuse", 0o666))
		t.Cleanup(func() { os.Chmod("/dev/fuse", st.Mode().Perm()) })
	}
	v := newCLIVault(t, "media/")
	giveToNobody(t, v)
	env := []string{"HOME=" + v.dir}
	if _, stderr, code := asNobody(env, binary, "mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt); code != 0 {
		t.Fatalf("mount as nobody: exit %d\n%s", code, stderr)
	}
	t.Cleanup(func() { asNobody(env, binary, "unmount", v.mnt) })
	out, stderr, code := asNobody(env, binary, "status", "--json", v.mnt)
	if code != 0 {
		t.Fatalf("status as the owner: exit %d\n%s", code, stderr)
	}
	var own control.Status
	must(t, json.Unmarshal([]byte(out), &own))
	st := v.daemonStatus(t)
	if st.PID != own.PID || st.Mountpoint != v.mnt || !slices.Equal(st.Policy, []string{"media/"}) {
		t.Errorf("root got %+v, the owner %+v", st, own)
	}
	run(t, "reload", v.mnt)
}

// Issue 12, item 6: one vault is mounted read-write once; a killed daemon
// leaves no lock behind.
func TestVaultMountedTwice(t *testing.T) {
	v := newCLIVault(t)
	v.mount(t)
	other := filepath.Join(v.dir, "mnt2")
	must(t, os.Mkdir(other, 0o755))
	base := []string{"mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log}
	expectFail(t, "already mounted read-write", append(base, v.backing, other)...)
	_, stderr, _ := cryptpt(append(base, v.backing, other)...)
	if !strings.Contains(stderr, "it is mounted on "+v.mnt) {
		t.Errorf("the refusal does not say where:\n%s", stderr)
	}
	// Said before the password is asked for (or checked).
	wrong := filepath.Join(v.dir, "wrong")
	must(t, os.WriteFile(wrong, []byte("nope\n"), 0o600))
	expectFail(t, "already mounted read-write", "mount", "--config", v.config, "--passfile", wrong, v.backing, other)
	run(t, append(base, "--ro", v.backing, other)...)
	run(t, "unmount", other)

	pid := v.status(t).PID
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	waitGone(t, pid)
	run(t, append(base, v.backing, other)...)
	t.Cleanup(func() { cryptpt("unmount", other) })
	must(t, os.WriteFile(filepath.Join(other, "f"), []byte("x"), 0o644))
	run(t, "unmount", other)
	run(t, "unmount", v.mnt)
}

// Issue 12, item 6: unmount documents its options and detaches a busy
// mount with -z.
func TestLazyUnmount(t *testing.T) {
	_, help, code := cryptpt("unmount", "--help")
	if code != 0 || !strings.Contains(help, "-z") || !strings.Contains(help, "lazy") {
		t.Errorf("unmount --help does not show -z: exit %d\n%s", code, help)
	}
	v := newCLIVault(t)
	v.mount(t)
	f, err := os.Create(v.path("open"))
	must(t, err)
	defer f.Close()
	if _, _, code := cryptpt("unmount", v.mnt); code == 0 {
		t.Fatal("plain unmount worked with a file open")
	}
	run(t, "unmount", "-z", v.mnt)
	if m, _ := cfs.FindMount(v.mnt); m == v.mnt {
		t.Error("still mounted after unmount -z")
	}
}

// Issue 10, item 5: by default the log names entries without their
// plaintext path; --log-names brings the paths back.
func TestLogNames(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		v := newCLIVault(t)
		if verbose {
			v.mount(t, "--log-names")
		} else {
			v.mount(t)
		}
		must(t, os.WriteFile(v.path("divorce-lawyer-letter.pdf"), []byte("x"), 0o644))
		v.setPolicy(t, `"/**"`)
		run(t, "reload", v.mnt)
		out := run(t, "migrate", v.mnt)
		if !strings.Contains(out, "stored plaintext: /divorce-lawyer-letter.pdf") {
			t.Fatalf("migrate:\n%s", out)
		}
		v.setPolicy(t, "")
		run(t, "reload", v.mnt)
		out = run(t, "migrate", v.mnt)
		if !strings.Contains(out, "may still be recoverable from the disk") {
			t.Errorf("migrate to encrypted does not warn about the old plaintext:\n%s", out)
		}
		logged, err := os.ReadFile(v.log)
		must(t, err)
		named := strings.Contains(string(logged), "divorce-lawyer-letter")
		if named != verbose || !strings.Contains(string(logged), "migrated ") {
			t.Errorf("--log-names %v: log names the file: %v\n%s", verbose, named, logged)
		}
	}
}

// Issue 12, item 6: status says where the log is that has the details of
// authentication errors.
func TestAuthErrorsNameTheLog(t *testing.T) {
	v := newCLIVault(t)
	v.mount(t)
	must(t, os.WriteFile(v.path("f"), bytes.Repeat([]byte("a"), 10000), 0o644))
	v.unmount(t)
	entries, err := os.ReadDir(v.backing)
	must(t, err)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "~~c") {
			p := filepath.Join(v.backing, e.Name())
			data, err := os.ReadFile(p)
			must(t, err)
			data[len(data)-1] ^= 1
			must(t, os.WriteFile(p, data, 0o644))
		}
	}
	v.mount(t)
	if _, err := os.ReadFile(v.path("f")); err == nil {
		t.Fatal("a tampered file read back")
	}
	out := run(t, "status", v.mnt)
	if !strings.Contains(out, "see the daemon's log, "+v.log) {
		t.Errorf("status does not say where the log is:\n%s", out)
	}
}
