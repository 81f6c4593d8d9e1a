package fsck

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cryptpt/crypt"

	"golang.org/x/sys/unix"
)

// testVault builds a vault tree with the crypt package directly, the way the
// fs package lays it out, without a vault config (Check does not read it).
type testVault struct {
	t    *testing.T
	root string
	k    *crypt.Keys
	rng  *rand.Rand
	data map[string][]byte // plaintext of each file made, by vault path
}

const testSeed = 7

func newTestVault(t *testing.T) *testVault {
	t.Helper()
	var master [32]byte
	for i := range master {
		master[i] = byte(i * 7)
	}
	k, err := crypt.NewKeys(&master)
	if err != nil {
		t.Fatal(err)
	}
	v := &testVault{t: t, root: t.TempDir(), k: k, rng: rand.New(rand.NewPCG(testSeed, 0)), data: map[string][]byte{}}
	v.mkdirIV(v.root)
	return v
}

func (v *testVault) mkdirIV(dir string) {
	iv, err := crypt.NewDirIV()
	if err != nil {
		v.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, crypt.DirIVName), iv[:], 0o600); err != nil {
		v.t.Fatal(err)
	}
}

// name returns the stored name of an encrypted entry name in dir (a vault
// directory path), writing the sidecar of a long name.
func (v *testVault) name(dir, name string) string {
	data, err := os.ReadFile(filepath.Join(dir, crypt.DirIVName))
	if err != nil {
		v.t.Fatal(err)
	}
	iv, err := crypt.ParseDirIV(data)
	if err != nil {
		v.t.Fatal(err)
	}
	stored, sidecar, err := v.k.Names().Encrypt(iv, name)
	if err != nil {
		v.t.Fatal(err)
	}
	if sidecar != nil {
		if err := os.WriteFile(filepath.Join(dir, crypt.SidecarName(stored)), sidecar, 0o600); err != nil {
			v.t.Fatal(err)
		}
	}
	return filepath.Join(dir, stored)
}

func (v *testVault) mkdir(dir, name string) string {
	p := v.name(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		v.t.Fatal(err)
	}
	v.mkdirIV(p)
	return p
}

func (v *testVault) file(dir, name string, size int) string {
	p := v.name(dir, name)
	f, err := os.Create(p)
	if err != nil {
		v.t.Fatal(err)
	}
	defer f.Close()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(v.rng.Uint32())
	}
	v.data[p] = data
	if size > 0 {
		h, err := crypt.NewHeader(crypt.FormatVersion)
		if err != nil {
			v.t.Fatal(err)
		}
		if _, err := v.k.Content().WriteAt(f, &h, data, 0, 0); err != nil {
			v.t.Fatal(err)
		}
	}
	return p
}

func (v *testVault) symlink(dir, name, target string) string {
	p := v.name(dir, name)
	sealed := base64.RawURLEncoding.EncodeToString(v.k.SealMeta([]byte(target), crypt.SymlinkAD(crypt.FormatV1, nil, "")))
	if err := os.Symlink(sealed, p); err != nil {
		v.t.Fatal(err)
	}
	return p
}

// build makes a mixed tree and returns the vault paths of its parts.
func (v *testVault) build() map[string]string {
	m := map[string]string{}
	docs := v.mkdir(v.root, "Documents")
	m["docs"] = docs
	m["report"] = v.file(docs, "report.odt", 5*crypt.BlockSize+100)
	m["empty"] = v.file(docs, "empty", 0)
	m["one"] = v.file(docs, "one", 1)
	m["long"] = v.file(docs, strings.Repeat("L", 200), 4097)
	m["link"] = v.symlink(docs, "link", "../elsewhere/target")
	m["xattr"] = v.file(v.root, "tagged", 10)
	if err := unix.Lsetxattr(m["xattr"], "user.note", v.k.SealMeta([]byte("hello"), crypt.XattrAD(crypt.FormatV1, "user.note", nil)), 0); err != nil {
		v.t.Fatal(err)
	}
	videos := filepath.Join(v.root, "Videos")
	if err := os.Mkdir(videos, 0o755); err != nil {
		v.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(videos, "film.mkv"), []byte("plain bytes"), 0o644); err != nil {
		v.t.Fatal(err)
	}
	v.mkdirIV(videos)
	private := v.mkdir(videos, "private")
	m["private"] = private
	m["secret"] = v.file(private, "secret.txt", 3000)
	return m
}

