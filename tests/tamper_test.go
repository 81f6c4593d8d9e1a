package tests

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"cryptpt/crypt"
	"cryptpt/internal/testvault"

	"golang.org/x/sys/unix"
)

// The tamper tests change the vault behind the daemon's back, once while it
// is unmounted and once while it is mounted, and check what the mount shows:
// EIO (content) or a hidden entry (names), a log line naming the entry, never
// bytes other than the ones written, and a daemon that keeps serving other
// files. Cases an attacker can pull off undetected (rollback, whole-file
// swap, truncation at a block boundary, zeroed blocks) are listed with the
// reason; the test checks that they behave as docs/threat-model.md says.

// fixture sizes: three blocks, the last one partial.
const tamperFileSize = 2*crypt.BlockSize + 1808

// longTamperName encrypts to more than 255 bytes: stored under a hash with a
// sidecar.
var longTamperName = strings.Repeat("long-name-", 20) + ".txt"

// tamperEnv is one mounted fixture vault.
type tamperEnv struct {
	t    *testing.T
	tv   *testvault.Vault
	rng  *rand.Rand
	want map[string][]byte // what each fixture file holds, by mount path
	// saved keeps vault bytes a case needs between prepare and tamper.
	saved []byte
	// renamed holds vault names a tamper created, which a log line may
	// name instead of the original.
	renamed []string
}

// fixture files, by mount path.
var tamperFiles = []string{"a.txt", "b.txt", "ctl.txt", "d/f.txt", longTamperName, "x.txt"}

func newTamperEnv(t *testing.T, seed uint64) *tamperEnv {
	t.Helper()
	e := &tamperEnv{
		t:    t,
		tv:   testvault.New(t, testvault.Options{}),
		rng:  rand.New(rand.NewPCG(seed, seed^0x5eed)),
		want: map[string][]byte{},
	}
	must(t, os.Mkdir(e.tv.Path("d"), 0o755))
	for _, rel := range tamperFiles {
		e.write(rel, tamperFileSize)
	}
	must(t, os.Symlink("target/of/the/link", e.tv.Path("link")))
	must(t, unix.Setxattr(e.tv.Path("x.txt"), "user.note", []byte("a secret note"), 0))
	return e
}

// write writes n fresh random bytes to rel through the mount.
func (e *tamperEnv) write(rel string, n int) {
	e.t.Helper()
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(e.rng.Uint32())
	}
	must(e.t, os.WriteFile(e.tv.Path(rel), data, 0o644))
	e.want[rel] = data
}

// stored returns the vault path of a mount entry: the backing entry with the
// same inode number (the mount shows backing inode numbers).
func (e *tamperEnv) stored(rel string) string {
	e.t.Helper()
	var st unix.Stat_t
	must(e.t, unix.Lstat(e.tv.Path(rel), &st))
	var found string
	err := filepath.WalkDir(e.tv.Backing, func(p string, d os.DirEntry, err error) error {
		if err != nil || found != "" {
			return err
		}
		var bst unix.Stat_t
		if unix.Lstat(p, &bst) == nil && bst.Ino == st.Ino && bst.Dev != st.Dev {
			found = p
		}
		return nil
	})
	must(e.t, err)
	if found == "" {
		e.t.Fatalf("no vault entry for %s (inode %d)", rel, st.Ino)
	}
	return found
}

func (e *tamperEnv) read(p string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(p)
	must(e.t, err)
	return b
}

// rewrite replaces the content of vault file p in place (same inode), as a
// sync tool writing into the file would.
func (e *tamperEnv) rewrite(p string, data []byte) {
	e.t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	must(e.t, err)
	_, err = f.Write(data)
	must(e.t, errors.Join(err, f.Close()))
}

func (e *tamperEnv) flip(p string, off int64) {
	e.t.Helper()
	b := e.read(p)
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x10
	e.rewrite(p, b)
}

// swapRanges exchanges n bytes at offA of file a with n bytes at offB of b
// (a may equal b).
func (e *tamperEnv) swapRanges(a string, offA int64, b string, offB int64, n int) {
	e.t.Helper()
	da, db := e.read(a), e.read(b)
	if a == b {
		tmp := slices.Clone(da[offA : offA+int64(n)])
		copy(da[offA:], da[offB:offB+int64(n)])
		copy(da[offB:], tmp)
		e.rewrite(a, da)
		return
	}
	tmp := slices.Clone(da[offA : offA+int64(n)])
	copy(da[offA:], db[offB:offB+int64(n)])
	copy(db[offB:], tmp)
	e.rewrite(a, da)
	e.rewrite(b, db)
}

