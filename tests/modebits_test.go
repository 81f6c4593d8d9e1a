package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	cfs "cryptpt/fs"
	"cryptpt/internal/testvault"
)

// TestBackingModeBitsNotAuthenticated shows what docs/threat-model.md says
// of the mode bits of backing files (issue 10, 7d): they are not
// authenticated. Someone who can write the vault makes root's 0600
// encrypted file 0644 in the vault, and another user then reads it through
// an --allow-other mount. The mitigation is the vault directory's mode
// 0700: another user can then neither read nor replace anything in it.
func TestBackingModeBitsNotAuthenticated(t *testing.T) {
	requireRoot(t)
	tv := testvault.New(t, testvault.Options{Options: cfs.Options{AllowOther: true}})
	openTo755(t, tv.Mnt)
	secret := canary(t, 64)
	must(t, os.WriteFile(tv.Path("secret"), secret, 0o600))
	stored := filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, "secret"))
	if _, _, code := asNobody(nil, "cat", tv.Path("secret")); code == 0 {
		t.Fatal("another user read a 0600 file through the mount")
	}

	// The vault's writer (root here) widens the backing file's mode.
	must(t, os.Chmod(stored, 0o644))
	dropCaches(t)
	out, stderr, code := asNobody(nil, "cat", tv.Path("secret"))
	if code != 0 || out != string(secret) {
		t.Errorf("after chmod 644 in the vault, another user's read through the mount: exit %d (%s); the threat model says it succeeds", code, strings.TrimSpace(stderr))
	}

	// With the vault directory 0700, another user reaches nothing in it.
	must(t, os.Chmod(stored, 0o600))
	must(t, os.Chmod(tv.Backing, 0o700))
	for _, args := range [][]string{{"ls", tv.Backing}, {"cat", stored}, {"chmod", "644", stored}, {"touch", filepath.Join(tv.Backing, "planted")}} {
		if _, _, code := asNobody(nil, args[0], args[1:]...); code == 0 {
			t.Errorf("another user ran %v in a 0700 vault", args)
		}
	}
}