func (v *testVault) check(repair bool) *Report {
	v.t.Helper()
	rep, err := Check(v.root, v.k, Options{Repair: repair})
	if err != nil {
		v.t.Fatal(err)
	}
	return rep
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestCleanVault(t *testing.T) {
	v := newTestVault(t)
	v.build()
	rep := v.check(false)
	if len(rep.Problems) != 0 {
		t.Fatalf("clean vault: %+v", rep.Problems)
	}
	// report, empty, one, long, tagged, secret.
	if rep.Files != 6 || rep.Symlinks != 1 || rep.Xattrs != 1 || rep.Plaintext != 1 {
		t.Errorf("counts: %+v", rep)
	}
	if rep.Names != 9 {
		t.Errorf("names checked = %d, want 9", rep.Names)
	}
}

// TestFindsDamage injects one fault per case into a fresh vault and checks
// that exactly the expected problem is found, named as expected.
func TestFindsDamage(t *testing.T) {
	t.Logf("seed %d", testSeed)
	cases := []struct {
		name   string
		inject func(t *testing.T, v *testVault, m map[string]string)
		kind   Kind
		path   string // plaintext path expected in the problem ("" = unknown)
		detail string
	}{
		{"bad block", func(t *testing.T, v *testVault, m map[string]string) {
			flipByte(t, m["report"], crypt.CipherOffset(3)+100)
		}, BadContent, "/Documents/report.odt", "block 3 fails authentication"},
		{"bad last block", func(t *testing.T, v *testVault, m map[string]string) {
			flipByte(t, m["one"], crypt.HeaderSize+crypt.NonceSize)
		}, BadContent, "/Documents/one", "block 0 fails authentication"},
		{"swapped blocks", func(t *testing.T, v *testVault, m map[string]string) {
			data, _ := os.ReadFile(m["report"])
			b1 := append([]byte(nil), data[crypt.CipherOffset(1):crypt.CipherOffset(2)]...)
			copy(data[crypt.CipherOffset(1):], data[crypt.CipherOffset(2):crypt.CipherOffset(3)])
			copy(data[crypt.CipherOffset(2):], b1)
			must(t, os.WriteFile(m["report"], data, 0o600))
		}, BadContent, "/Documents/report.odt", "blocks 1 and 2 fail authentication"},
		{"bad size", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.Truncate(m["report"], crypt.CipherOffset(5)+10))
		}, BadContent, "/Documents/report.odt", "not a valid ciphertext size"},
		{"short file", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.Truncate(m["one"], 10))
		}, BadContent, "/Documents/one", "shorter than the 22-byte header"},
		{"bad magic", func(t *testing.T, v *testVault, m map[string]string) {
			flipByte(t, m["report"], 1)
		}, BadContent, "/Documents/report.odt", "bad magic"},
		{"bad name", func(t *testing.T, v *testVault, m map[string]string) {
			p := m["report"]
			b := []byte(filepath.Base(p))
			b[10] = map[bool]byte{true: 'A', false: 'B'}[b[10] != 'A']
			must(t, os.Rename(p, filepath.Join(filepath.Dir(p), string(b))))
		}, BadName, "", "name fails authentication"},
		{"name moved to another directory", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.Rename(m["secret"], filepath.Join(m["docs"], filepath.Base(m["secret"]))))
		}, BadName, "", "name fails authentication"},
		{"missing sidecar", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.Remove(filepath.Join(m["docs"], crypt.SidecarName(filepath.Base(m["long"])))))
		}, BadSidecar, "", "is missing"},
		{"wrong sidecar", func(t *testing.T, v *testVault, m map[string]string) {
			sc := filepath.Join(m["docs"], crypt.SidecarName(filepath.Base(m["long"])))
			flipByte(t, sc, 50)
		}, BadSidecar, "", "does not match"},
		{"orphan sidecar", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.Remove(m["long"]))
		}, OrphanSidecar, "", "without its entry"},
		{"broken diriv", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.WriteFile(filepath.Join(m["docs"], crypt.DirIVName), []byte("short"), 0o600))
		}, BadDirIV, "/Documents", "unusable"},
		{"missing diriv", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.Remove(filepath.Join(m["private"], crypt.DirIVName)))
		}, BadDirIV, "/Videos/private", "is missing"},
		{"symlink target", func(t *testing.T, v *testVault, m map[string]string) {
			target, _ := os.Readlink(m["link"])
			b := []byte(target)
			b[20] = map[bool]byte{true: 'A', false: 'B'}[b[20] != 'A']
			must(t, os.Remove(m["link"]))
			must(t, os.Symlink(string(b), m["link"]))
		}, BadSymlink, "/Documents/link", "fails authentication"},
		{"xattr value", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, unix.Lsetxattr(m["xattr"], "user.note", v.k.SealMeta([]byte("hello"), crypt.XattrAD(crypt.FormatV1, "user.other", nil)), 0))
		}, BadXattr, "/tagged", "user.note fails authentication"},
		{"leftover temp", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.WriteFile(filepath.Join(m["docs"], crypt.TempPrefix+"abc"), []byte("x"), 0o600))
		}, LeftoverTemp, "", "leftover temporary file"},
		{"unknown reserved", func(t *testing.T, v *testVault, m map[string]string) {
			must(t, os.WriteFile(filepath.Join(v.root, "~~zz"), []byte("x"), 0o600))
		}, UnknownReserved, "", "does not know"},
	}
	found := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVault(t)
			m := v.build()
			tc.inject(t, v, m)
			rep := v.check(false)
			if len(rep.Problems) != 1 {
				t.Fatalf("want 1 problem, got %+v", rep.Problems)
			}
			p := rep.Problems[0]
			if p.Kind != tc.kind || p.Path != tc.path || !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("got %+v (kind %v), want kind %v path %q detail %q", p, p.Kind, tc.kind, tc.path, tc.detail)
			}
			if p.VaultPath == "" {
				t.Errorf("no vault path in %+v", p)
			}
			found++
		})
	}
	t.Logf("%d of %d injected faults found", found, len(cases))
}

