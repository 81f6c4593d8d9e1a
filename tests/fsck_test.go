package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

const fsckSeed = 20240607

// fsckLongName encrypts to more than 255 bytes: a hashed name with a sidecar.
var fsckLongName = "Documents/" + strings.Repeat("long name ", 19) + "end.txt"

// fsckTree writes a mixed tree through the mount and returns what each file
// holds and the vault path of each mount path (found by inode).
func fsckTree(t *testing.T, v *cliVault, rng *rand.Rand) (want map[string][]byte, vault map[string]string) {
	t.Helper()
	want = map[string][]byte{}
	for _, d := range []string{"Documents", "Documents/sub", "Other", "Videos", "Videos/private"} {
		must(t, os.Mkdir(v.path(d), 0o755))
	}
	sizes := map[string]int{
		"Documents/report.odt":   5*crypt.BlockSize + 123,
		"Documents/notes.txt":    1000,
		"Documents/empty":        0,
		"Documents/sub/one":      1,
		"Documents/sub/exact":    crypt.BlockSize,
		fsckLongName:             4097,
		"Other/keep.txt":         300,
		"Videos/film.mkv":        70000,
		"Videos/private/key.txt": 64,
		"top.txt":                12345,
	}
	for p, n := range sizes {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		must(t, os.WriteFile(v.path(p), data, 0o644))
		want[p] = data
	}
	must(t, os.Symlink("../top.txt", v.path("Documents/link")))
	must(t, unix.Setxattr(v.path("top.txt"), "user.tag", []byte("blue"), 0))

	// The daemon shows backing inode numbers: map mount paths to vault paths.
	byIno := map[uint64]string{}
	must(t, filepath.WalkDir(v.backing, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		must(t, syscall.Lstat(p, &st))
		rel, _ := filepath.Rel(v.backing, p)
		byIno[st.Ino] = rel
		return nil
	}))
	vault = map[string]string{}
	for _, p := range append([]string{"Documents", "Other", "Documents/link"}, keysOf(sizes)...) {
		var st syscall.Stat_t
		must(t, syscall.Lstat(v.path(p), &st))
		vp, ok := byIno[st.Ino]
		if !ok {
			t.Fatalf("no vault entry with the inode of %s", p)
		}
		vault[p] = vp
	}
	return want, vault
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// fsckRun runs cryptpt fsck on v and returns stdout, stderr and the exit code.
func fsckRun(v *cliVault, extra ...string) (string, string, int) {
	return cryptpt(append(append([]string{"fsck", "--passfile", v.pwfile}, extra...), v.backing)...)
}

func fsckFlip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0] ^= 0x01
	_, err = f.WriteAt(b, off)
	must(t, err)
}

// fsckExpect checks that out holds a line with all of parts.
func fsckExpect(t *testing.T, out string, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no line with %q in fsck output:\n%s", parts, out)
}

