package tests

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"cryptpt/crypt"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// What Syncthing leaves in a vault when two devices changed one entry while
// apart (tests/syncthing_test.go makes it do so for real): the losing
// version renamed to VAULTNAME.sync-conflict-DATE-TIME-DEVICE, with the
// same ciphertext. These tests plant such copies the way Syncthing makes
// them (a rename, or the copy it pulls from the other device) and check
// that both versions are reachable through the mount.

const marker = ".sync-conflict-20240102-150405-ABCDEF2"

// copyTree copies the vault entry src to dst as Syncthing would pull it:
// files byte for byte, symlinks as links, directories with what they hold.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	fi, err := os.Lstat(src)
	must(t, err)
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		must(t, err)
		must(t, os.Symlink(target, dst))
	case fi.IsDir():
		must(t, os.Mkdir(dst, fi.Mode().Perm()))
		ents, err := os.ReadDir(src)
		must(t, err)
		for _, e := range ents {
			copyTree(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
		}
	default:
		data, err := os.ReadFile(src)
		must(t, err)
		must(t, os.WriteFile(dst, data, fi.Mode().Perm()))
	}
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

// A conflict copy of an encrypted file, long-named file, directory and
// symlink is shown under the entry's name with the marker before the
// extension, found by that name without a listing, read and authenticated
// as usual, and can be renamed over the original or deleted; a copy of a
// plaintext file is a plaintext file like any other.
func TestConflictCopiesReachable(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"Public/"}})
	older, newer := canary(t, 5000), canary(t, 7000)
	long := strings.Repeat("l", 180) + ".txt"    // stored as ~~l + sidecar
	tooLong := strings.Repeat("t", 230) + ".txt" // its copy's name is cut to fit
	longExt := "a." + strings.Repeat("e", 220)   // no cut fits the marker in
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	must(t, os.Mkdir(tv.Path("Public"), 0o755))
	for _, f := range []string{"report.pdf", long, tooLong, longExt, "d/inner"} {
		must(t, os.WriteFile(tv.Path(f), older, 0o644))
	}
	must(t, os.WriteFile(tv.Path("Public/p.txt"), []byte("public, older"), 0o644))
	must(t, os.Symlink("some/target", tv.Path("link")))
	stored := map[string]string{}
	for _, n := range []string{"report.pdf", long, tooLong, longExt, "d", "link"} {
		stored[n] = storedNameIn(t, tv, tv.Backing, n)
	}
	// The losing versions, as Syncthing keeps them: the old content under
	// the marked name, the new one under the entry's own.
	for _, n := range []string{"report.pdf", long, tooLong, longExt, "d", "link"} {
		copyTree(t, filepath.Join(tv.Backing, stored[n]), filepath.Join(tv.Backing, stored[n]+marker))
	}
	publicCopy := "Public/p" + marker + ".txt"
	copyTree(t, filepath.Join(tv.Backing, "Public/p.txt"), filepath.Join(tv.Backing, publicCopy))
	for _, f := range []string{"report.pdf", long, "d/inner"} {
		must(t, os.WriteFile(tv.Path(f), newer, 0o644))
	}
	must(t, os.WriteFile(tv.Path("Public/p.txt"), []byte("public, newer"), 0o644))
	tv.Unmount(t)
	tv.Remount(t)

	copyOf := func(name string) string { return crypt.ConflictName(name, marker) }
	// By name first, before any listing: the kernel may look a name up
	// without one.
	for _, f := range []string{copyOf("report.pdf"), copyOf(long), copyOf(tooLong), copyOf("d") + "/inner", publicCopy} {
		want := string(older)
		if f == publicCopy {
			want = "public, older"
		}
		if got := readOr(tv.Path(f)); got != want {
			t.Errorf("%s by name: %.60q, want the losing version", f, got)
		}
	}
	if got, err := os.Readlink(tv.Path(copyOf("link"))); err != nil || got != "some/target" {
		t.Errorf("readlink of the link's copy: %q, %v", got, err)
	}
	names := listNames(t, tv.Mnt)
	for _, want := range []string{"report.pdf", copyOf("report.pdf"), long, copyOf(long), tooLong, copyOf(tooLong), "d", copyOf("d"), "link", copyOf("link"), longExt} {
		if !slices.Contains(names, want) {
			t.Errorf("%.60q not listed: %q", want, names)
		}
	}
	if len(copyOf(tooLong)) != crypt.MaxNameLen || len(names) != 12 { // + Public
		t.Errorf("root lists %d names: %q", len(names), names)
	}
	if !strings.Contains(tv.Log(), stored[longExt]+marker) {
		t.Errorf("the copy whose name cannot be shown was hidden without a log line naming it:\n%s", tv.Log())
	}
	if got := listNames(t, tv.Path("Public")); !slices.Equal(got, []string{"p" + marker + ".txt", "p.txt"}) {
		t.Errorf("Public lists %q", got)
	}
	if got := readOr(tv.Path("Public/p.txt")); got != "public, newer" {
		t.Errorf("Public/p.txt: %q", got)
	}
	for _, f := range []string{"report.pdf", long, "d/inner"} {
		if got := readOr(tv.Path(f)); got != string(newer) {
			t.Errorf("%.60s: %.60q, want the winning version", f, got)
		}
	}

	// A tampered copy fails authentication like any encrypted file.
	bad := filepath.Join(tv.Backing, stored["report.pdf"]+marker)
	orig, err := os.ReadFile(bad)
	must(t, err)
	flipped := bytes.Clone(orig)
	flipped[len(flipped)-1] ^= 1
	must(t, os.WriteFile(bad, flipped, 0o644))
	unix.Sync()
	must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))
	if _, err := os.ReadFile(tv.Path(copyOf("report.pdf"))); !errors.Is(err, syscall.EIO) {
		t.Errorf("tampered conflict copy: %v, want EIO", err)
	}
	must(t, os.WriteFile(bad, orig, 0o644))
	must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0))

	// Written to through the mount, a copy stays encrypted.
	appended := canary(t, 300)
	f, err := os.OpenFile(tv.Path(copyOf("report.pdf")), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write(appended)
	must(t, err)
	must(t, f.Close())
	if got := readOr(tv.Path(copyOf("report.pdf"))); got != string(older)+string(appended) {
		t.Errorf("appended copy reads %.60q", got)
	}

	// Keeping the other version: rename the copy over the original.
	must(t, os.Rename(tv.Path(copyOf("report.pdf")), tv.Path("report.pdf")))
	if got := readOr(tv.Path("report.pdf")); got != string(older)+string(appended) {
		t.Errorf("after keeping the copy: %.60q", got)
	}
	if _, err := os.Lstat(filepath.Join(tv.Backing, stored["report.pdf"]+marker)); !os.IsNotExist(err) {
		t.Errorf("the copy's vault file is still there: %v", err)
	}
	// A link's copy moved elsewhere is sealed to its new place.
	must(t, os.Rename(tv.Path(copyOf("link")), tv.Path("d/link2")))
	if got, err := os.Readlink(tv.Path("d/link2")); err != nil || got != "some/target" {
		t.Errorf("readlink of the moved copy: %q, %v", got, err)
	}
	// Renaming onto a copy's name replaces the copy, as rename(2) does.
	must(t, os.WriteFile(tv.Path("other"), newer, 0o644))
	must(t, os.Rename(tv.Path("other"), tv.Path(copyOf(long))))
	if got := readOr(tv.Path(copyOf(long))); got != string(newer) {
		t.Errorf("renamed onto the long name's copy: %.60q", got)
	}
	// The original of a long name goes; its copy keeps the sidecar.
	must(t, os.Remove(tv.Path(long)))
	tv.Unmount(t)
	tv.Remount(t)
	if got := readOr(tv.Path(copyOf(long))); got != string(newer) {
		t.Errorf("long name's copy after its original went: %.60q", got)
	}
	if !slices.Contains(listNames(t, tv.Mnt), copyOf(long)) {
		t.Errorf("long name's copy not listed after its original went (sidecar gone?)")
	}
	must(t, os.Remove(tv.Path(copyOf(long))))
	if _, err := os.Lstat(filepath.Join(tv.Backing, crypt.SidecarName(stored[long]))); !os.IsNotExist(err) {
		t.Errorf("sidecar left after the last entry using it went: %v", err)
	}
	// A copy under a cut name is removed by that name.
	must(t, os.Remove(tv.Path(copyOf(tooLong))))
	// A directory's copy is removed like a directory.
	must(t, os.Remove(tv.Path(copyOf("d")+"/inner")))
	must(t, os.Remove(tv.Path(copyOf("d"))))
	if names := listNames(t, tv.Mnt); slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, "sync-conflict") }) {
		t.Errorf("copies left: %q", names)
	}
	noCanaries(t, tv.Backing, older, newer, appended)
}

