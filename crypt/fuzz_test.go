package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzIV is the directory IV used by the name fuzz targets and their seeds.
var fuzzIV = [DirIVSize]byte{0: 0xd1, 15: 0x5e}

// fuzzID is the file ID used by FuzzDecryptBlock and its seeds.
var fuzzID = [FileIDLen]byte{0: 0xf1, 15: 0x1d}

// fuzzHdr is the format-2 header of that file.
var fuzzHdr = &Header{Version: FormatVersion, ID: fuzzID}

func FuzzParseHeader(f *testing.F) {
	h := Header{Version: FormatVersion, ID: fuzzID}
	f.Add(h.Marshal())
	f.Add((&Header{Version: FormatV1, ID: fuzzID}).Marshal())
	f.Add([]byte("CPT\x00\x00\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if h != (Header{}) || !errors.Is(err, ErrHeader) {
				t.Fatalf("ParseHeader error %v with result %v", err, h)
			}
			return
		}
		if !bytes.Equal(h.Marshal(), b[:HeaderSize]) {
			t.Fatal("Marshal(ParseHeader(b)) != b")
		}
	})
}

func FuzzDecryptBlock(f *testing.F) {
	c := testKeys(f).Content()
	f.Add(c.EncryptBlock(nil, []byte("hello"), 0, fuzzHdr), uint64(0))
	f.Add(c.EncryptBlock(nil, bytes.Repeat([]byte{1}, BlockSize), 3, fuzzHdr), uint64(3))
	f.Add(make([]byte, 40), uint64(1))
	f.Fuzz(func(t *testing.T, sealed []byte, blockNo uint64) {
		if p, err := c.DecryptBlock(nil, sealed, blockNo, fuzzHdr, true); err != nil && p != nil {
			t.Fatalf("DecryptBlock of a last block: error %v with %d bytes", err, len(p))
		}
		p, err := c.DecryptBlock(nil, sealed, blockNo, fuzzHdr, false)
		if err != nil {
			if p != nil || !(errors.Is(err, ErrAuth) || errors.Is(err, ErrSize)) {
				t.Fatalf("DecryptBlock error %v with %d bytes", err, len(p))
			}
			return
		}
		if len(p) != len(sealed)-BlockOverhead {
			t.Fatalf("plaintext %d bytes from %d sealed", len(p), len(sealed))
		}
	})
}

func checkDecryptedName(t *testing.T, n *Names, stored string, sidecar []byte, name string, err error) {
	t.Helper()
	if err != nil {
		if name != "" || !(errors.Is(err, ErrAuth) || errors.Is(err, ErrName)) {
			t.Fatalf("Decrypt error %v with name %q", err, name)
		}
		return
	}
	if !ValidName(name) {
		t.Fatalf("Decrypt returned invalid name %q", name)
	}
	// Each name has exactly one stored form.
	s2, sc2, err := n.Encrypt(&fuzzIV, name)
	if err != nil || s2 != stored || !bytes.Equal(sc2, sidecar) {
		t.Fatalf("Encrypt(Decrypt(%q)) = %q, %v", stored, s2, err)
	}
}

func FuzzDecryptName(f *testing.F) {
	n := testKeys(f).Names()
	for _, name := range []string{"a", "hello.txt", strings.Repeat("q", 173)} {
		s, _, _ := n.Encrypt(&fuzzIV, name)
		f.Add(s)
	}
	f.Add("~~cAA")
	f.Add(DirIVName)
	f.Fuzz(func(t *testing.T, stored string) {
		name, err := n.Decrypt(&fuzzIV, stored, nil)
		checkDecryptedName(t, n, stored, nil, name, err)
	})
}

func FuzzDecryptLongName(f *testing.F) {
	n := testKeys(f).Names()
	for _, name := range []string{strings.Repeat("l", 174), strings.Repeat("m", 255)} {
		s, sc, _ := n.Encrypt(&fuzzIV, name)
		f.Add(s, sc)
	}
	f.Add("~~lAAAA", []byte("~~cAAAA"))
	f.Fuzz(func(t *testing.T, stored string, sidecar []byte) {
		name, err := n.Decrypt(&fuzzIV, stored, sidecar)
		checkDecryptedName(t, n, stored, sidecar, name, err)
	})
}

func FuzzParseDirIV(f *testing.F) {
	f.Add(fuzzIV[:])
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		iv, err := ParseDirIV(b)
		if err != nil {
			if iv != nil || !errors.Is(err, ErrDirIV) {
				t.Fatalf("ParseDirIV error %v with %v", err, iv)
			}
			return
		}
		if !bytes.Equal(iv[:], b) {
			t.Fatal("ParseDirIV changed the bytes")
		}
	})
}