func TestFsck(t *testing.T) {
	t.Logf("seed %d", fsckSeed)
	rng := rand.New(rand.NewPCG(fsckSeed, 1))
	v := newCLIVault(t, "Videos/", "!Videos/private/")
	v.mount(t)
	want, vault := fsckTree(t, v, rng)
	v.unmount(t)

	// A clean vault is clean.
	out, errOut, code := fsckRun(v)
	if code != 0 || !strings.Contains(out, ": 0 damaged, 0 warnings") {
		t.Fatalf("clean vault: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "10 encrypted files") && !strings.Contains(out, "9 encrypted files") {
		t.Errorf("summary counts: %s", out)
	}

	// A wrong password is an error, not damage.
	bad := filepath.Join(v.dir, "badpw")
	must(t, os.WriteFile(bad, []byte("wrong\n"), 0o600))
	if _, e, c := cryptpt("fsck", "--passfile", bad, v.backing); c != 1 || !strings.Contains(e, "wrong password") {
		t.Errorf("wrong password: exit %d, %s", c, e)
	}

	// Inject one fault of each kind.
	report := filepath.Join(v.backing, vault["Documents/report.odt"])
	fsckFlip(t, report, crypt.CipherOffset(3)+200)

	notes := filepath.Join(v.backing, vault["Documents/notes.txt"])
	nb := []byte(filepath.Base(notes))
	nb[12] = map[bool]byte{true: 'A', false: 'B'}[nb[12] != 'A']
	badName := filepath.Join(filepath.Dir(notes), string(nb))
	must(t, os.Rename(notes, badName))

	long := filepath.Join(v.backing, vault[fsckLongName])
	if crypt.Classify(filepath.Base(long)) != crypt.Long {
		t.Fatalf("%s is not stored as a long name: %s", fsckLongName, long)
	}
	must(t, os.Remove(filepath.Join(filepath.Dir(long), crypt.SidecarName(filepath.Base(long)))))

	diriv := filepath.Join(v.backing, vault["Other"], crypt.DirIVName)
	goodIV, err := os.ReadFile(diriv)
	must(t, err)
	must(t, os.WriteFile(diriv, goodIV[:7], 0o600))

	out, errOut, code = fsckRun(v)
	if code != 3 {
		t.Fatalf("damaged vault: exit %d, want 3\n%s%s", code, out, errOut)
	}
	docs := vault["Documents"]
	fsckExpect(t, out, "damaged: /Documents/report.odt (vault: "+vault["Documents/report.odt"]+"): block 3 fails authentication")
	fsckExpect(t, out, "damaged: vault "+docs+"/"+string(nb)+" (in /Documents): name fails authentication")
	fsckExpect(t, out, "damaged: vault "+vault[fsckLongName]+" (in /Documents)", "sidecar", "missing")
	fsckExpect(t, out, "damaged: /Other (vault: "+vault["Other"]+")", "~~diriv is unusable")
	fsckExpect(t, out, ": 4 damaged, 0 warnings")
	if n := strings.Count(out, "damaged: "); n != 4 {
		t.Errorf("%d damaged lines, want 4:\n%s", n, out)
	}
	if !strings.Contains(errOut, "hint:") {
		t.Errorf("no hint on stderr: %s", errOut)
	}

	// While mounted: a read-only check runs with a warning, repair refuses.
	v.mount(t)
	if _, e, c := fsckRun(v, "--repair"); c != 1 || !strings.Contains(e, "mounted") {
		t.Errorf("repair while mounted: exit %d, %s", c, e)
	}
	if _, e, c := fsckRun(v); c != 3 || !strings.Contains(e, "warning: vault") {
		t.Errorf("check while mounted: exit %d, %s", c, e)
	}
	v.unmount(t)

	// Repair: the diriv cannot be repaired (no backup here: put it back),
	// the rest is salvaged or set aside, readable.
	must(t, os.WriteFile(diriv, goodIV, 0o600))
	out, errOut, code = fsckRun(v, "--repair")
	if code != 0 {
		t.Fatalf("repair: exit %d, want 0\n%s%s", code, out, errOut)
	}
	lf := "/cryptpt-lost+found/"
	fsckExpect(t, out, "salvaged: /Documents/report.odt (vault: "+vault["Documents/report.odt"]+") -> "+lf+"report.odt: lost bytes 12288-16383 (4096 bytes)",
		"original kept as "+lf+"report.odt.cryptpt-damaged", "report "+lf+"report.odt.cryptpt-damage.txt")
	unnamedNotes := "unnamed-" + string(nb[2:18])
	unnamedLong := "unnamed-" + filepath.Base(long)[2:18]
	fsckExpect(t, out, "moved: vault "+docs+"/"+string(nb), lf+unnamedNotes)
	fsckExpect(t, out, "moved: vault "+vault[fsckLongName], lf+unnamedLong)
	fsckExpect(t, out, ", 3 repaired")
	notesData, longData := want["Documents/notes.txt"], want[fsckLongName]
	salvaged := bytes.Clone(want["Documents/report.odt"])
	clear(salvaged[3*crypt.BlockSize : 4*crypt.BlockSize])
	for _, p := range []string{"Documents/report.odt", "Documents/notes.txt", fsckLongName} {
		delete(want, p)
	}
	out, errOut, code = fsckRun(v)
	if code != 0 || !strings.Contains(out, ": 0 damaged, 0 warnings") || !strings.Contains(out, "holds 7 entries") {
		t.Fatalf("after repair: exit %d\n%s%s", code, out, errOut)
	}

	// The rest reads fine through a mount, and lost+found shows readable
	// entries: the salvaged copy, and the files whose names were lost.
	v.mount(t)
	for p, data := range want {
		got, err := os.ReadFile(v.path(p))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s after repair: %v (same bytes: %v)", p, err, bytes.Equal(got, data))
		}
	}
	if tgt, err := os.Readlink(v.path("Documents/link")); err != nil || tgt != "../top.txt" {
		t.Errorf("symlink after repair: %q, %v", tgt, err)
	}
	ents, err := os.ReadDir(v.path(lf))
	if err != nil || len(ents) != 7 {
		t.Errorf("lost+found in the mount: %v, %v", ents, err)
	}
	for name, data := range map[string][]byte{"report.odt": salvaged, unnamedNotes: notesData, unnamedLong: longData} {
		if got, err := os.ReadFile(v.path(lf + name)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s%s through the mount: %v (same bytes: %v)", lf, name, err, bytes.Equal(got, data))
		}
	}
	if st := v.status(t); len(st.Injected) != 0 {
		t.Errorf("status lists injected entries after repair: %v", st.Injected)
	}
}

