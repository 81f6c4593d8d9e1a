package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"cryptpt/internal/fstest"
)

// goldenEntry is one line of a golden vault's manifest.json: what the mount
// showed when the vault was written.
type goldenEntry struct {
	Path   string            `json:"path"`
	Mode   string            `json:"mode"`
	Type   string            `json:"type"`
	Size   int64             `json:"size"`
	SHA256 string            `json:"sha256"`
	Target string            `json:"target"`
	Xattrs map[string]string `json:"xattrs"`
	Stored string            `json:"stored"`
}

// unpackGolden extracts the golden vault of format version ver into a
// cliVault whose password and policy are the ones it was written with.
func unpackGolden(t *testing.T, ver string) (*cliVault, []goldenEntry) {
	t.Helper()
	fstest.RequireFUSE(t)
	src := filepath.Join("testdata", "vaults", ver)
	dir := t.TempDir()
	v := &cliVault{
		dir:     dir,
		backing: filepath.Join(dir, "vault"),
		mnt:     filepath.Join(dir, "mnt"),
		pwfile:  filepath.Join(src, "password"),
		config:  filepath.Join(src, "config.toml"),
		log:     filepath.Join(dir, "daemon.log"),
	}
	must(t, os.Mkdir(v.mnt, 0o755))
	tar := exec.Command("tar", "--xattrs", "--xattrs-include=user.*", "-xf", filepath.Join(src, "vault.tar"), "-C", dir)
	if out, err := tar.CombinedOutput(); err != nil {
		t.Fatalf("unpack golden vault: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(src, "manifest.json"))
	must(t, err)
	var want []goldenEntry
	must(t, json.Unmarshal(data, &want))
	return v, want
}

// checkGolden compares the mount with the manifest, entry by entry.
func checkGolden(t *testing.T, v *cliVault, want []goldenEntry) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range want {
		seen[e.Path] = true
		p := v.path(e.Path)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		if got := fmt.Sprintf("%o", st.Mode&07777); got != e.Mode {
			t.Errorf("%s: mode %s, want %s", e.Path, got, e.Mode)
		}
		if got := storedMode(t, p); got != e.Stored {
			t.Errorf("%s: stored %s, want %s", e.Path, got, e.Stored)
		}
		switch e.Type {
		case "file":
			data, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: %v", e.Path, err)
				continue
			}
			sum := sha256.Sum256(data)
			if int64(len(data)) != e.Size || hex.EncodeToString(sum[:]) != e.SHA256 {
				t.Errorf("%s: %d bytes with another hash, want %d bytes", e.Path, len(data), e.Size)
			}
		case "symlink":
			target, err := os.Readlink(p)
			if err != nil || target != e.Target {
				t.Errorf("%s: target %q (%v), want %q", e.Path, target, err, e.Target)
			}
		case "dir":
			if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
				t.Errorf("%s: not a directory", e.Path)
			}
		case "fifo":
			if st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
				t.Errorf("%s: not a FIFO", e.Path)
			}
		}
		for name, val := range e.Xattrs {
			buf := make([]byte, 256)
			n, err := unix.Lgetxattr(p, name, buf)
			if err != nil || string(buf[:n]) != val {
				t.Errorf("%s: xattr %s = %q (%v), want %q", e.Path, name, buf[:max(n, 0)], err, val)
			}
		}
	}
	// Nothing more than the manifest lists.
	must(t, filepath.Walk(v.mnt, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(v.mnt, p)
		if rel != "." && !seen[rel] {
			t.Errorf("%s: in the mount but not in the manifest", rel)
		}
		return nil
	}))
}

// TestGoldenVaultV1 mounts the vault written by the first release's format
// and finds every entry as it was written; it then takes new files, and fsck
// finds it clean.
func TestGoldenVaultV1(t *testing.T) {
	v, want := unpackGolden(t, "v1")
	if out := run(t, "info", v.backing); !strings.Contains(out, "format:         1 ") {
		t.Errorf("info does not name format 1:\n%s", out)
	}
	v.mount(t)
	checkGolden(t, v, want)

	fresh := canary(t, 9000)
	must(t, os.WriteFile(v.path("Documents/new.bin"), fresh, 0o600))
	must(t, os.WriteFile(v.path("small.txt"), []byte("appended"), 0o644))
	got, err := os.ReadFile(v.path("Documents/new.bin"))
	must(t, err)
	if string(got) != string(fresh) {
		t.Fatal("a file written to the old vault reads back wrong")
	}
	v.unmount(t)
	noCanaries(t, v.backing, fresh)
	// A format-1 vault keeps writing format 1, which the cryptpt that made
	// it can read.
	must(t, filepath.Walk(v.backing, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() || fi.Size() < 6 {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil && string(data[:4]) == "CPT\x00" && (data[4] != 0 || data[5] != 1) {
			t.Errorf("%s: content format %d in a format-1 vault", p, int(data[4])<<8|int(data[5]))
		}
		return err
	}))
	out, errOut, code := cryptpt("fsck", "--passfile", v.pwfile, v.backing)
	if code != 0 {
		t.Fatalf("fsck of the old vault after writes: exit %d\n%s%s", code, out, errOut)
	}
}