// A name that merely looks like a conflict copy is an ordinary entry: made
// through the mount it gets its own encrypted vault name, and it wins over
// a copy shown under the same name, which is hidden with a log line.
func TestConflictLookalikeNames(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	mine, theirs := canary(t, 100), canary(t, 100)
	look := "x" + marker + ".txt"
	must(t, os.WriteFile(tv.Path(look), mine, 0o644))
	ents, err := os.ReadDir(tv.Backing)
	must(t, err)
	for _, e := range ents {
		if strings.Contains(e.Name(), "sync-conflict") {
			t.Errorf("a name made through the mount is stored as %q", e.Name())
		}
	}
	must(t, os.WriteFile(tv.Path("x.txt"), theirs, 0o644))
	xs := storedNameIn(t, tv, tv.Backing, "x.txt")
	copyTree(t, filepath.Join(tv.Backing, xs), filepath.Join(tv.Backing, xs+marker))
	tv.Unmount(t)
	tv.Remount(t)
	if got := listNames(t, tv.Mnt); !slices.Equal(got, []string{look, "x.txt"}) {
		t.Errorf("listed %q", got)
	}
	if got := readOr(tv.Path(look)); got != string(mine) {
		t.Errorf("%s reads %.40q, want the entry of that name", look, got)
	}
	if !strings.Contains(tv.Log(), xs+marker) {
		t.Errorf("no log line names the hidden copy:\n%s", tv.Log())
	}
	noCanaries(t, tv.Backing, mine, theirs)
}

