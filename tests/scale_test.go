package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManyDirectories creates and walks far more directories than the
// daemon's fd limit, in an encrypted and a plaintext area, with the daemon
// under a hard limit on open files (prlimit): the mount must keep working
// and every file stay reachable. Before the directory fds were bounded, each
// directory the kernel knew held one, and 30,000 directories broke a mount
// with a limit of 20,000. make test: 2 x 4,000 directories under a limit of
// 1,024; CRYPTPT_STRESS=1: 2 x 200,000 directories and files under 4,096.
func TestManyDirectories(t *testing.T) {
	top, per, limit := 40, 100, 1024
	if stressRun() {
		top, per, limit = 400, 500, 4096
	}
	v := newCLIVault(t, "plain/")
	args := []string{fmt.Sprintf("--nofile=%d:%d", limit, limit), binary, "mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log, v.backing, v.mnt}
	if out, err := exec.Command("prlimit", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount under prlimit: %v\n%s", err, out)
	}
	t.Cleanup(func() { cryptpt("unmount", v.mnt) })
	for _, area := range []string{"enc", "plain"} {
		// One shell per area makes the tree; xargs keeps argv short.
		script := fmt.Sprintf(`set -e
cd "$1"
for i in $(seq 1 %d); do
  mkdir "d$i"
  (cd "d$i" && seq 1 %d | xargs mkdir && for j in $(seq 1 %d); do echo $j > $j/f; done)
done`, top, per, per)
		must(t, os.MkdirAll(v.path(area), 0o755))
		if out, err := exec.Command("sh", "-c", script, "sh", v.path(area)).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s\n%s", area, err, out, readLog(v))
		}
	}
	must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0o200))
	out, err := exec.Command("find", v.mnt, "-name", "f", "-type", "f").Output()
	if err != nil {
		t.Fatalf("find: %v\n%s", err, readLog(v))
	}
	if got, want := strings.Count(string(out), "\n"), 2*top*per; got != want {
		t.Fatalf("find saw %d files, want %d", got, want)
	}
	// Every file, read back.
	for _, area := range []string{"enc", "plain"} {
		for i := 1; i <= top; i += max(top/10, 1) {
			for j := 1; j <= per; j++ {
				p := v.path(filepath.Join(area, fmt.Sprintf("d%d", i), fmt.Sprint(j), "f"))
				if got, err := os.ReadFile(p); err != nil || strings.TrimSpace(string(got)) != fmt.Sprint(j) {
					t.Fatalf("%s: %q, %v", p, got, err)
				}
			}
		}
	}
	st := v.status(t)
	if st.DirFds > st.MaxDirFds || st.MaxDirFds > limit/4 {
		t.Errorf("%d directory fds open, bound %d, fd limit %d", st.DirFds, st.MaxDirFds, limit)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID))
	must(t, err)
	t.Logf("%d directories and files in each area; daemon %s, %d directory fds (bound %d)",
		top*per, regexp.MustCompile(`VmRSS:\s*\d+ kB`).Find(status), st.DirFds, st.MaxDirFds)
}