// fsckBigFile makes a vault holding one 5 MB file (plus a few small ones),
// unmounted, and returns the file's contents and vault path.
func fsckBigFile(t *testing.T) (v *cliVault, data []byte, vaultPath string) {
	t.Helper()
	v = newCLIVault(t)
	v.mount(t)
	must(t, os.Mkdir(v.path("Documents"), 0o755))
	rng := rand.New(rand.NewPCG(fsckSeed, 2))
	data = make([]byte, 5_000_000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	must(t, os.WriteFile(v.path("Documents/big.bin"), data, 0o644))
	for i := range 20 {
		must(t, os.WriteFile(v.path(fmt.Sprintf("Documents/small%02d.txt", i)), data[:1000+i], 0o644))
	}
	var st syscall.Stat_t
	must(t, syscall.Lstat(v.path("Documents/big.bin"), &st))
	v.unmount(t)
	must(t, filepath.WalkDir(v.backing, func(p string, d fs.DirEntry, err error) error {
		var bst syscall.Stat_t
		if err == nil && syscall.Lstat(p, &bst) == nil && bst.Ino == st.Ino {
			vaultPath = p
		}
		return err
	}))
	if vaultPath == "" {
		t.Fatal("no vault file with the inode of big.bin")
	}
	return v, data, vaultPath
}

// TestFsckRepairSalvage: one bad 4 KiB block in a 5 MB file. After
// --repair (exit 0) the vault mounts, the salvaged copy reads with that block
// zeroed and every other byte intact, the damage report names the byte
// range, the original is kept, status lists nothing injected, migrate
// offers nothing, and a second fsck is clean.
func TestFsckRepairSalvage(t *testing.T) {
	v, data, vp := fsckBigFile(t)
	const bad = 700 // block number
	fsckFlip(t, vp, crypt.CipherOffset(bad)+1000)
	if out, errOut, code := fsckRun(v); code != 3 {
		t.Fatalf("damaged: exit %d, want 3\n%s%s", code, out, errOut)
	}
	out, errOut, code := fsckRun(v, "--repair")
	if code != 0 {
		t.Fatalf("repair: exit %d, want 0\n%s%s", code, out, errOut)
	}
	lostRange := fmt.Sprintf("bytes %d-%d (4096 bytes)", bad*crypt.BlockSize, (bad+1)*crypt.BlockSize-1)
	lf := "/cryptpt-lost+found/"
	fsckExpect(t, out, "salvaged: /Documents/big.bin", "-> "+lf+"big.bin: lost "+lostRange, lf+"big.bin.cryptpt-damaged")
	if out, errOut, code := fsckRun(v); code != 0 || !strings.Contains(out, ": 0 damaged, 0 warnings") {
		t.Fatalf("second fsck: exit %d\n%s%s", code, out, errOut)
	}

	v.mount(t)
	want := bytes.Clone(data)
	clear(want[bad*crypt.BlockSize : (bad+1)*crypt.BlockSize])
	got, err := os.ReadFile(v.path(lf + "big.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("salvaged copy: %v, %d bytes (as the original with block %d zeroed: %v)", err, len(got), bad, bytes.Equal(got, want))
	}
	report, err := os.ReadFile(v.path(lf + "big.bin.cryptpt-damage.txt"))
	if err != nil || !strings.Contains(string(report), "lost:     "+lostRange) || !strings.Contains(string(report), "/Documents/big.bin") {
		t.Errorf("damage report: %v\n%s", err, report)
	}
	// The original is kept: its good blocks read, the bad one is EIO.
	f, err := os.Open(v.path(lf + "big.bin.cryptpt-damaged"))
	must(t, err)
	defer f.Close()
	head := make([]byte, crypt.BlockSize)
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, data[:crypt.BlockSize]) {
		t.Errorf("original, block 0: %v", err)
	}
	if _, err := f.ReadAt(head, bad*crypt.BlockSize); !errors.Is(err, syscall.EIO) {
		t.Errorf("original, bad block: %v, want EIO", err)
	}
	if _, err := os.Stat(v.path("Documents/big.bin")); !os.IsNotExist(err) {
		t.Errorf("damaged file still in place: %v", err)
	}
	if st := v.status(t); len(st.Injected) != 0 || len(st.Drift) != 0 {
		t.Errorf("status after repair: injected %v, drift %v", st.Injected, st.Drift)
	}
	if out := run(t, "migrate", "--dry-run", "--config", v.config, v.mnt); !strings.Contains(out, "Nothing to migrate") {
		t.Errorf("migrate after repair: %s", out)
	}
}

// openPty returns the master and slave ends of a new pseudo-terminal of
// 200 columns.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	t.Cleanup(func() { m.Close() })
	must(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	must(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	must(t, unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 200}))
	return m, s
}