// lostFound returns the vault path of the encrypted LostFoundName and the
// vault path of plaintext name in it.
func (v *testVault) lostFound(name string) (dir, entry string) {
	v.t.Helper()
	dir = v.name(v.root, LostFoundName)
	if name == "" {
		return dir, ""
	}
	return dir, v.name(dir, name)
}

// readEnc decrypts the encrypted file at vault path p.
func (v *testVault) readEnc(p string) []byte {
	v.t.Helper()
	raw, err := os.ReadFile(p)
	if err != nil {
		v.t.Fatal(err)
	}
	if len(raw) == 0 {
		return []byte{}
	}
	h, err := crypt.ParseHeader(raw)
	if err != nil {
		v.t.Fatal(err)
	}
	size, err := crypt.PlainSize(int64(len(raw)))
	if err != nil {
		v.t.Fatal(err)
	}
	out := make([]byte, size)
	if _, err := v.k.Content().ReadAt(bytes.NewReader(raw), &h, out, 0, int64(len(raw))); err != nil && size > 0 {
		v.t.Fatalf("%s: %v", p, err)
	}
	return out
}

// TestRepair salvages a damaged file, renames an entry whose name is lost
// under a readable name, keeps a temp file's bytes, and leaves a vault that
// checks clean, all as encrypted entries of an encrypted LostFoundName.
func TestRepair(t *testing.T) {
	v := newTestVault(t)
	m := v.build()
	flipByte(t, m["report"], crypt.CipherOffset(2)+7)
	must(t, os.Remove(filepath.Join(m["docs"], crypt.SidecarName(filepath.Base(m["long"])))))
	must(t, os.WriteFile(filepath.Join(v.root, crypt.TempPrefix+"x"), []byte("temp bytes"), 0o600))
	damaged, _ := os.ReadFile(m["report"])

	rep := v.check(true)
	if rep.Damaged() != 2 || rep.Warnings() != 1 || rep.Unrepaired() != 0 || len(rep.Salvages) != 1 || len(rep.Moves) != 2 {
		t.Fatalf("repair: %+v", rep)
	}
	if _, err := os.Lstat(filepath.Join(v.root, LostFoundName)); !os.IsNotExist(err) {
		t.Errorf("a plaintext %s was made: %v", LostFoundName, err)
	}
	// The salvaged copy: block 2 zeroed, every other byte as it was.
	want := bytes.Clone(v.data[m["report"]])
	clear(want[2*crypt.BlockSize : 3*crypt.BlockSize])
	_, copyPath := v.lostFound("report.odt")
	if got := v.readEnc(copyPath); !bytes.Equal(got, want) {
		t.Errorf("salvaged copy differs from the original with block 2 zeroed")
	}
	s := rep.Salvages[0]
	if s.Path != "/Documents/report.odt" || len(s.Lost) != 1 || s.Lost[0] != (Range{2 * crypt.BlockSize, crypt.BlockSize}) ||
		s.Copy != "/"+LostFoundName+"/report.odt" || s.Original != "/"+LostFoundName+"/report.odt"+DamagedSuffix {
		t.Errorf("salvage: %+v", s)
	}
	// The original, bytes unchanged, beside it.
	_, orig := v.lostFound("report.odt" + DamagedSuffix)
	if got, err := os.ReadFile(orig); err != nil || !bytes.Equal(got, damaged) {
		t.Errorf("original %s: %v (same bytes: %v)", orig, err, bytes.Equal(got, damaged))
	}
	if _, err := os.Lstat(m["report"]); !os.IsNotExist(err) {
		t.Errorf("damaged file still in place: %v", err)
	}
	// The damage report names the lost range.
	_, reportPath := v.lostFound("report.odt" + DamageReportSuffix)
	text := string(v.readEnc(reportPath))
	for _, want := range []string{"/Documents/report.odt", "lost:     bytes 8192-12287 (4096 bytes)", "block 2 fails authentication"} {
		if !strings.Contains(text, want) {
			t.Errorf("damage report lacks %q:\n%s", want, text)
		}
	}
	// The long-named file lost its name, not its content.
	unnamed := unnamedPrefix + filepath.Base(m["long"])[2:18]
	if rep.Moves[0].To != "/"+LostFoundName+"/"+unnamed {
		t.Errorf("moved: %+v, want %s", rep.Moves[0], unnamed)
	}
	_, unnamedPath := v.lostFound(unnamed)
	if got := v.readEnc(unnamedPath); !bytes.Equal(got, v.data[m["long"]]) {
		t.Errorf("the file with a lost name does not read as it was")
	}
	_, tempPath := v.lostFound("tx.cryptpt-temp")
	if got := v.readEnc(tempPath); string(got) != "temp bytes" {
		t.Errorf("temp file kept as %q", got)
	}

	rep = v.check(false)
	if len(rep.Problems) != 0 || rep.LostFound != 6 {
		t.Fatalf("after repair: %+v", rep)
	}
	// A second repair of the same damage elsewhere gets a numbered name.
	must(t, os.WriteFile(filepath.Join(v.root, crypt.TempPrefix+"x"), nil, 0o600))
	rep = v.check(true)
	if len(rep.Moves) != 1 || rep.Moves[0].To != "/"+LostFoundName+"/tx.2.cryptpt-temp" || rep.Unrepaired() != 0 {
		t.Fatalf("second repair: %+v", rep.Moves)
	}
}