// Copies appearing while mounted (a sync tool pulling them) show up in a
// listing the kernel had cached, through the vault watcher.
func TestConflictCopyWatched(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	must(t, os.WriteFile(tv.Path("a.txt"), []byte("theirs"), 0o644))
	stored := storedNameIn(t, tv, tv.Backing, "a.txt")
	if got := listNames(t, tv.Mnt); !slices.Equal(got, []string{"a.txt"}) {
		t.Fatalf("listed %q", got)
	}
	copyName := crypt.ConflictName("a.txt", marker)
	if _, err := os.Lstat(tv.Path(copyName)); !os.IsNotExist(err) {
		t.Fatalf("copy before it exists: %v", err) // now a cached negative entry
	}
	// Syncthing renames the local loser aside, then renames the winner in.
	must(t, os.Rename(filepath.Join(tv.Backing, stored), filepath.Join(tv.Backing, stored+marker)))
	tmp := filepath.Join(tv.Backing, ".syncthing."+stored+".tmp")
	must(t, os.WriteFile(tmp, nil, 0o644))
	must(t, os.Rename(tmp, filepath.Join(tv.Backing, stored)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		names := listNames(t, tv.Mnt)
		_, err := os.Lstat(tv.Path(copyName))
		if slices.Equal(names, []string{copyName, "a.txt"}) && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s the mount lists %q (lstat of the copy: %v)", names, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := readOr(tv.Path(copyName)); got != "theirs" {
		t.Errorf("copy reads %q", got)
	}
}

// Syncthing's own files (temp files while it pulls, its folder marker,
// ignore file and versions at the root) are never shown, never logged,
// never counted as injected plaintext (which "cryptpt migrate" would then
// encrypt, stopping Syncthing's folder), and no entry gets such a name in
// plaintext form through the mount.
func TestSyncToolFilesHidden(t *testing.T) {
	tv := testvault.New(t, testvault.Options{Plaintext: []string{"Public/"}})
	must(t, os.Mkdir(tv.Path("Public"), 0o755))
	must(t, os.WriteFile(tv.Path("a"), []byte("x"), 0o644))
	stored := storedNameIn(t, tv, tv.Backing, "a")
	tv.Unmount(t)
	hidden := []string{".stfolder", ".stignore", ".stversions", ".syncthing." + stored + ".tmp", "~syncthing~" + stored + ".tmp",
		".syncthing." + strings.Repeat("0f", 32) + ".tmp", "Public/.syncthing.p.txt.tmp", "Public/~syncthing~p.txt.tmp"}
	for _, n := range hidden {
		p := filepath.Join(tv.Backing, n)
		if n == ".stfolder" || n == ".stversions" {
			must(t, os.Mkdir(p, 0o755))
			continue
		}
		must(t, os.WriteFile(p, []byte("sync tool"), 0o644))
	}
	// Only at the root are these Syncthing's.
	must(t, os.Mkdir(filepath.Join(tv.Backing, "Public/.stfolder"), 0o755))
	tv.Remount(t)
	if got := listNames(t, tv.Mnt); !slices.Equal(got, []string{"Public", "a"}) {
		t.Errorf("root lists %q", got)
	}
	if got := listNames(t, tv.Path("Public")); !slices.Equal(got, []string{".stfolder"}) {
		t.Errorf("Public lists %q", got)
	}
	for _, n := range hidden {
		if _, err := os.Lstat(tv.Path(n)); !os.IsNotExist(err) {
			t.Errorf("%s by name: %v, want ENOENT", n, err)
		}
	}
	if err := os.WriteFile(tv.Path("Public/.syncthing.q.tmp"), nil, 0o644); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("creating a plaintext Syncthing temp name: %v, want EINVAL", err)
	}
	// Where the policy encrypts, such a name is an ordinary encrypted entry.
	must(t, os.WriteFile(tv.Path(".stignore"), []byte("mine"), 0o644))
	if got := readOr(tv.Path(".stignore")); got != "mine" {
		t.Errorf(".stignore made through the mount reads %q", got)
	}
	if got := readOr(filepath.Join(tv.Backing, ".stignore")); got != "sync tool" {
		t.Errorf("Syncthing's own .stignore changed: %q", got)
	}
	if st := tv.Mount.Status(); len(st.Injected) != 0 || st.HiddenEntries != 0 {
		t.Errorf("status counts sync tool files: injected %q, hidden %d", st.Injected, st.HiddenEntries)
	}
	for _, n := range hidden {
		if strings.Contains(tv.Log(), filepath.Base(n)) {
			t.Errorf("log names %s:\n%s", n, tv.Log())
		}
	}
}