// TestFsckProgress: on a terminal fsck draws a bar with bytes, entries and
// an ETA; with stderr not a terminal its output has no carriage returns or
// escapes.
func TestFsckProgress(t *testing.T) {
	v, _, _ := fsckBigFile(t)
	master, slave := openPty(t)
	cmd := exec.Command(binary, "fsck", "--passfile", v.pwfile, v.backing)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, slave
	must(t, cmd.Start())
	slave.Close()
	var tty bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&tty, master) // ends with EIO once the child closed the slave
		close(copied)
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fsck on a pty: %v\n%s", err, stdout.String())
	}
	<-copied
	bar := tty.String()
	for _, want := range []string{`\r\x1b\[Kfsck \[`, `[0-9.]+ [KM]?i?B / 4\.8 MiB`, `[0-9]+/[0-9]+ entries`, `ETA (--|[0-9])`} {
		if !regexp.MustCompile(want).MatchString(bar) {
			t.Errorf("bar on the terminal lacks %s: %q", want, bar)
		}
	}
	if strings.ContainsAny(stdout.String(), "\r\033") {
		t.Errorf("stdout (not a terminal) has control characters: %q", stdout.String())
	}

	out, errOut, code := fsckRun(v)
	if code != 0 || strings.ContainsAny(out+errOut, "\r\033") {
		t.Errorf("fsck without a terminal: exit %d, control characters in %q", code, out+errOut)
	}
}