// TestRepairLostDirectoryName: a directory whose name fails is set aside
// under a made-up name with its contents readable, and a damaged file in it
// is salvaged under its own name.
func TestRepairLostDirectoryName(t *testing.T) {
	v := newTestVault(t)
	m := v.build()
	flipByte(t, m["one"], crypt.HeaderSize+crypt.NonceSize)
	b := []byte(filepath.Base(m["docs"]))
	b[10] = map[bool]byte{true: 'A', false: 'B'}[b[10] != 'A']
	badDocs := filepath.Join(v.root, string(b))
	must(t, os.Rename(m["docs"], badDocs))

	rep := v.check(true)
	if rep.Damaged() != 2 || rep.Unrepaired() != 0 || len(rep.Salvages) != 1 {
		t.Fatalf("repair: %+v", rep)
	}
	if s := rep.Salvages[0]; s.Copy != "/"+LostFoundName+"/one" || len(s.Lost) != 1 || s.Lost[0] != (Range{0, 1}) {
		t.Errorf("salvage: %+v", s)
	}
	lf, _ := v.lostFound("")
	_, text := v.lostFound("one" + DamageReportSuffix)
	if got := string(v.readEnc(text)); !strings.Contains(got, "file:     one, in a directory whose path is lost") {
		t.Errorf("damage report:\n%s", got)
	}
	unnamed := v.name(lf, unnamedPrefix+string(b[2:18]))
	if got := v.readEnc(v.name(unnamed, "report.odt")); !bytes.Equal(got, v.data[m["report"]]) {
		t.Errorf("report.odt in the set-aside directory does not read as it was")
	}
	if rep := v.check(false); len(rep.Problems) != 0 {
		t.Errorf("after repair: %+v", rep.Problems)
	}
}

