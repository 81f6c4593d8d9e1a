package tests

import (
	bin "encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	cfs "cryptpt/fs"

	"golang.org/x/sys/unix"
)

// buildHelper builds cryptpt-ptreg into a directory every user can reach and
// gives it its one capability, as make install does.
func buildHelper(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir, err := os.MkdirTemp("", "cryptpt-ptreg-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	helper := filepath.Join(dir, "cryptpt-ptreg")
	buildHelperAt(t, helper)
	return helper
}

// buildHelperAt builds cryptpt-ptreg at path and sets its capability.
func buildHelperAt(t *testing.T, path string) {
	t.Helper()
	requireRoot(t)
	if out, err := exec.Command("go", "build", "-o", path, "../cmd/cryptpt-ptreg").CombinedOutput(); err != nil {
		t.Fatalf("build cryptpt-ptreg: %v\n%s", err, out)
	}
	if out, err := exec.Command("setcap", "cap_sys_admin+ep", path).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v\n%s", err, out)
	}
}

// TestHomePtreg mounts an encrypted home with its daemon running as the user
// with no capability, and the helper registering the backing files: status
// says "passthrough via helper" and a plaintext Videos/ file is served by
// passthrough, not by the daemon.
func TestHomePtreg(t *testing.T) {
	openFuse(t)
	helper := buildHelper(t)
	u := newHomeUser(t, "cpt-ptreg", "pw-ptreg", "")
	if _, e, code := u.initHome(t); code != 0 {
		t.Fatalf("home init: %d %s", code, e)
	}
	cmd := exec.Command(binary, "home", "mount", "--passfile", u.pwfile, u.name)
	cmd.Env = append(os.Environ(), "CRYPTPT_PTREG="+helper)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("home mount: %v\n%s", err, out)
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(u.asUser(t, "id -u", nil)))
	if ce := capEff(t, daemonOf(t, uid, u.home)); ce != "0000000000000000" {
		t.Errorf("daemon CapEff %s, want 0", ce)
	}
	text := u.asUser(t, binary+" status ~", nil)
	if !strings.Contains(text, "passthrough via helper") {
		t.Errorf("status does not say passthrough via helper:\n%s", text)
	}
	u.asUser(t, "cat ~/Videos/film.mkv > /dev/null", nil)
	var st cfs.Status
	must(t, json.Unmarshal([]byte(u.asUser(t, binary+" status --json ~", nil)), &st))
	if !st.PassthroughActive {
		t.Fatalf("passthrough off: %s", st.PassthroughReason)
	}
	if st.PlainOpensPassthrough < 1 || st.PlainOpensDaemon != 0 || st.PlainBytes != 0 {
		t.Errorf("Videos/film.mkv was not served by passthrough: %d passthrough opens, %d daemon opens, %d bytes via the daemon",
			st.PlainOpensPassthrough, st.PlainOpensDaemon, st.PlainBytes)
	}
}

