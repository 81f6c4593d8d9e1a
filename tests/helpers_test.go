// Package tests holds cryptpt's integration tests: they build the binary,
// create vaults, mount them for real and look at both the mount and the vault.
package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cfs "cryptpt/fs"
	"cryptpt/internal/fstest"

	"golang.org/x/sys/unix"
)

// binary is the cryptpt executable built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cryptpt-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Readable by all: one test runs the binary as an unprivileged user.
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "cryptpt")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/cryptpt").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build cryptpt: %v\n%s", err, out)
		os.Exit(1)
	}
	// go-fuse answers ENOTSUP to an error that is not an errno, with
	// a line to the standard logger (the in-process mounts' daemon).
	var goFuseLog bytes.Buffer
	log.SetOutput(io.MultiWriter(os.Stderr, &goFuseLog))
	code := m.Run()
	os.RemoveAll(dir)
	if bytes.Contains(goFuseLog.Bytes(), []byte("can't convert error type")) {
		fmt.Fprintln(os.Stderr, "FAIL: go-fuse was given an error that is not an errno (logged above)")
		code = 1
	}
	os.Exit(code)
}

// cliVault is a vault made and mounted with the cryptpt command.
type cliVault struct {
	dir, backing, mnt, pwfile, config, log string
}

// newCLIVault runs "cryptpt init" with a cheap KDF and writes a policy.
func newCLIVault(t *testing.T, plaintext ...string) *cliVault {
	t.Helper()
	fstest.RequireFUSE(t)
	dir := t.TempDir()
	v := &cliVault{
		dir:     dir,
		backing: filepath.Join(dir, "vault"),
		mnt:     filepath.Join(dir, "mnt"),
		pwfile:  filepath.Join(dir, "pw"),
		config:  filepath.Join(dir, "config.toml"),
		log:     filepath.Join(dir, "daemon.log"),
	}
	must(t, os.Mkdir(v.mnt, 0o755))
	must(t, os.WriteFile(v.pwfile, []byte("correct horse\n"), 0o600))
	quoted := make([]string, len(plaintext))
	for i, p := range plaintext {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	must(t, os.WriteFile(v.config, []byte("[policy]\nplaintext = ["+strings.Join(quoted, ", ")+"]\n"), 0o600))
	run(t, "init", "--passfile", v.pwfile, "--kdf-time", "2", "--kdf-memory", "19456", v.backing)
	return v
}

// mount mounts the vault in the background and unmounts it when the test ends.
func (v *cliVault) mount(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"mount", "--config", v.config, "--passfile", v.pwfile, "--log", v.log}, extra...)
	run(t, append(args, v.backing, v.mnt)...)
	t.Cleanup(func() {
		if m, _ := cfs.FindMount(v.mnt); m == v.mnt {
			cryptpt("unmount", v.mnt)
		}
	})
}

func (v *cliVault) unmount(t *testing.T) {
	t.Helper()
	run(t, "unmount", v.mnt)
}

func (v *cliVault) status(t *testing.T) cfs.Status {
	t.Helper()
	out := run(t, "status", "--json", v.mnt)
	var st cfs.Status
	must(t, json.Unmarshal([]byte(out), &st))
	return st
}

func (v *cliVault) path(rel string) string { return filepath.Join(v.mnt, rel) }

// cryptpt runs the binary and returns stdout, stderr and the exit code.
func cryptpt(args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Stdin = strings.NewReader("")
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code
}

// run runs cryptpt and fails the test unless it exits 0.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := cryptpt(args...)
	if code != 0 {
		t.Fatalf("cryptpt %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// canary returns n random bytes that cannot occur in the vault by chance.
func canary(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// vaultContains reports the vault files that contain needle.
func vaultContains(t *testing.T, backing string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(backing, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(p, string(needle)) {
			hits = append(hits, p+" (name)")
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) {
			hits = append(hits, p)
		}
		return nil
	})
	must(t, err)
	return hits
}

// storedMode asks the daemon for an entry's stored mode.
func storedMode(t *testing.T, path string) string {
	t.Helper()
	buf := make([]byte, 32)
	n, err := unix.Lgetxattr(path, cfs.ModeXattr, buf)
	if err != nil {
		t.Fatalf("stored mode of %s: %v", path, err)
	}
	return string(buf[:n])
}