// TestRepairWithoutRootIV: with the root's IV unusable, repair cannot name
// an encrypted lost+found and falls back to moving entries raw into a
// plaintext one; the IV itself is left for the user to restore.
func TestRepairWithoutRootIV(t *testing.T) {
	v := newTestVault(t)
	v.build()
	must(t, os.WriteFile(filepath.Join(v.root, crypt.DirIVName), []byte("short"), 0o600))
	must(t, os.WriteFile(filepath.Join(v.root, crypt.TempPrefix+"x"), []byte("t"), 0o600))
	rep := v.check(true)
	if rep.Unrepaired() == 0 || len(rep.Moves) != 1 || rep.Moves[0].To != "/"+LostFoundName+"/tx" {
		t.Fatalf("repair: %+v", rep)
	}
	if got, err := os.ReadFile(filepath.Join(v.root, LostFoundName, "tx")); err != nil || string(got) != "t" {
		t.Errorf("moved temp file: %q, %v", got, err)
	}
}

// TestSalvage salvages files whose header or size is damaged.
func TestSalvage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inject   func(t *testing.T, m map[string]string)
		keep     int64 // plaintext bytes of the copy, -1 = no copy
		cut      int64
		noHeader bool
	}{
		{"bad magic", func(t *testing.T, m map[string]string) { flipByte(t, m["report"], 1) }, 5*crypt.BlockSize + 100, 0, true},
		{"bad size", func(t *testing.T, m map[string]string) {
			must(t, os.Truncate(m["report"], crypt.CipherOffset(5)+10))
		}, 5 * crypt.BlockSize, 10, false},
		{"short file", func(t *testing.T, m map[string]string) { must(t, os.Truncate(m["report"], 10)) }, -1, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVault(t)
			m := v.build()
			tc.inject(t, m)
			rep := v.check(true)
			if rep.Unrepaired() != 0 || len(rep.Salvages) != 1 {
				t.Fatalf("repair: %+v", rep)
			}
			s := rep.Salvages[0]
			if s.Cut != tc.cut || s.NoHeader != tc.noHeader || len(s.Lost) != 0 && tc.keep >= 0 {
				t.Errorf("salvage: %+v", s)
			}
			_, copyPath := v.lostFound("report.odt")
			if tc.keep < 0 {
				if s.Copy != "" {
					t.Errorf("a copy of an unreadable file: %+v", s)
				}
				if _, err := os.Lstat(copyPath); !os.IsNotExist(err) {
					t.Errorf("copy exists: %v", err)
				}
				return
			}
			if got := v.readEnc(copyPath); !bytes.Equal(got, v.data[m["report"]][:tc.keep]) {
				t.Errorf("copy: %d bytes, not the first %d of the original", len(got), tc.keep)
			}
			if rep := v.check(false); len(rep.Problems) != 0 {
				t.Errorf("after repair: %+v", rep.Problems)
			}
		})
	}
}

