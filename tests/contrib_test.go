package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	cfs "cryptpt/fs"
	"cryptpt/internal/fstest"

	"golang.org/x/sys/unix"
)

// contribDir holds the units, the mount helper and the completions.
const contribDir = "../contrib"

// TestSystemdUnits checks both units with systemd-analyze verify, with
// ExecStart pointing at the test binary (verify insists that it exists).
// Without systemd-analyze it skips: contrib/README.md gives the manual check.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; see contrib/README.md for the manual check")
	}
	dir := t.TempDir()
	install := func(src, dst string) string {
		data, err := os.ReadFile(filepath.Join(contribDir, "systemd", src))
		must(t, err)
		unit := string(data)
		for _, want := range []string{"ExecStart=/usr/local/bin/cryptpt mount -f", "ExecStop=-/usr/local/bin/cryptpt unmount"} {
			if !strings.Contains(unit, want) {
				t.Errorf("%s lacks %q", src, want)
			}
		}
		unit = strings.ReplaceAll(unit, "/usr/local/bin/cryptpt", binary)
		p := filepath.Join(dir, dst)
		must(t, os.WriteFile(p, []byte(unit), 0o644))
		return unit
	}
	sys := install("cryptpt@.service", "cryptpt@alice.service")
	for _, want := range []string{"User=%i", "AmbientCapabilities=CAP_SYS_ADMIN", "CapabilityBoundingSet=CAP_SYS_ADMIN", "NoNewPrivileges=yes", "--config /home/%i/.config/cryptpt/config.toml", "systemd-ask-password"} {
		if !strings.Contains(sys, want) {
			t.Errorf("cryptpt@.service lacks %q", want)
		}
	}
	user := install("cryptpt.service", "cryptpt.service")
	// Options that give the service its own mount namespace would hide the
	// mount from everyone else. The user unit mounts through the setuid
	// fusermount3, which NoNewPrivileges would break; the system unit's
	// daemon holds CAP_SYS_ADMIN and calls mount(2) itself, so it may.
	forbidden := []string{"PrivateTmp=", "PrivateDevices=", "PrivateMounts=", "ProtectSystem=", "ProtectHome=",
		"ProtectKernelTunables=", "ProtectControlGroups=", "ReadOnlyPaths=", "ReadWritePaths=", "InaccessiblePaths=",
		"TemporaryFileSystem=", "BindPaths=", "BindReadOnlyPaths=", "MountFlags="}
	for name, unit := range map[string]string{"cryptpt@.service": sys, "cryptpt.service": user} {
		bad := forbidden
		if name == "cryptpt.service" {
			bad = append(bad, "NoNewPrivileges=")
		}
		for _, line := range strings.Split(unit, "\n") {
			for _, f := range bad {
				if strings.HasPrefix(strings.TrimSpace(line), f) {
					t.Errorf("%s sets %s, which breaks or hides the mount", name, line)
				}
			}
		}
	}

	verify := func(user bool, unit string) {
		args := []string{"verify", filepath.Join(dir, unit)}
		cmd := exec.Command(analyze, args...)
		if user {
			rt := filepath.Join(dir, "runtime")
			must(t, os.MkdirAll(rt, 0o700))
			cmd = exec.Command(analyze, append([]string{"--user"}, args...)...)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+rt)
		}
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze %v: %v\n%s", cmd.Args[1:], err, out)
		}
	}
	verify(false, "cryptpt@alice.service")
	verify(false, "cryptpt.service")
	verify(true, "cryptpt.service")
}

// helperEnv is the environment the mount helper gets: the test binary.
func helperEnv() []string { return append(os.Environ(), "CRYPTPT_BIN="+binary) }