// renameFlipped renames vault entry p to its name with one base64 character
// changed, keeping the name well-formed.
func (e *tamperEnv) renameFlipped(p string) string {
	e.t.Helper()
	dir, name := filepath.Split(p)
	i := len(name) / 2
	c := byte('A')
	if name[i] == 'A' {
		c = 'B'
	}
	np := filepath.Join(dir, name[:i]+string(c)+name[i+1:])
	must(e.t, os.Rename(p, np))
	e.renamed = append(e.renamed, filepath.Base(np))
	return np
}

// outcome is what the mount showed for a victim after tampering.
type outcome struct {
	kind   string // EIO, hidden, unaffected, wrong bytes, error
	detail string
}

func (o outcome) detected() bool { return o.kind == "EIO" || o.kind == "hidden" }

func (o outcome) String() string {
	if o.detail == "" {
		return o.kind
	}
	return o.kind + " (" + o.detail + ")"
}

// listed reports whether rel shows up in its directory's listing.
func (e *tamperEnv) listed(rel string) bool {
	e.t.Helper()
	entries, err := os.ReadDir(filepath.Dir(e.tv.Path(rel)))
	if err != nil {
		return false
	}
	for _, en := range entries {
		if en.Name() == filepath.Base(rel) {
			return true
		}
	}
	return false
}

func (e *tamperEnv) classifyErr(rel string, err error) outcome {
	switch {
	case errors.Is(err, syscall.EIO):
		return outcome{kind: "EIO"}
	case errors.Is(err, syscall.ENOENT) && !e.listed(rel):
		return outcome{kind: "hidden"}
	}
	return outcome{kind: "error", detail: err.Error()}
}

// probeRead reads a victim file through the mount.
func (e *tamperEnv) probeRead(rel string) outcome {
	got, err := os.ReadFile(e.tv.Path(rel))
	if err != nil {
		return e.classifyErr(rel, err)
	}
	want := e.want[rel]
	if bytes.Equal(got, want) {
		return outcome{kind: "unaffected"}
	}
	o := outcome{kind: "wrong bytes"}
	switch {
	case len(got) < len(want) && bytes.HasPrefix(want, got):
		o.detail = fmt.Sprintf("a %d-byte prefix of the %d bytes written", len(got), len(want))
	case len(got) == len(want) && bytes.Equal(got[crypt.BlockSize:2*crypt.BlockSize], make([]byte, crypt.BlockSize)) &&
		bytes.Equal(got[:crypt.BlockSize], want[:crypt.BlockSize]):
		o.detail = "block 1 reads as zeros"
	default:
		for other, data := range e.want {
			if other != rel && bytes.Equal(got, data) {
				o.detail = "the content of " + other
			}
		}
		if o.detail == "" {
			o.detail = "an earlier content of the file"
		}
	}
	return o
}

// probeListing checks a victim whose vault name was changed: it must be
// missing from its directory listing, and a lookup by name must not return
// other bytes (a long name is found by its hash without the sidecar, and
// still reads correctly).
func (e *tamperEnv) probeListing(rel string) outcome {
	if e.listed(rel) {
		o := e.probeRead(rel)
		if o.kind == "unaffected" {
			o.detail = "still listed"
		}
		return o
	}
	o := e.probeRead(rel)
	switch o.kind {
	case "hidden", "EIO":
		return outcome{kind: "hidden", detail: "not listed; open by name: " + o.kind}
	case "unaffected":
		return outcome{kind: "hidden", detail: "not listed; open by name still reads the right bytes"}
	}
	return o
}

func (e *tamperEnv) probeReadlink(rel string) outcome {
	got, err := os.Readlink(e.tv.Path(rel))
	if err != nil {
		return e.classifyErr(rel, err)
	}
	if got == "target/of/the/link" {
		return outcome{kind: "unaffected"}
	}
	return outcome{kind: "wrong bytes", detail: "target " + strconv.Quote(got)}
}

func (e *tamperEnv) probeXattr(rel string) outcome {
	buf := make([]byte, 256)
	n, err := unix.Getxattr(e.tv.Path(rel), "user.note", buf)
	if err != nil {
		return e.classifyErr(rel, err)
	}
	if string(buf[:n]) == "a secret note" {
		return outcome{kind: "unaffected"}
	}
	return outcome{kind: "wrong bytes", detail: strconv.Quote(string(buf[:n]))}
}

// label shortens the long fixture name for log lines.
func label(rel string) string {
	if len(rel) > 30 {
		return rel[:20] + "...(" + strconv.Itoa(len(rel)) + " bytes)"
	}
	return rel
}

// tamperCase is one way to change the vault.
type tamperCase struct {
	name string
	// prepare runs while mounted, before the vault is changed (optional).
	prepare func(e *tamperEnv)
	// tamper changes the vault; paths come from stored, computed while
	// mounted.
	tamper func(e *tamperEnv, stored map[string]string)
	// victims are the mount paths the change should make unreadable.
	victims []string
	// probe checks one victim (default probeRead).
	probe func(e *tamperEnv, rel string) outcome
	// limit is non-empty for a change the format cannot detect: why.
	limit string
}

