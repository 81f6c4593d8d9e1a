package layout

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// openDir opens dir as the mount holds its directories: O_PATH.
func openDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// temps lists the temp files left in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), crypt.TempPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestReadSmallFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "ok"), []byte("sixteen bytes iv"), 0o400))
	must(os.WriteFile(filepath.Join(dir, "max"), make([]byte, MaxSmallFile), 0o400))
	must(os.WriteFile(filepath.Join(dir, "big"), make([]byte, MaxSmallFile+1), 0o400))
	must(os.Symlink("ok", filepath.Join(dir, "link")))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	must(os.Mkdir(filepath.Join(dir, "dir"), 0o700))
	fd := openDir(t, dir)

	for _, tc := range []struct {
		name string
		size int   // wanted length on success
		err  error // wanted error (errors.Is), nil for success
	}{
		{"ok", 16, nil},
		{"max", MaxSmallFile, nil},
		{"big", 0, ErrTooLarge},
		{"link", 0, unix.ELOOP},    // never followed
		{"fifo", 0, ErrNotRegular}, // and the open does not block
		{"dir", 0, ErrNotRegular},
		{"missing", 0, unix.ENOENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := ReadSmallFile(fd, tc.name)
			if tc.err == nil {
				if err != nil || len(data) != tc.size {
					t.Fatalf("got %d bytes, %v; want %d bytes", len(data), err, tc.size)
				}
				return
			}
			if !errors.Is(err, tc.err) || data != nil {
				t.Fatalf("got %d bytes, %v; want %v", len(data), err, tc.err)
			}
		})
	}
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	t.Run("new and replaced", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fd := openDir(t, dir)
		for _, data := range []string{"first", "second"} {
			if err := WriteFile(fd, "f", []byte(data), WriteOptions{Perm: 0o400}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "f"))
			if err != nil || string(got) != data {
				t.Fatalf("got %q, %v; want %q", got, err, data)
			}
		}
		if st, err := os.Stat(filepath.Join(dir, "f")); err != nil || st.Mode().Perm() != 0o400 {
			t.Fatalf("mode %v, %v", st.Mode(), err)
		}
		if tmp := temps(t, dir); tmp != nil {
			t.Fatalf("temp files left: %v", tmp)
		}
	})
	t.Run("no replace", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fd := openDir(t, dir)
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := WriteFile(fd, "f", []byte("new"), WriteOptions{Perm: 0o400, NoReplace: true})
		if !errors.Is(err, os.ErrExist) {
			t.Fatalf("got %v, want EEXIST", err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "old" {
			t.Fatalf("replaced: %q", got)
		}
		if tmp := temps(t, dir); tmp != nil {
			t.Fatalf("temp files left: %v", tmp)
		}
	})
	t.Run("failure leaves no temp file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fd := openDir(t, dir)
		if err := os.MkdirAll(filepath.Join(dir, "d", "child"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(fd, "d", []byte("x"), WriteOptions{Perm: 0o400}); err == nil {
			t.Fatal("replaced a directory")
		}
		boom := errors.New("boom")
		if err := WriteFile(fd, "f", []byte("x"), WriteOptions{Perm: 0o400, Prepare: func(int) error { return boom }}); !errors.Is(err, boom) {
			t.Fatalf("got %v, want the Prepare error", err)
		}
		if tmp := temps(t, dir); tmp != nil {
			t.Fatalf("temp files left: %v", tmp)
		}
	})
	t.Run("crash leaves the old file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		fd := openDir(t, dir)
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		crash := errors.New("killed")
		err := WriteFile(fd, "f", []byte("new"), WriteOptions{Perm: 0o400, Hook: func(step string) error {
			if step == StepClose {
				return crash
			}
			return nil
		}})
		if !errors.Is(err, crash) {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "old" {
			t.Fatalf("got %q", got)
		}
		if tmp := temps(t, dir); len(tmp) != 1 {
			t.Fatalf("want the temp file a kill leaves, got %v", tmp)
		}
	})
}

func TestCreateDirIV(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fd := openDir(t, dir)
	if _, err := ReadDirIV(fd); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("got %v, want ENOENT", err)
	}
	first, err := CreateDirIV(fd, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second writer, having lost the race, gets the first one's IV.
	second, err := CreateDirIV(fd, nil)
	if err != nil || *second != *first {
		t.Fatalf("second IV %x, %v; want %x", second, err, first)
	}
	if got, err := ReadDirIV(fd); err != nil || *got != *first {
		t.Fatalf("read %x, %v", got, err)
	}
}

func testKeys(t *testing.T) *crypt.Keys {
	t.Helper()
	var master [32]byte
	master[0] = 1
	k, err := crypt.NewKeys(&master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSymlink(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	iv, other := new([crypt.DirIVSize]byte), new([crypt.DirIVSize]byte)
	other[0] = 1
	target := []byte("../some/where")
	for _, version := range []uint16{crypt.FormatV1, crypt.FormatVersion} {
		stored := []byte(SealSymlink(k, version, iv, "link", target))
		if !IsSealedSymlink(stored) || SymlinkSize(int64(len(stored))) != int64(len(target)) {
			t.Fatalf("format %d: stored form %q", version, stored)
		}
		for _, formats := range [][]uint16{Formats(crypt.FormatV1), Formats(crypt.FormatVersion), Formats(0)} {
			got, err := OpenSymlink(k, formats, iv, "link", stored)
			if err != nil || !bytes.Equal(got, target) {
				t.Fatalf("format %d, trying %v: %q, %v", version, formats, got, err)
			}
		}
		if version == crypt.FormatV1 {
			continue
		}
		// Format 2 binds the target to its name and directory.
		if _, err := OpenSymlink(k, Formats(0), iv, "other", stored); !errors.Is(err, crypt.ErrAuth) {
			t.Fatalf("opened under another name: %v", err)
		}
		if _, err := OpenSymlink(k, Formats(0), other, "link", stored); !errors.Is(err, crypt.ErrAuth) {
			t.Fatalf("opened in another directory: %v", err)
		}
	}
	if _, err := OpenSymlink(k, Formats(0), iv, "link", []byte("/etc/passwd")); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("got %v, want ErrNotSealed", err)
	}
	if SymlinkSize(3) != 0 {
		t.Fatal("size of a stub target")
	}
}

func TestXattr(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	id, other := new([16]byte), new([16]byte)
	other[0] = 1
	v2 := SealXattr(k, crypt.FormatVersion, "user.a", id, []byte("value"))
	if got, err := OpenXattr(k, Formats(crypt.FormatV1), "user.a", id, v2); err != nil || string(got) != "value" {
		t.Fatalf("format 2 value in a format-1 vault: %q, %v", got, err)
	}
	for _, tc := range []struct {
		attr string
		id   *[16]byte
	}{{"user.b", id}, {"user.a", other}, {"user.a", nil}} {
		if _, err := OpenXattr(k, Formats(0), tc.attr, tc.id, v2); !errors.Is(err, crypt.ErrAuth) {
			t.Fatalf("opened as %s of %x: %v", tc.attr, tc.id, err)
		}
	}
	v1 := SealXattr(k, crypt.FormatV1, "user.a", nil, []byte("old"))
	if got, err := OpenXattr(k, Formats(0), "user.a", nil, v1); err != nil || string(got) != "old" {
		t.Fatalf("format 1 value without an ID: %q, %v", got, err)
	}
	if !SealsXattr("user.a") || SealsXattr("security.capability") || SealsXattr("trusted.x") {
		t.Fatal("SealsXattr")
	}
}

func TestXattrsThroughFd(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(p, "user.one", []byte("1"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := ListXattrs(int(f.Fd()))
	if err != nil || len(names) != 1 || names[0] != "user.one" {
		t.Fatalf("names %q, %v", names, err)
	}
	if v, err := GetXattr(int(f.Fd()), "user.one"); err != nil || string(v) != "1" {
		t.Fatalf("value %q, %v", v, err)
	}
}

func TestIsEncrypted(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"report.odt":           false,
		crypt.DirIVName:        false,
		crypt.TempPrefix + "x": false,
		"~~cAAAA":              true,
		"~~lAAAA":              true,
		"~~nAAAA":              false,
		"~~cAAAA.sync-conflict-20240101-120000-ABCDEFG": true,
	} {
		if got := IsEncrypted(name); got != want {
			t.Errorf("IsEncrypted(%q) = %v", name, got)
		}
	}
}

func TestReadLostIV(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fd := openDir(t, dir)
	const marker = ".sync-conflict-20240101-120000-ABCDEFG"
	iv := bytes.Repeat([]byte{7}, crypt.DirIVSize)
	if err := os.WriteFile(filepath.Join(dir, crypt.DirIVName+marker), iv, 0o400); err != nil {
		t.Fatal(err)
	}
	if crypt.DirIVConflictMarker(crypt.DirIVName+marker) != marker {
		t.Fatal("not a conflict copy of an IV")
	}
	l := ReadLostIV(fd, marker)
	if l == nil || l.Marker != marker || !bytes.Equal(l.IV[:], iv) {
		t.Fatalf("got %+v", l)
	}
	if ReadLostIV(fd, "") != nil || ReadLostIV(fd, ".sync-conflict-20240101-120000-XXXXXXX") != nil {
		t.Fatal("read a lost IV that is not there")
	}
}