// FuzzFileRead reads stored bytes of any shape as an encrypted file: the
// header and size checks, then the blocks. A read either fails with one of
// the format's errors and returns no bytes, or returns at most len(p).
func FuzzFileRead(f *testing.F) {
	c := testKeys(f).Content()
	for _, size := range []int{0, 1, BlockSize, BlockSize + 1, 2*BlockSize + 100} {
		m := &memStore{}
		if _, err := NewFile(c, m, nil, FormatVersion).WriteAt(bytes.Repeat([]byte{3}, size), 0); err != nil {
			f.Fatal(err)
		}
		f.Add(m.bytes(), uint16(0), uint16(size))
		f.Add(m.bytes(), uint16(BlockSize-1), uint16(3))
	}
	f.Add(fuzzHdr.Marshal(), uint16(0), uint16(1))
	f.Add(append(fuzzHdr.Marshal(), make([]byte, 60)...), uint16(0), uint16(32))
	f.Fuzz(func(t *testing.T, stored []byte, off, n uint16) {
		m := &memStore{memBacking: memBacking{b: stored}}
		p := bytes.Repeat([]byte{0xa5}, int(n))
		got, err := NewFile(c, m, nil, FormatVersion).ReadAt(p, int64(off))
		switch {
		case err == nil || err == io.EOF:
			if got > len(p) || (err == nil && got != len(p)) {
				t.Fatalf("ReadAt = %d, %v for %d bytes", got, err, len(p))
			}
		case errors.Is(err, ErrAuth) || errors.Is(err, ErrSize) || errors.Is(err, ErrHeader):
			if got != 0 || (errors.Is(err, ErrAuth) && !isZero(p)) {
				t.Fatalf("ReadAt error %v with %d bytes", err, got)
			}
		default:
			t.Fatalf("ReadAt error %v is none of the format's", err)
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seeds under testdata/fuzz when
// CRYPT_WRITE_FUZZ_SEEDS=1; otherwise it is skipped.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("CRYPT_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set CRYPT_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz seeds")
	}
	k := testKeys(t)
	c, n := k.Content(), k.Names()
	write := func(target, name string, vals ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			case uint64:
				fmt.Fprintf(&b, "uint64(%d)\n", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("FuzzParseHeader", "valid", (&Header{Version: FormatV1, ID: fuzzID}).Marshal())
	write("FuzzParseHeader", "version2", append([]byte("CPT\x00\x00\x02"), fuzzID[:]...))
	write("FuzzParseHeader", "version3", append([]byte("CPT\x00\x00\x03"), fuzzID[:]...))
	write("FuzzParseHeader", "short", []byte("CPT"))
	write("FuzzDecryptBlock", "valid-short", c.EncryptBlock(nil, []byte("seed block"), 2, fuzzHdr), uint64(2))
	write("FuzzDecryptBlock", "valid-full", c.EncryptBlock(nil, bytes.Repeat([]byte("z"), BlockSize), 9, fuzzHdr), uint64(9))
	write("FuzzDecryptBlock", "hole", make([]byte, 100), uint64(0))
	write("FuzzDecryptBlock", "overhead-only", make([]byte, BlockOverhead), uint64(0))
	for i, name := range []string{"notes.md", strings.Repeat("n", 173)} {
		s, _, _ := n.Encrypt(&fuzzIV, name)
		write("FuzzDecryptName", fmt.Sprintf("valid-%d", i), s)
	}
	write("FuzzDecryptName", "reserved", "~~vault.toml")
	write("FuzzDecryptName", "padded", "~~cAAAAAAAAAAAAAAAAAAAAAAAA=")
	s, sc, _ := n.Encrypt(&fuzzIV, strings.Repeat("long", 60))
	write("FuzzDecryptLongName", "valid", s, sc)
	write("FuzzDecryptLongName", "mismatch", s, append(sc[:len(sc)-1:len(sc)-1], 'A'))
	write("FuzzParseDirIV", "valid", fuzzIV[:])
	write("FuzzParseDirIV", "long", make([]byte, 17))
	write("FuzzContentModel", "mixed", []byte{0, 0, 10, 0, 20, 2, 0, 0, 0, 40, 1, 0, 5, 0, 0, 0x80, 0x10, 1, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0x20, 0, 0, 3, 2, 0, 0, 0xff, 0xff})
	write("FuzzContentModel", "sparse", []byte{0, 0, 5, 0, 3, 0, 0x90, 0, 0, 7, 1, 0x50, 0, 0, 0, 2, 0, 0, 0xff, 0xff})
}