// TestMountHelper calls contrib/mount.cryptpt as mount(8) does and checks
// the options it translates.
func TestMountHelper(t *testing.T) {
	v := newCLIVault(t)
	helper, err := filepath.Abs(filepath.Join(contribDir, "mount.cryptpt"))
	must(t, err)
	call := func(args ...string) (string, error) {
		cmd := exec.Command(helper, args...)
		cmd.Env = helperEnv()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if m, _ := cfs.FindMount(v.mnt); m == v.mnt {
			cryptpt("unmount", v.mnt)
		}
	})

	// As mount(8) passes an fstab line's options (after adding its own).
	opts := "ro,noexec,nosuid,nodev,passfile=" + v.pwfile + ",config=" + v.config + ",no_passthrough,user,x-systemd.automount"
	if out, err := call(v.backing, v.mnt, "-o", opts); err != nil {
		t.Fatalf("mount.cryptpt: %v\n%s", err, out)
	}
	if m, _ := cfs.FindMount(v.mnt); m != v.mnt {
		t.Fatalf("not mounted after mount.cryptpt")
	}
	err = os.WriteFile(v.path("x"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("write on a ro mount: %v, want EROFS", err)
	}
	st := v.status(t)
	if !st.ReadOnly || st.PassthroughActive {
		t.Errorf("ro/no_passthrough not applied: read-only %v, passthrough %v", st.ReadOnly, st.PassthroughActive)
	}
	v.unmount(t)

	// rw, -o glued to its value, and -v prints the command.
	out, err := call(v.backing, v.mnt, "-v", "-o"+"rw,passfile="+v.pwfile+",config="+v.config)
	if err != nil || !strings.Contains(out, "mount --passfile "+v.pwfile) {
		t.Fatalf("mount.cryptpt -v: %v\n%s", err, out)
	}
	must(t, os.WriteFile(v.path("x"), []byte("x"), 0o644))
	v.unmount(t)

	// Unknown options fail, unless sloppy; -f only pretends.
	if out, err := call(v.backing, v.mnt, "-o", "bogus,passfile="+v.pwfile); err == nil || !strings.Contains(out, `unknown option "bogus"`) {
		t.Errorf("unknown option: %v\n%s", err, out)
	}
	if out, err := call(v.backing, v.mnt, "-sf", "-o", "bogus,passfile="+v.pwfile); err != nil || !strings.Contains(out, "ignoring") {
		t.Errorf("sloppy fake mount: %v\n%s", err, out)
	}
	if m, _ := cfs.FindMount(v.mnt); m == v.mnt {
		t.Errorf("-f mounted")
	}
	// A failed mount is mount(8)'s "mount failure".
	bad := filepath.Join(v.dir, "badpw")
	must(t, os.WriteFile(bad, []byte("nope\n"), 0o600))
	_, err = call(v.backing, v.mnt, "-o", "passfile="+bad)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 32 {
		t.Errorf("wrong password: %v, want exit 32", err)
	}
}

// TestMountTypeFuseCryptpt runs "mount -t fuse.cryptpt" for real: mount(8)
// looks for /sbin/mount.fuse.cryptpt (and only in /sbin, /sbin/fs.d,
// /sbin/fs), so the helper is installed there for the test and removed after.
func TestMountTypeFuseCryptpt(t *testing.T) {
	fstest.RequireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to install /sbin/mount.fuse.cryptpt")
	}
	mountBin, err := exec.LookPath("mount")
	if err != nil {
		t.Skip("no mount(8)")
	}
	const target = "/sbin/mount.fuse.cryptpt"
	helper, err := os.ReadFile(filepath.Join(contribDir, "mount.cryptpt"))
	must(t, err)
	if old, err := os.ReadFile(target); err == nil {
		if !bytes.Equal(old, helper) {
			t.Skipf("%s is already installed and differs from contrib/mount.cryptpt; not replacing it", target)
		}
	} else {
		must(t, os.WriteFile(target, helper, 0o755))
		t.Cleanup(func() { os.Remove(target) })
	}

	v := newCLIVault(t)
	t.Cleanup(func() {
		if m, _ := cfs.FindMount(v.mnt); m == v.mnt {
			cryptpt("unmount", v.mnt)
		}
	})
	cmd := exec.Command(mountBin, "-t", "fuse.cryptpt", "-o", "noauto,passfile="+v.pwfile+",config="+v.config, v.backing, v.mnt)
	cmd.Env = helperEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mount -t fuse.cryptpt: %v\n%s", err, out)
	}
	if m, _ := cfs.FindMount(v.mnt); m != v.mnt {
		t.Fatal("not mounted after mount -t fuse.cryptpt")
	}
	must(t, os.WriteFile(v.path("hello"), []byte("through mount(8)"), 0o644))
	if out, err := exec.Command("umount", v.mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	if m, _ := cfs.FindMount(v.mnt); m == v.mnt {
		t.Fatal("still mounted after umount")
	}
	// The file went into the vault encrypted.
	v.mount(t)
	if got, err := os.ReadFile(v.path("hello")); err != nil || string(got) != "through mount(8)" {
		t.Errorf("after remount: %q, %v", got, err)
	}
}

// TestBashCompletion sources the bash completion and completes commands,
// options and mountpoints.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, err := filepath.Abs(filepath.Join(contribDir, "completions", "cryptpt.bash"))
	must(t, err)
	complete := func(words ...string) string {
		t.Helper()
		var b strings.Builder
		b.WriteString("source " + shellQuote(script) + " && complete -p cryptpt && COMP_WORDS=(")
		for _, w := range words {
			b.WriteString(shellQuote(w) + " ")
		}
		b.WriteString(") && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && _cryptpt && printf '%s\\n' \"${COMPREPLY[@]}\"")
		out, err := exec.Command(bash, "--norc", "--noprofile", "-c", b.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
		}
		return string(out)
	}
	out := complete(binary, "")
	if !strings.Contains(out, "complete -F _cryptpt cryptpt") {
		t.Errorf("complete -p cryptpt: %s", out)
	}
	for _, cmd := range []string{"init", "mount", "unmount", "status", "explain", "passwd", "fsck", "version"} {
		if !strings.Contains(out, "\n"+cmd+"\n") {
			t.Errorf("command %s not offered:\n%s", cmd, out)
		}
	}
	if out := complete(binary, "fs"); !strings.HasSuffix(out, "\nfsck\n") {
		t.Errorf("completing fs: %s", out)
	}
	out = complete(binary, "fsck", "--")
	for _, o := range []string{"--repair", "--passfile", "--extpass"} {
		if !strings.Contains(out, "\n"+o+"\n") {
			t.Errorf("fsck option %s not offered:\n%s", o, out)
		}
	}
	out = complete(binary, "mount", "-")
	for _, o := range []string{"-f", "--ro", "--config", "--no-passthrough"} {
		if !strings.Contains(out, "\n"+o+"\n") {
			t.Errorf("mount option %s not offered:\n%s", o, out)
		}
	}

	// A live mount is offered to unmount.
	v := newCLIVault(t)
	v.mount(t)
	if out := complete(binary, "unmount", v.mnt[:len(v.mnt)-1]); !strings.Contains(out, "\n"+v.mnt+"\n") {
		t.Errorf("mountpoint %s not offered to unmount:\n%s", v.mnt, out)
	}
}