// One directory made on two devices while apart: each gave it an IV of its
// own, and the sync tool kept one "~~diriv" and the other as its conflict
// copy. The entries made under the lost IV show as conflict copies of
// themselves with that copy's marker; renamed through the mount they are
// named under the directory's IV again, and the directory can be removed.
func TestConflictDirIV(t *testing.T) {
	tv := testvault.New(t, testvault.Options{})
	theirs, mine := canary(t, 6000), canary(t, 6000)
	must(t, os.Mkdir(tv.Path("d"), 0o755))
	must(t, os.WriteFile(tv.Path("d/theirs.txt"), theirs, 0o644))
	must(t, os.Symlink("their/target", tv.Path("d/tl")))
	long := strings.Repeat("x", 190)
	must(t, os.WriteFile(tv.Path("d/"+long), theirs, 0o644))
	dir := filepath.Join(tv.Backing, storedNameIn(t, tv, tv.Backing, "d"))
	tv.Unmount(t)
	// The other device's IV won: ours becomes the conflict copy.
	must(t, os.Rename(filepath.Join(dir, crypt.DirIVName), filepath.Join(dir, crypt.DirIVName+marker)))
	iv, err := crypt.NewDirIV()
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, crypt.DirIVName), iv[:], 0o600))
	tv.Remount(t)
	must(t, os.WriteFile(tv.Path("d/mine.txt"), mine, 0o644))
	tv.Unmount(t)
	tv.Remount(t)

	copyOf := func(name string) string { return "d/" + crypt.ConflictName(name, marker) }
	// By name before any listing.
	if got := readOr(tv.Path(copyOf("theirs.txt"))); got != string(theirs) {
		t.Errorf("entry named under the lost IV: %.40q", got)
	}
	if got, err := os.Readlink(tv.Path(copyOf("tl"))); err != nil || got != "their/target" {
		t.Errorf("readlink of a link named under the lost IV: %q, %v", got, err)
	}
	want := []string{"mine.txt", crypt.ConflictName("theirs.txt", marker), crypt.ConflictName("tl", marker), crypt.ConflictName(long, marker)}
	if got := listNames(t, tv.Path("d")); !slices.Equal(got, want) {
		t.Errorf("d lists %q, want %q", got, want)
	}
	if got := readOr(tv.Path(copyOf(long))); got != string(theirs) {
		t.Errorf("long name under the lost IV: %.40q", got)
	}
	for _, n := range []string{"theirs.txt", "tl"} {
		must(t, os.Rename(tv.Path(copyOf(n)), tv.Path("d/"+n)))
	}
	if got := readOr(tv.Path("d/theirs.txt")); got != string(theirs) {
		t.Errorf("renamed: %.40q", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, storedNameIn(t, tv, dir, "theirs.txt"))); err != nil {
		t.Errorf("renamed entry not named under the directory's IV: %v", err)
	}
	tv.Unmount(t)
	tv.Remount(t)
	if got, err := os.Readlink(tv.Path("d/tl")); err != nil || got != "their/target" {
		t.Errorf("readlink of the renamed link: %q, %v", got, err)
	}
	for _, n := range []string{"theirs.txt", "tl", "mine.txt", crypt.ConflictName(long, marker)} {
		must(t, os.Remove(tv.Path("d/"+n)))
	}
	must(t, os.Remove(tv.Path("d")))
	if strings.Contains(tv.Log(), "hidden") {
		t.Errorf("entries hidden:\n%s", tv.Log())
	}
	noCanaries(t, tv.Backing, theirs, mine)
}
