package tests

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// TestInstall runs "make install DESTDIR=..." and "make uninstall" and checks
// every file, its mode, the paths rewritten into the units, and that the man
// page has every option of every command.
func TestInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed to test make install")
	}
	for _, prefix := range []string{"/usr/local", "/opt/cryptpt"} {
		t.Run(strings.ReplaceAll(prefix, "/", "_"), func(t *testing.T) {
			dest := t.TempDir()
			out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+dest, "PREFIX="+prefix).CombinedOutput()
			if err != nil {
				t.Fatalf("make install: %v\n%s", err, out)
			}
			want := map[string]fs.FileMode{
				prefix + "/bin/cryptpt":                               0o755,
				prefix + "/lib/cryptpt/cryptpt-ptreg":                 0o755,
				"/sbin/mount.fuse.cryptpt":                            0o755,
				prefix + "/lib/systemd/system/cryptpt@.service":       0o644,
				prefix + "/lib/systemd/user/cryptpt.service":          0o644,
				prefix + "/share/bash-completion/completions/cryptpt": 0o644,
				prefix + "/share/zsh/site-functions/_cryptpt":         0o644,
				prefix + "/share/man/man1/cryptpt.1":                  0o644,
				prefix + "/share/doc/cryptpt/README.md":               0o644,
				prefix + "/share/doc/cryptpt/contrib.md":              0o644,
				"/usr/share/pam-configs/cryptpt":                      0o644,
			}
			docs, _ := filepath.Glob("../docs/*.md")
			for _, d := range docs {
				want[prefix+"/share/doc/cryptpt/"+filepath.Base(d)] = 0o644
			}
			got := installedFiles(t, dest)
			for p, mode := range want {
				m, ok := got[p]
				if !ok {
					t.Errorf("%s not installed", p)
				} else if m != mode {
					t.Errorf("%s: mode %v, want %v", p, m, mode)
				}
			}
			for p := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("unexpected file %s", p)
				}
			}
			if out, err := exec.Command(dest+prefix+"/bin/cryptpt", "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "cryptpt ") {
				t.Errorf("installed cryptpt version: %v %s", err, out)
			}
			for _, unit := range []string{prefix + "/lib/systemd/system/cryptpt@.service", prefix + "/lib/systemd/user/cryptpt.service", "/usr/share/pam-configs/cryptpt"} {
				data, err := os.ReadFile(dest + unit)
				must(t, err)
				if !strings.Contains(string(data), " "+prefix+"/bin/cryptpt home pam") && !strings.Contains(string(data), "ExecStart="+prefix+"/bin/cryptpt mount") {
					t.Errorf("%s does not run %s/bin/cryptpt", unit, prefix)
				}
				if prefix != "/usr/local" && strings.Contains(string(data), "/usr/local/") {
					t.Errorf("%s still names /usr/local", unit)
				}
			}
			if getcap, err := exec.LookPath("getcap"); err == nil && os.Geteuid() == 0 {
				out, _ := exec.Command(getcap, dest+prefix+"/lib/cryptpt/cryptpt-ptreg").CombinedOutput()
				if !strings.Contains(string(out), "cap_sys_admin=ep") {
					t.Errorf("the installed helper lacks cap_sys_admin=ep: %s", out)
				}
			}
			checkManPage(t, dest+prefix+"/share/man/man1/cryptpt.1")

			out, err = exec.Command("make", "-C", "..", "uninstall", "DESTDIR="+dest, "PREFIX="+prefix).CombinedOutput()
			if err != nil {
				t.Fatalf("make uninstall: %v\n%s", err, out)
			}
			if left := installedFiles(t, dest); len(left) > 0 {
				var names []string
				for p := range left {
					names = append(names, p)
				}
				sort.Strings(names)
				t.Errorf("left after uninstall: %v", names)
			}
		})
	}
}

func installedFiles(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	files := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(p, root)] = info.Mode()
		return nil
	})
	must(t, err)
	return files
}

// checkManPage checks that the man page names every command and every option
// that the commands' --help lists, and that man(1) formats it without warnings.
func checkManPage(t *testing.T, page string) {
	t.Helper()
	data, err := os.ReadFile(page)
	must(t, err)
	roff := strings.ReplaceAll(string(data), `\-`, "-")
	usage, _, _ := cryptpt("--help")
	cmdRe := regexp.MustCompile(`(?m)^  cryptpt (\S+)`)
	flagRe := regexp.MustCompile(`(?m)^  -(\S+)`)
	for _, m := range cmdRe.FindAllStringSubmatch(usage, -1) {
		cmd := m[1]
		if !strings.Contains(roff, ".SS "+cmd+"\n") && cmd != "version" {
			t.Errorf("man page has no section for %s", cmd)
		}
		_, help, _ := cryptpt(cmd, "--help")
		// A command with subcommands lists them as "  cryptpt CMD SUB".
		subRe := regexp.MustCompile(`(?m)^  cryptpt ` + cmd + ` +(\w+)`)
		for _, sub := range subRe.FindAllStringSubmatch(help, -1) {
			if !strings.Contains(roff, ".SS \""+cmd+" "+sub[1]+"\"\n") {
				t.Errorf("man page has no section for %s %s", cmd, sub[1])
			}
			_, subHelp, _ := cryptpt(cmd, sub[1], "--help")
			help += subHelp
		}
		nflags := 0
		for _, f := range flagRe.FindAllStringSubmatch(help, -1) {
			if !strings.Contains(roff, `\fB--`+f[1]+`\fR`) {
				t.Errorf("man page lacks %s --%s", cmd, f[1])
			}
			nflags++
		}
		// Commands that take no options: their --help lists none.
		if nflags == 0 && !slices.Contains([]string{"version", "reload", "info"}, cmd) {
			t.Errorf("%s --help lists no options: the check reads the wrong stream", cmd)
		}
	}
	if _, err := exec.LookPath("man"); err == nil {
		cmd := exec.Command("man", "--warnings", "-l", page)
		cmd.Env = append(os.Environ(), "MANWIDTH=80")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("man -l %s: %v", page, err)
		}
		if strings.Contains(string(out), "warning") {
			t.Errorf("man warns about the page:\n%s", out)
		}
	}
}
