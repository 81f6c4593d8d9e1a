package fs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"cryptpt/crypt"
	"cryptpt/fs"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// Names starting with crypt.ReservedPrefix belong to the vault where
// entries are plaintext, and are ordinary names where they are encrypted
// (docs/format.md). Where plaintext, every way of giving an entry such a
// name is EINVAL and looking one up is ENOENT (nothing can have it);
// where encrypted, such an entry is found by name like any other, also
// after a remount, when the kernel has forgotten the entry it was given at
// creation.
func TestReservedNames(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"pub/"}})
	must(t, os.Mkdir(tv.Path("pub"), 0o755))
	must(t, os.WriteFile(tv.Path("pub/p"), []byte("public"), 0o644))
	must(t, os.WriteFile(tv.Path("f"), []byte("secret"), 0o644))

	mine := []string{"~~mine", crypt.DirIVName, crypt.VaultConfigName + ".d/x"}
	must(t, os.WriteFile(tv.Path(mine[0]), []byte("mine"), 0o644))
	must(t, os.WriteFile(tv.Path(mine[1]), []byte("my diriv"), 0o644))
	must(t, os.Mkdir(tv.Path(crypt.VaultConfigName+".d"), 0o755))
	must(t, os.Symlink("target", tv.Path(mine[2])))

	for op, err := range map[string]error{
		"create":  os.WriteFile(tv.Path("pub/~~x"), nil, 0o644),
		"mkdir":   os.Mkdir(tv.Path("pub/"+crypt.DirIVName), 0o755),
		"mknod":   unix.Mkfifo(tv.Path("pub/~~fifo"), 0o644),
		"symlink": os.Symlink("x", tv.Path("pub/~~cFake")),
		"link":    os.Link(tv.Path("pub/p"), tv.Path("pub/~~link")),
		"rename":  os.Rename(tv.Path("pub/p"), tv.Path("pub/~~p")),
	} {
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s of a ~~ name where entries are plaintext: %v, want EINVAL", op, err)
		}
	}

	tv.Unmount(t)
	tv.Remount(t)
	for _, name := range []string{"pub/~~x", "pub/" + crypt.DirIVName, crypt.VaultConfigName + "x"} {
		if _, err := os.Lstat(tv.Path(name)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("lstat %s: %v, want ENOENT", name, err)
		}
	}
	if got, err := os.ReadFile(tv.Path(mine[0])); err != nil || string(got) != "mine" {
		t.Errorf("%s after a remount: %q, %v", mine[0], got, err)
	}
	if got, err := os.ReadFile(tv.Path(mine[1])); err != nil || string(got) != "my diriv" {
		t.Errorf("%s after a remount: %q, %v", mine[1], got, err)
	}
	if got, err := os.Readlink(tv.Path(mine[2])); err != nil || got != "target" {
		t.Errorf("%s after a remount: %q, %v", mine[2], got, err)
	}
	ents, err := os.ReadDir(tv.Mnt)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"f", "pub", crypt.DirIVName, mine[0], crypt.VaultConfigName + ".d"}; !slices.Equal(names, want) {
		t.Errorf("root lists %q, want %q", names, want)
	}
	// The vault's own files are untouched: the config still opens.
	if _, err := os.Stat(filepath.Join(tv.Backing, crypt.VaultConfigName)); err != nil {
		t.Error(err)
	}
}