var tamperCases = []tamperCase{
	{name: "header magic bit", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) { e.flip(s["a.txt"], 0) }},
	{name: "header version bit", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) { e.flip(s["a.txt"], crypt.MagicLen+1) }},
	{name: "header file ID bit", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) { e.flip(s["a.txt"], crypt.HeaderSize-1) }},
	{name: "header zeroed", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			b := e.read(s["a.txt"])
			clear(b[:crypt.HeaderSize])
			e.rewrite(s["a.txt"], b)
		}},
	{name: "header of another file", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			e.swapRanges(s["a.txt"], 0, s["b.txt"], 0, crypt.HeaderSize)
		}},
	{name: "block nonce bit", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) { e.flip(s["a.txt"], crypt.CipherOffset(1)+3) }},
	{name: "block ciphertext bit", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			e.flip(s["a.txt"], crypt.CipherOffset(1)+crypt.NonceSize+100)
		}},
	{name: "block tag bit", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			e.flip(s["a.txt"], crypt.CipherOffset(2)-1)
		}},
	{name: "last block tag bit", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) { e.flip(s["a.txt"], -1) }},
	{name: "swap blocks within a file", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			e.swapRanges(s["a.txt"], crypt.CipherOffset(0), s["a.txt"], crypt.CipherOffset(1), crypt.CipherBlockSize)
		}},
	{name: "swap blocks between files", victims: []string{"a.txt", "b.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			e.swapRanges(s["a.txt"], crypt.CipherOffset(1), s["b.txt"], crypt.CipherOffset(1), crypt.CipherBlockSize)
		}},
	{name: "swap whole files", victims: []string{"a.txt", "b.txt"},
		limit: "the file ID lives in the file's own header and is not bound to its name or path",
		tamper: func(e *tamperEnv, s map[string]string) {
			a, b := e.read(s["a.txt"]), e.read(s["b.txt"])
			e.rewrite(s["a.txt"], b)
			e.rewrite(s["b.txt"], a)
		}},
	{name: "truncate mid-block", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			must(e.t, os.Truncate(s["a.txt"], crypt.CipherOffset(1)+100))
		}},
	{name: "truncate leaving a stub block", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			must(e.t, os.Truncate(s["a.txt"], crypt.CipherOffset(1)+crypt.BlockOverhead))
		}},
	{name: "truncate inside the header", victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			must(e.t, os.Truncate(s["a.txt"], crypt.HeaderSize/2))
		}},
	{name: "truncate at a block boundary", victims: []string{"a.txt"},
		limit: "no block records the file's length: dropping whole trailing blocks leaves a valid shorter file",
		tamper: func(e *tamperEnv, s map[string]string) {
			must(e.t, os.Truncate(s["a.txt"], crypt.CipherOffset(2)))
		}},
	{name: "truncate to the header", victims: []string{"a.txt"},
		limit: "a header without blocks is a valid empty file",
		tamper: func(e *tamperEnv, s map[string]string) {
			must(e.t, os.Truncate(s["a.txt"], crypt.HeaderSize))
		}},
	{name: "zeroed block", victims: []string{"a.txt"},
		limit: "an all-zero block is a hole of a sparse file and reads as zeros",
		tamper: func(e *tamperEnv, s map[string]string) {
			b := e.read(s["a.txt"])
			clear(b[crypt.CipherOffset(1):crypt.CipherOffset(2)])
			e.rewrite(s["a.txt"], b)
		}},
	{name: "rollback to an older copy", victims: []string{"a.txt"},
		limit: "nothing outside the file records its version",
		prepare: func(e *tamperEnv) {
			e.saved = e.read(e.stored("a.txt"))
			old := e.want["a.txt"]
			e.write("a.txt", tamperFileSize)
			e.want["a.txt (old)"] = old
		},
		tamper: func(e *tamperEnv, s map[string]string) { e.rewrite(s["a.txt"], e.saved) }},
	{name: "encrypted name changed", probe: (*tamperEnv).probeListing, victims: []string{"a.txt"},
		tamper: func(e *tamperEnv, s map[string]string) { e.renameFlipped(s["a.txt"]) }},
	{name: "long-name sidecar bit", probe: (*tamperEnv).probeListing, victims: []string{longTamperName},
		tamper: func(e *tamperEnv, s map[string]string) {
			p := s[longTamperName]
			e.flip(filepath.Join(filepath.Dir(p), crypt.SidecarName(filepath.Base(p))), 10)
		}},
	{name: "long-name sidecar deleted", probe: (*tamperEnv).probeListing, victims: []string{longTamperName},
		tamper: func(e *tamperEnv, s map[string]string) {
			p := s[longTamperName]
			must(e.t, os.Remove(filepath.Join(filepath.Dir(p), crypt.SidecarName(filepath.Base(p)))))
		}},
	{name: "directory IV bit", probe: (*tamperEnv).probeListing, victims: []string{"d/f.txt"},
		tamper: func(e *tamperEnv, s map[string]string) {
			e.flip(filepath.Join(s["d"], crypt.DirIVName), 5)
		}},
	{name: "symlink target bit", victims: []string{"link"}, probe: (*tamperEnv).probeReadlink,
		tamper: func(e *tamperEnv, s map[string]string) {
			p := s["link"]
			target, err := os.Readlink(p)
			must(e.t, err)
			i := len(target) / 2
			c := byte('A')
			if target[i] == 'A' {
				c = 'B'
			}
			must(e.t, os.Remove(p))
			must(e.t, os.Symlink(target[:i]+string(c)+target[i+1:], p))
		}},
	{name: "xattr value bit", victims: []string{"x.txt"}, probe: (*tamperEnv).probeXattr,
		tamper: func(e *tamperEnv, s map[string]string) {
			p := s["x.txt"]
			buf := make([]byte, 256)
			n, err := unix.Lgetxattr(p, "user.note", buf)
			must(e.t, err)
			buf[n/2] ^= 1
			must(e.t, unix.Lsetxattr(p, "user.note", buf[:n], 0))
		}},
}