func TestBlockList(t *testing.T) {
	for _, tc := range []struct {
		in   []uint64
		want string
	}{
		{[]uint64{3}, "block 3 fails authentication"},
		{[]uint64{1, 2}, "blocks 1 and 2 fail authentication"},
		{[]uint64{1, 2, 5}, "blocks 1, 2 and 5 fail authentication"},
		{[]uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "blocks 0, 1, 2, 3, 4, 5, 6, 7 and 2 more fail authentication"},
	} {
		if got := blockList(tc.in); got != tc.want {
			t.Errorf("blockList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A sync tool's conflict copies (Syncthing's VAULTNAME.sync-conflict-...)
// of a file, a long-named file whose original is gone, and a link sealed to
// its name are no damage: checked under the name the mount shows, and a
// repair leaves them, and the sidecar they share, in place.
func TestConflictCopies(t *testing.T) {
	v := newTestVault(t)
	m := v.build()
	const marker = ".sync-conflict-20240102-150405-ABCDEF2"
	docs := m["docs"]
	iv, err := crypt.ParseDirIV(mustRead(t, filepath.Join(docs, crypt.DirIVName)))
	if err != nil {
		t.Fatal(err)
	}
	link := v.name(docs, "link2")
	sealed := v.k.SealMeta([]byte("target"), crypt.SymlinkAD(crypt.FormatVersion, iv, "link2"))
	if err := os.Symlink(base64.RawURLEncoding.EncodeToString(sealed), link+marker); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{m["report"], m["long"]} {
		if err := os.WriteFile(p+marker, mustRead(t, p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(m["long"]); err != nil {
		t.Fatal(err)
	}
	rep := v.check(true)
	if len(rep.Problems) != 0 || len(rep.Moves) != 0 {
		t.Fatalf("conflict copies: problems %+v, moves %+v", rep.Problems, rep.Moves)
	}
	if rep.Files != 7 || rep.Symlinks != 2 {
		t.Errorf("counts: %+v", rep)
	}
	for _, p := range []string{m["report"] + marker, m["long"] + marker, crypt.SidecarName(filepath.Base(m["long"]))} {
		if _, err := os.Lstat(filepath.Join(docs, filepath.Base(p))); err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
		}
	}
	// A directory made on two devices: the IV it lost kept as a copy, the
	// entries named under it checked under it, under the name the mount
	// shows them by.
	private := m["private"]
	if err := os.Rename(filepath.Join(private, crypt.DirIVName), filepath.Join(private, crypt.DirIVName+marker)); err != nil {
		t.Fatal(err)
	}
	v.mkdirIV(private)
	if rep := v.check(false); len(rep.Problems) != 0 {
		t.Errorf("lost directory IV: problems %+v", rep.Problems)
	}
	flipByte(t, m["report"]+marker, crypt.HeaderSize+20)
	flipByte(t, m["secret"], crypt.HeaderSize+20)
	rep = v.check(false)
	var paths []string
	for _, p := range rep.Problems {
		paths = append(paths, p.Path)
	}
	slices.Sort(paths)
	if want := []string{"/Documents/report" + marker + ".odt", "/Videos/private/secret" + marker + ".txt"}; !slices.Equal(paths, want) {
		t.Errorf("damaged copies reported as %q, want %q", paths, want)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