// TestZshCompletion checks the zsh completion's syntax and runs it with the
// completion system's builtins stubbed out (zsh has no batch mode for
// completion), when zsh is installed.
func TestZshCompletion(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("no zsh")
	}
	script, err := filepath.Abs(filepath.Join(contribDir, "completions", "_cryptpt"))
	must(t, err)
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n _cryptpt: %v\n%s", err, out)
	}
	stubs := `
_call_program() { shift; eval "$*" }
_wanted() { shift 3; "$@" }
compadd() { [[ $1 == -a ]] && print -l -- ${(P)2} }
_files() { print _files }
_directories() { print _directories }
_command_names() { print _command_names }
_message() { print _message }
_alternative() { print -l -- "$@" }
source ` + shellQuote(script) + ` >/dev/null 2>&1
`
	complete := func(words ...string) string {
		t.Helper()
		var b strings.Builder
		b.WriteString(stubs + "words=(")
		for _, w := range words {
			b.WriteString(shellQuote(w) + " ")
		}
		b.WriteString(")\nCURRENT=${#words}\nPREFIX=$words[-1]\n_cryptpt\n")
		out, err := exec.Command(zsh, "-f", "-c", b.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("zsh completion of %q: %v\n%s", words, err, out)
		}
		return "\n" + string(out)
	}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{binary, ""}, []string{"init", "mount", "fsck", "version"}},
		{[]string{binary, "fsck", "--"}, []string{"--repair", "--passfile", "--extpass", "--help"}},
		{[]string{binary, "mount", "-"}, []string{"-f", "--ro", "--config"}},
		{[]string{binary, "mount", "--config", ""}, []string{"_files"}},
		{[]string{binary, "status", ""}, []string{"mounts:cryptpt mount:compadd -a mps"}},
		{[]string{binary, "fsck", ""}, []string{"_directories"}},
	} {
		out := complete(tc.words...)
		for _, w := range tc.want {
			if !strings.Contains(out, "\n"+w+"\n") {
				t.Errorf("completing %q: %q not offered:%s", tc.words[1:], w, out)
			}
		}
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// The privileges cryptpt@.service gives the daemon: an ordinary user with
// CAP_SYS_ADMIN as its only, ambient capability and no new privileges. It
// mounts and unmounts by itself and gets passthrough.
func TestSystemUnitPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		must(t, os.Chmod("/dev/fuse", 0o666))
		t.Cleanup(func() { os.Chmod("/dev/fuse", st.Mode().Perm()) })
	}
	v := newCLIVault(t, "media/")
	must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
	filepath.Walk(v.dir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
	asUnit := func(args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=+sys_admin", "--ambient-caps=+sys_admin", "--bounding-set=-all,+sys_admin", "--no-new-privs", binary}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+v.dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asUnit("mount", "--config", v.config, "--passfile", v.pwfile, v.backing, v.mnt); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { asUnit("unmount", v.mnt) })
	out, err := asUnit("status", "--json", v.mnt)
	if err != nil || !strings.Contains(out, `"passthrough_active": true`) {
		t.Errorf("status under the unit's privileges: %v\n%s", err, out)
	}
	// The daemon holds keys: it is not dumpable, so its /proc files belong
	// to root and not to the user it runs as (no core dump, no ptrace).
	var st struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.PID == 0 {
		t.Fatalf("status has no daemon pid: %v\n%s", err, out)
	}
	var pst unix.Stat_t
	must(t, unix.Stat(fmt.Sprintf("/proc/%d/environ", st.PID), &pst))
	if pst.Uid != 0 {
		t.Errorf("/proc/%d/environ owned by uid %d: the daemon is dumpable", st.PID, pst.Uid)
	}
	if out, err := asUnit("unmount", v.mnt); err != nil {
		t.Errorf("unmount: %v\n%s", err, out)
	}
	waitMounted(t, v.mnt, false)
}