// dropCaches makes the kernel forget cached pages, dentries and inodes, so the
// next access asks the daemon again.
func dropCaches(t *testing.T) {
	t.Helper()
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Logf("cannot drop caches (%v): the kernel may answer from its cache", err)
	}
}

func tamperSeed(t *testing.T) uint64 {
	seed := uint64(20240101)
	if s := os.Getenv("CRYPTPT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		must(t, err)
		seed = v
	}
	t.Logf("seed %d (set CRYPTPT_SEED to repeat)", seed)
	return seed
}

func TestTamper(t *testing.T) {
	seed := tamperSeed(t)
	tried, detected := 0, 0
	var limits []string
	for _, mounted := range []bool{false, true} {
		when := "unmounted"
		if mounted {
			when = "mounted"
		}
		for _, tc := range tamperCases {
			t.Run(when+"/"+tc.name, func(t *testing.T) {
				e := newTamperEnv(t, seed)
				if tc.prepare != nil {
					tc.prepare(e)
				}
				stored := map[string]string{}
				for _, rel := range append(slices.Clone(tamperFiles), "d", "link") {
					stored[rel] = e.stored(rel)
				}
				if mounted {
					tc.tamper(e, stored)
					dropCaches(t)
				} else {
					e.tv.Unmount(t)
					tc.tamper(e, stored)
					e.tv.Remount(t)
				}
				probe := tc.probe
				if probe == nil {
					probe = (*tamperEnv).probeRead
				}
				for _, rel := range tc.victims {
					before := len(e.tv.Log())
					o := probe(e, rel)
					logged := e.tv.Log()[before:]
					tried++
					if o.detected() {
						detected++
					}
					t.Logf("%s: %s", label(rel), o)
					switch {
					case o.detected():
						names := append([]string{"/" + rel, filepath.Base(stored[rel])}, e.renamed...)
						if !slices.ContainsFunc(names, func(n string) bool { return strings.Contains(logged, n) }) {
							t.Errorf("%s: no log line names the entry; log:\n%s", rel, logged)
						}
					case tc.limit != "":
						limits = append(limits, fmt.Sprintf("%s/%s: %s: %s", when, tc.name, o, tc.limit))
					case mounted && o.kind == "unaffected":
						// The daemon still holds the old state in memory (a
						// directory IV it read before): no wrong bytes.
						limits = append(limits, fmt.Sprintf("%s/%s: unaffected until remount", when, tc.name))
					default:
						t.Errorf("%s: tampering not detected: %s", rel, o)
					}
				}
				// The daemon keeps working.
				if got, err := os.ReadFile(e.tv.Path("ctl.txt")); err != nil || !bytes.Equal(got, e.want["ctl.txt"]) {
					t.Errorf("control file after tampering: %v", err)
				}
				e.write("new.txt", 5000)
				if got, err := os.ReadFile(e.tv.Path("new.txt")); err != nil || !bytes.Equal(got, e.want["new.txt"]) {
					t.Errorf("new file after tampering: %v", err)
				}
				for rel, data := range e.want {
					if hits := vaultContains(t, e.tv.Backing, data[:32]); len(hits) != 0 {
						t.Errorf("plaintext of %s in the vault: %v", rel, hits)
					}
				}
			})
		}
	}
	t.Logf("tampering detected in %d of %d probes", detected, tried)
	for _, l := range limits {
		t.Logf("undetected (known limit): %s", l)
	}
}