// TestHomePtregChecks talks to the helper directly: it takes only the FUSE
// device as its first fd, only regular files opened for I/O as backing
// files, closes only ids it registered, and refuses to run without its
// socket.
func TestHomePtregChecks(t *testing.T) {
	helper := buildHelper(t)
	if out, err := exec.Command(helper).CombinedOutput(); err == nil || !strings.Contains(string(out), "run by the cryptpt daemon only") {
		t.Errorf("helper run by hand: %v %s", err, out)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	theirs := os.NewFile(uintptr(pair[1]), "ptreg")
	cmd := exec.Command(helper)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	theirs.Close()
	t.Cleanup(func() { unix.Close(pair[0]); cmd.Wait() })
	call := func(op byte, id int32, f *os.File) int32 {
		t.Helper()
		req := make([]byte, 5)
		req[0] = op
		bin.LittleEndian.PutUint32(req[1:], uint32(id))
		var oob []byte
		if f != nil {
			oob = unix.UnixRights(int(f.Fd()))
		}
		must(t, unix.Sendmsg(pair[0], req, oob, nil, 0))
		reply := make([]byte, 4)
		n, err := unix.Read(pair[0], reply)
		if err != nil || n != 4 {
			t.Fatalf("helper reply: %d %v", n, err)
		}
		return int32(bin.LittleEndian.Uint32(reply))
	}
	regular, err := os.Create(filepath.Join(t.TempDir(), "f"))
	must(t, err)
	defer regular.Close()
	dir, err := os.Open(t.TempDir())
	must(t, err)
	defer dir.Close()
	opath, err := os.OpenFile(regular.Name(), unix.O_PATH, 0)
	must(t, err)
	defer opath.Close()
	fuse, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	must(t, err)
	defer fuse.Close()

	einval := -int32(syscall.EINVAL)
	if got := call('O', 0, regular); got != einval {
		t.Errorf("backing file before the FUSE fd: %d, want EINVAL", got)
	}
	if got := call('F', 0, regular); got != einval {
		t.Errorf("a regular file as the FUSE fd: %d, want EINVAL", got)
	}
	if got := call('F', 0, fuse); got != 0 {
		t.Fatalf("the FUSE device: %d, want 0", got)
	}
	if got := call('F', 0, fuse); got != einval {
		t.Errorf("a second FUSE fd: %d, want EINVAL", got)
	}
	if got := call('O', 0, dir); got != einval {
		t.Errorf("a directory as backing file: %d, want EINVAL", got)
	}
	if got := call('O', 0, opath); got != einval {
		t.Errorf("an O_PATH fd as backing file: %d, want EINVAL", got)
	}
	if got := call('O', 0, nil); got != einval {
		t.Errorf("no fd: %d, want EINVAL", got)
	}
	if got := call('C', 7, nil); got != -int32(syscall.ENOENT) {
		t.Errorf("closing an id it never registered: %d, want ENOENT", got)
	}
	if got := call('X', 0, nil); got != einval {
		t.Errorf("unknown op: %d, want EINVAL", got)
	}
}

// TestPassthroughAdviceHelper mounts as an unprivileged user (nobody), once
// with no helper to be found and once with a helper that lacks its
// capability, and reads status: both times passthrough is off, and the
// advice names the helper first (with the exact setcap line for the one the
// daemon ran), then the system unit, then setcap on cryptpt with its
// warning.
func TestPassthroughAdviceHelper(t *testing.T) {
	openFuse(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv")
	}
	// A helper built without its capability, where nobody can run it.
	dir, err := os.MkdirTemp("", "cryptpt-ptreg-nocap-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	nocap := filepath.Join(dir, "cryptpt-ptreg")
	if out, err := exec.Command("go", "build", "-o", nocap, "../cmd/cryptpt-ptreg").CombinedOutput(); err != nil {
		t.Fatalf("build cryptpt-ptreg: %v\n%s", err, out)
	}
	// Where make install put the helper, if it did on this machine: status
	// names it instead of suggesting make install.
	installed := []string{"\"sudo make install\"", "/usr/local/lib/cryptpt/cryptpt-ptreg with its capability"}
	if _, err := os.Stat("/usr/local/lib/cryptpt/cryptpt-ptreg"); err == nil {
		installed = []string{"/usr/local/lib/cryptpt/cryptpt-ptreg", "this cryptpt does not look there: set CRYPTPT_PTREG=/usr/local/lib/cryptpt/cryptpt-ptreg"}
	}
	for _, tc := range []struct {
		name, helper string
		want         []string // in this order
	}{
		{"no helper", "", append(append([]string{"passthrough:  off", "CAP_SYS_ADMIN", "cryptpt-ptreg"},
			installed...), "then mount again",
			"cryptpt@nobody.service", "setcap cap_sys_admin+ep $(command -v cryptpt)", "to every user who can run that binary")},
		{"helper without capability", nocap, []string{
			"passthrough:  off", "the passthrough helper " + nocap + " failed", "cryptpt-ptreg",
			"\"sudo setcap cap_sys_admin+ep " + nocap + "\"",
			"cryptpt@nobody.service", "setcap cap_sys_admin+ep $(command -v cryptpt)", "to every user who can run that binary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newCLIVault(t, "media/")
			for _, p := range []string{v.dir, v.backing, v.mnt, v.pwfile, v.config} {
				must(t, os.Chown(p, 65534, 65534))
			}
			filepath.Walk(v.backing, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
			for p := v.dir; p != os.TempDir(); p = filepath.Dir(p) {
				os.Chmod(p, 0o755)
			}
			asNobody := func(args ...string) ([]byte, error) {
				cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", binary}, args...)...)
				cmd.Env = append(os.Environ(), "HOME="+v.dir, "CRYPTPT_PTREG="+tc.helper)
				return cmd.CombinedOutput()
			}
			if out, err := asNobody("mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt); err != nil {
				t.Fatalf("mount as nobody: %v\n%s", err, out)
			}
			t.Cleanup(func() { asNobody("unmount", v.mnt) })
			out, err := asNobody("status", v.mnt)
			if err != nil {
				t.Fatalf("status: %v\n%s", err, out)
			}
			text := string(out)
			at := 0
			for _, w := range tc.want {
				i := strings.Index(text[at:], w)
				if i < 0 {
					t.Fatalf("status lacks %q after byte %d (the advice in order: %q):\n%s", w, at, tc.want, text)
				}
				at += i + len(w)
			}
		})
	}
}