// A vault file that fails authentication reads as a broken file: EIO, for
// every way its content, symlink target, xattr value or directory IV is
// reached, and one log line in one format naming what failed.
func TestAuthFailuresAreEIO(t *testing.T) {
	content := make([]byte, 10000)
	for i := range content {
		content[i] = byte(i)
	}
	type damage struct {
		name   string
		make   func(t *testing.T, tv *testvault.Vault) string // returns the vault name
		tamper func(t *testing.T, vaultPath string)
		probes map[string]func(tv *testvault.Vault) error
		part   string // what the log line says failed
	}
	file := func(t *testing.T, tv *testvault.Vault) string {
		return newBackingEntry(t, tv.Backing, func() { must(t, os.WriteFile(tv.Path("f"), content, 0o644)) })
	}
	rewrite := func(off int64, b []byte) func(t *testing.T, p string) {
		return func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			must(t, err)
			defer f.Close()
			_, err = f.WriteAt(b, off)
			must(t, err)
		}
	}
	cut := func(size int64) func(t *testing.T, p string) {
		return func(t *testing.T, p string) { must(t, os.Truncate(p, size)) }
	}
	read := func(tv *testvault.Vault) error { _, err := os.ReadFile(tv.Path("f")); return err }
	contentProbes := map[string]func(tv *testvault.Vault) error{
		"read": read,
		"write": func(tv *testvault.Vault) error {
			f, err := os.OpenFile(tv.Path("f"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteAt([]byte("x"), 10)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		},
		"truncate": func(tv *testvault.Vault) error { return os.Truncate(tv.Path("f"), 5) },
	}
	openProbes := map[string]func(tv *testvault.Vault) error{"read": read}
	cases := []damage{
		{"flipped block", file, rewrite(crypt.HeaderSize+100, []byte{0xff, 0xff}), contentProbes, "vault file"},
		{"impossible size", file, cut(crypt.HeaderSize + crypt.BlockOverhead), openProbes, "vault file"},
		{"bad header", file, rewrite(0, []byte("XXXX")), openProbes, "vault file"},
		{"shorter than its header", file, cut(crypt.HeaderSize - 1), openProbes, "vault file"},
		{"symlink target", func(t *testing.T, tv *testvault.Vault) string {
			return newBackingEntry(t, tv.Backing, func() { must(t, os.Symlink("somewhere", tv.Path("f"))) })
		}, func(t *testing.T, p string) {
			must(t, os.Remove(p))
			must(t, os.Symlink("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", p))
		}, map[string]func(tv *testvault.Vault) error{
			"readlink": func(tv *testvault.Vault) error { _, err := os.Readlink(tv.Path("f")); return err },
		}, "symlink target"},
		{"xattr value", func(t *testing.T, tv *testvault.Vault) string {
			p := file(t, tv)
			must(t, unix.Setxattr(tv.Path("f"), "user.x", []byte("value"), 0))
			return p
		}, func(t *testing.T, p string) {
			must(t, unix.Setxattr(p, "user.x", make([]byte, 40), 0))
		}, map[string]func(tv *testvault.Vault) error{
			"getxattr": func(tv *testvault.Vault) error {
				_, err := unix.Getxattr(tv.Path("f"), "user.x", make([]byte, 100))
				return err
			},
		}, `xattr "user.x"`},
		{"directory IV", func(t *testing.T, tv *testvault.Vault) string {
			return newBackingEntry(t, tv.Backing, func() { must(t, os.Mkdir(tv.Path("f"), 0o755)) })
		}, func(t *testing.T, p string) {
			must(t, os.Remove(filepath.Join(p, crypt.DirIVName)))
		}, map[string]func(tv *testvault.Vault) error{
			"create": func(tv *testvault.Vault) error { return os.WriteFile(tv.Path("f/new"), nil, 0o644) },
		}, "directory IV"},
	}
	// Without the writeback cache, writes reach encFile.Write as they are.
	for _, cache := range []string{"writeback", "direct"} {
		for _, c := range cases {
			for probe, do := range c.probes {
				t.Run(cache+"/"+c.name+"/"+probe, func(t *testing.T) {
					tv := testvault.New(t, testvault.Options{Options: fs.Options{NoWriteback: cache == "direct"}})
					p := c.make(t, tv)
					tv.Unmount(t)
					c.tamper(t, p)
					tv.Remount(t)
					before := len(tv.Log())
					if err := do(tv); !errors.Is(err, syscall.EIO) {
						t.Errorf("%v, want EIO", err)
					}
					logged := strings.TrimSpace(tv.Log()[before:])
					if logged == "" {
						t.Fatal("nothing logged")
					}
					for _, line := range strings.Split(logged, "\n") {
						if !strings.HasPrefix(line, "authentication failed: ") || !strings.Contains(line, "("+c.part) || !strings.Contains(line, filepath.Base(p)) {
							t.Errorf("log line %q, want \"authentication failed: ENTRY (%s…): …\" naming %s", line, c.part, filepath.Base(p))
						}
					}
					if st := tv.Mount.Status(); st.AuthFailures == 0 {
						t.Error("not counted")
					}
				})
			}
		}
	}
}

// An entry keeps its mode wherever it gets a name (placement): an
// encrypted one may go anywhere, as drift where the policy says plaintext;
// a plaintext one only where the policy keeps plaintext, else EXDEV. The
// same rule holds for rename, link and either side of an exchange, and an
// exchange of entries of two modes is EXDEV.
func TestPlacement(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"pub/"}})
	must(t, os.Mkdir(tv.Path("pub"), 0o755))
	for _, f := range []string{"e", "e2", "pub/p", "pub/p2"} {
		must(t, os.WriteFile(tv.Path(f), []byte(f), 0o644))
	}
	// A plaintext entry where the policy encrypts, as one planted in the
	// vault is (quarantined).
	tv.Unmount(t)
	must(t, os.WriteFile(filepath.Join(tv.Backing, "planted"), []byte("planted"), 0o644))
	tv.Remount(t)

	exchange := func(a, b string) error {
		return unix.Renameat2(unix.AT_FDCWD, tv.Path(a), unix.AT_FDCWD, tv.Path(b), unix.RENAME_EXCHANGE)
	}
	for what, err := range map[string]error{
		"rename plaintext to encrypted":          os.Rename(tv.Path("pub/p"), tv.Path("q")),
		"link plaintext to encrypted":            os.Link(tv.Path("pub/p"), tv.Path("q")),
		"exchange encrypted and plaintext":       exchange("e", "pub/p"),
		"exchange plaintext and encrypted":       exchange("pub/p", "e"),
		"exchange plaintext to encrypted (src)":  exchange("pub/p", "planted"),
		"exchange plaintext to encrypted (dest)": exchange("planted", "pub/p"),
	} {
		if !errors.Is(err, syscall.EXDEV) {
			t.Errorf("%s: %v, want EXDEV", what, err)
		}
	}
	must(t, os.Rename(tv.Path("e"), tv.Path("pub/e")))
	must(t, os.Link(tv.Path("e2"), tv.Path("pub/e2")))
	must(t, exchange("pub/p", "pub/p2"))
	must(t, exchange("pub/e", "e2"))
	mode := func(name string) string {
		buf := make([]byte, 20)
		n, err := unix.Getxattr(tv.Path(name), fs.ModeXattr, buf)
		if err != nil {
			return err.Error()
		}
		return string(buf[:n])
	}
	for name, want := range map[string]string{
		"pub/e": "encrypted", "e2": "encrypted", "pub/e2": "encrypted",
		"pub/p": "plaintext", "pub/p2": "plaintext", "planted": "plaintext",
	} {
		if got := mode(name); got != want {
			t.Errorf("%s is %s, want %s", name, got, want)
		}
	}
	for name, want := range map[string]string{"pub/e": "e2", "e2": "e", "pub/e2": "e2", "pub/p": "pub/p2", "pub/p2": "pub/p"} {
		if got, err := os.ReadFile(tv.Path(name)); err != nil || string(got) != want {
			t.Errorf("%s holds %q, %v; want %q", name, got, err, want)
		}
	}
	if drift := tv.Mount.Status().Drift; !slices.Contains(drift, "pub/e") || !slices.Contains(drift, "pub/e2") {
		t.Errorf("drift %q, want pub/e and pub/e2 among it", drift)
	}
}
