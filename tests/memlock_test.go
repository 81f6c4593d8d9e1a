package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// vmLocked returns the locked memory (VmLck, KiB) of process pid.
func vmLocked(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmLck:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			must(t, err)
			return n
		}
	}
	t.Fatalf("no VmLck in /proc/%d/status", pid)
	return 0
}

// TestDaemonMemoryLock: the daemon locks its memory where that cannot fail
// a later allocation (root, or a limit raised to unlimited as
// LimitMEMLOCK=infinity in a system unit does) and otherwise locks none and
// logs what swap could get (docs/threat-model.md, "The daemon's own
// memory").
func TestDaemonMemoryLock(t *testing.T) {
	requireRoot(t)
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		must(t, os.Chmod("/dev/fuse", 0o666))
		t.Cleanup(func() { os.Chmod("/dev/fuse", st.Mode().Perm()) })
	}
	// The system unit's privileges (User=, CAP_SYS_ADMIN only), with the
	// locked-memory limit this test process has or an unlimited one.
	unit := func(unlimited bool, args ...string) *exec.Cmd {
		argv := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+sys_admin",
			"--ambient-caps=+sys_admin", "--bounding-set=-all,+sys_admin", "--no-new-privs", binary}, args...)
		if unlimited {
			return exec.Command("prlimit", append([]string{"--memlock=unlimited:unlimited", "setpriv"}, argv...)...)
		}
		return exec.Command("setpriv", argv...)
	}
	for _, tc := range []struct {
		name   string
		asUnit bool
		limit  bool // unlimited RLIMIT_MEMLOCK
		locked bool
		log    string
	}{
		{"root", false, false, true, "memory locked: keys never reach swap"},
		{"user", true, false, false, "memory not locked (needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK"},
		{"user with LimitMEMLOCK=infinity", true, true, true, "memory locked: keys never reach swap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.limit && !canRaiseMemlock() {
				t.Skip("cannot raise RLIMIT_MEMLOCK here: no CAP_SYS_RESOURCE (systemd, as PID 1, can)")
			}
			v := newCLIVault(t)
			args := []string{"mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt}
			status := func() ([]byte, error) { return exec.Command(binary, "status", "--json", v.mnt).Output() }
			if tc.asUnit {
				must(t, os.Chmod(filepath.Dir(v.dir), 0o755))
				filepath.Walk(v.dir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
				if out, err := unit(tc.limit, args...).CombinedOutput(); err != nil {
					t.Fatalf("mount: %v\n%s", err, out)
				}
				t.Cleanup(func() { unit(false, "unmount", v.mnt).Run() })
				status = func() ([]byte, error) {
					cmd := unit(false, "status", "--json", v.mnt)
					cmd.Env = append(os.Environ(), "HOME="+v.dir)
					return cmd.Output()
				}
			} else {
				v.mount(t)
			}
			out, err := status()
			var st struct {
				PID int `json:"pid"`
			}
			if err != nil || json.Unmarshal(out, &st) != nil || st.PID == 0 {
				t.Fatalf("status: %v\n%s", err, out)
			}
			if kb := vmLocked(t, st.PID); (kb > 0) != tc.locked {
				t.Errorf("the daemon has %d KiB locked, want locked = %v", kb, tc.locked)
			}
			logged, err := os.ReadFile(v.log)
			must(t, err)
			if !strings.Contains(string(logged), tc.log) {
				t.Errorf("the log lacks %q:\n%s", tc.log, logged)
			}
		})
	}
}

// canRaiseMemlock reports whether this process may raise RLIMIT_MEMLOCK to
// unlimited: its hard limit already is, or it holds CAP_SYS_RESOURCE.
func canRaiseMemlock() bool {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil && lim.Max == unix.RLIM_INFINITY {
		return true
	}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}