// TestProgressMigrateOnPty: migrate draws the same bar on a terminal, and
// its report lines on stdout are not mixed into it.
func TestProgressMigrateOnPty(t *testing.T) {
	v := newCLIVault(t, "media/")
	v.mount(t)
	must(t, os.Mkdir(v.path("media"), 0o755))
	must(t, os.WriteFile(v.path("media/clip"), make([]byte, 3<<20), 0o600))
	v.unmount(t)
	v.setPolicy(t, "")
	v.mount(t)

	master, slave := openPty(t)
	cmd := exec.Command(binary, "migrate", "--config", v.config, v.mnt)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, slave
	must(t, cmd.Start())
	slave.Close()
	var tty bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&tty, master)
		close(copied)
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("migrate on a pty: %v\n%s", err, stdout.String())
	}
	<-copied
	bar := tty.String()
	for _, want := range []string{`\r\x1b\[Kmigrate \[`, `/ 3\.0 MiB`, `[0-9]/2 entries`, `ETA (--|[0-9])`} {
		if !regexp.MustCompile(want).MatchString(bar) {
			t.Errorf("bar on the terminal lacks %s: %q", want, bar)
		}
	}
	if !strings.Contains(stdout.String(), "stored encrypted: /media/clip") || strings.ContainsAny(stdout.String(), "\r\033") {
		t.Errorf("stdout: %q", stdout.String())
	}
}

// TestFsckRepairUnrepairable: damage that repair cannot fix (a directory IV
// that its encrypted names need, with no backup) makes "fsck --repair" exit
// 3, after repairing what it can (a bad block beside it is salvaged), with
// a hint that says what is left; again on the next run; once the IV is back
// from a "backup", fsck exits 0.
func TestFsckRepairUnrepairable(t *testing.T) {
	rng := rand.New(rand.NewPCG(fsckSeed, 2))
	v := newCLIVault(t, "Videos/", "!Videos/private/")
	v.mount(t)
	_, vault := fsckTree(t, v, rng)
	v.unmount(t)

	fsckFlip(t, filepath.Join(v.backing, vault["Documents/report.odt"]), crypt.CipherOffset(1)+10)
	diriv := filepath.Join(v.backing, vault["Other"], crypt.DirIVName)
	backup, err := os.ReadFile(diriv)
	must(t, err)
	must(t, os.WriteFile(diriv, backup[:5], 0o600))

	for run := 1; run <= 2; run++ {
		out, errOut, code := fsckRun(v, "--repair")
		if code != 3 {
			t.Fatalf("repair run %d with an unrepairable directory IV: exit %d, want 3\n%s%s", run, code, out, errOut)
		}
		fsckExpect(t, out, "damaged: /Other (vault: "+vault["Other"]+")", "~~diriv is unusable", "restore it from a backup")
		if run == 1 {
			fsckExpect(t, out, "salvaged: /Documents/report.odt", "lost bytes 4096-8191 (4096 bytes)")
			fsckExpect(t, out, ": 2 damaged, 0 warnings", ", 1 repaired")
		} else {
			fsckExpect(t, out, ": 1 damaged, 0 warnings")
		}
		if strings.Contains(out, "Repaired: the vault is consistent") {
			t.Errorf("repair run %d claims a consistent vault:\n%s", run, out)
		}
		if !strings.Contains(errOut, "cryptpt: hint: what repair could not fix is listed above") || !strings.Contains(errOut, "restore it from a backup") {
			t.Errorf("repair run %d: stderr lacks the hint for what is left:\n%s", run, errOut)
		}
	}
	must(t, os.WriteFile(diriv, backup, 0o600))
	if out, errOut, code := fsckRun(v); code != 0 || !strings.Contains(out, ": 0 damaged, 0 warnings") {
		t.Fatalf("after restoring the IV: exit %d\n%s%s", code, out, errOut)
	}
}
