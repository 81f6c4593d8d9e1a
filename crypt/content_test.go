package crypt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestSizes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		plain, cipher int64
	}{
		{0, 0},
		{1, 51},
		{4095, 22 + 4095 + 28},
		{4096, 4146},
		{4097, 4175},
		{8192, 22 + 2*4124},
		{1 << 20, 22 + 256*4124},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.plain), func(t *testing.T) {
			if got := CipherSize(tt.plain); got != tt.cipher {
				t.Errorf("CipherSize(%d) = %d, want %d", tt.plain, got, tt.cipher)
			}
			if got, err := PlainSize(tt.cipher); err != nil || got != tt.plain {
				t.Errorf("PlainSize(%d) = %d, %v; want %d", tt.cipher, got, err, tt.plain)
			}
		})
	}
	if HeaderSize != 22 || CipherBlockSize != 4124 {
		t.Fatalf("HeaderSize %d CipherBlockSize %d", HeaderSize, CipherBlockSize)
	}
	if p, err := PlainSize(HeaderSize); p != 0 || err != nil {
		t.Errorf("PlainSize(HeaderSize) = %d, %v", p, err)
	}
	for _, bad := range []int64{-1, 1, 21, 22 + 1, 22 + 28, 22 + 4124 + 28, 22 + 4124 + 5} {
		if p, err := PlainSize(bad); !errors.Is(err, ErrSize) || p != 0 {
			t.Errorf("PlainSize(%d) = %d, %v; want ErrSize", bad, p, err)
		}
	}
	// Round trip over every remainder near block boundaries.
	for plain := int64(1); plain < 3*BlockSize+3; plain++ {
		if got, err := PlainSize(CipherSize(plain)); err != nil || got != plain {
			t.Fatalf("PlainSize(CipherSize(%d)) = %d, %v", plain, got, err)
		}
	}
	if BlockNo(4095) != 0 || BlockNo(4096) != 1 || CipherOffset(0) != 22 || CipherOffset(2) != 22+2*4124 {
		t.Error("BlockNo/CipherOffset")
	}
}

func TestHeader(t *testing.T) {
	t.Parallel()
	h, err := NewHeader(FormatVersion)
	if err != nil {
		t.Fatal(err)
	}
	b := h.Marshal()
	if len(b) != HeaderSize || string(b[:4]) != "CPT\x00" || b[4] != 0 || b[5] != 2 {
		t.Fatalf("Marshal = %x", b)
	}
	if got, err := ParseHeader(b); err != nil || got != h {
		t.Fatalf("ParseHeader = %v, %v", got, err)
	}
	h2, _ := NewHeader(FormatVersion)
	if h2 == h {
		t.Fatal("two headers share an ID")
	}
	tests := []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:HeaderSize-1] }},
		{"empty", func(b []byte) []byte { return nil }},
		{"bad magic", func(b []byte) []byte { b[0] ^= 1; return b }},
		{"magic nul", func(b []byte) []byte { b[3] = 'X'; return b }},
		{"version 3", func(b []byte) []byte { b[5] = 3; return b }},
		{"version 0", func(b []byte) []byte { b[5] = 0; return b }},
		{"version 256", func(b []byte) []byte { b[4] = 1; return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseHeader(tt.mod(h.Marshal())); !errors.Is(err, ErrHeader) {
				t.Errorf("err = %v, want ErrHeader", err)
			}
		})
	}
}

func TestBlockRoundTrip(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	id := &Header{Version: FormatVersion, ID: [16]byte{1, 2, 3}}
	for _, n := range []int{1, 15, 16, 17, 4095, 4096} {
		plain := bytes.Repeat([]byte{byte(n)}, n)
		sealed := c.EncryptBlock([]byte("prefix"), plain, 7, id)
		if len(sealed) != 6+n+BlockOverhead || string(sealed[:6]) != "prefix" {
			t.Fatalf("EncryptBlock len %d", len(sealed))
		}
		got, err := c.DecryptBlock([]byte("x"), sealed[6:], 7, id, false)
		if err != nil || !bytes.Equal(got[1:], plain) || got[0] != 'x' {
			t.Fatalf("n=%d: DecryptBlock: %v", n, err)
		}
		again := c.EncryptBlock(nil, plain, 7, id)
		if bytes.Equal(again, sealed[6:]) {
			t.Fatal("two seals of one block are identical (nonce reuse)")
		}
	}
	// Holes decrypt to zeros, except as the last block of a format-2 file.
	got, err := c.DecryptBlock(nil, make([]byte, 100), 3, id, false)
	if err != nil || !bytes.Equal(got, make([]byte, 100-BlockOverhead)) {
		t.Fatalf("hole: %x, %v", got, err)
	}
	if got, err := c.DecryptBlock(nil, make([]byte, 100), 3, id, true); !errors.Is(err, ErrAuth) || got != nil {
		t.Fatalf("zero last block of a format-2 file: %x, %v; want ErrAuth", got, err)
	}
	v1 := &Header{Version: FormatV1, ID: id.ID}
	if _, err := c.DecryptBlock(nil, make([]byte, 100), 3, v1, true); err != nil {
		t.Fatalf("zero last block of a format-1 file: %v; want a hole", err)
	}
}

// TestFileKeys checks that format 2 seals each file under its own key: a
// block sealed for one file ID opens under no other, and a format-2 block is
// not a format-1 block of the same file ID.
func TestFileKeys(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	a := &Header{Version: FormatVersion, ID: [16]byte{1}}
	b := &Header{Version: FormatVersion, ID: [16]byte{2}}
	sealed := c.EncryptBlock(nil, []byte("file a"), 0, a)
	if _, err := c.DecryptBlock(nil, sealed, 0, b, false); !errors.Is(err, ErrAuth) {
		t.Fatalf("block of file a under file b: %v", err)
	}
	if _, err := c.DecryptBlock(nil, sealed, 0, &Header{Version: FormatV1, ID: a.ID}, false); !errors.Is(err, ErrAuth) {
		t.Fatalf("format-2 block under the format-1 key: %v", err)
	}
	// The key cache is bounded and still gives the right key after a reset.
	for i := range maxFileKeys + 10 {
		h := &Header{Version: FormatVersion}
		binary.BigEndian.PutUint32(h.ID[:], uint32(i))
		c.cipherFor(h)
	}
	if len(c.fileKeys) > maxFileKeys {
		t.Fatalf("%d cached file keys, bound %d", len(c.fileKeys), maxFileKeys)
	}
	if got, err := c.DecryptBlock(nil, sealed, 0, a, true); err != nil || string(got) != "file a" {
		t.Fatalf("after the cache was reset: %q, %v", got, err)
	}
}

func TestBlockTamper(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	id := Header{Version: FormatVersion, ID: [16]byte{9}}
	other := Header{Version: FormatVersion, ID: [16]byte{8}}
	plain := bytes.Repeat([]byte("abcd"), 1024)
	sealed := c.EncryptBlock(nil, plain, 3, &id)
	tests := []struct {
		name    string
		sealed  []byte
		blockNo uint64
		id      *Header
		want    error
	}{
		{"flip nonce", flip(sealed, 0), 3, &id, ErrAuth},
		{"flip ciphertext", flip(sealed, 100), 3, &id, ErrAuth},
		{"flip tag", flip(sealed, len(sealed)-1), 3, &id, ErrAuth},
		{"wrong block number", sealed, 4, &id, ErrAuth},
		{"other file ID", sealed, 3, &other, ErrAuth},
		{"truncated", sealed[:len(sealed)-1], 3, &id, ErrAuth},
		{"truncated to overhead", sealed[:BlockOverhead], 3, &id, ErrSize},
		{"too long", append(bytes.Clone(sealed), 0), 3, &id, ErrSize},
		{"empty", nil, 3, &id, ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.DecryptBlock(nil, tt.sealed, tt.blockNo, tt.id, false)
			if !errors.Is(err, tt.want) || got != nil {
				t.Errorf("DecryptBlock = %d bytes, %v; want %v", len(got), err, tt.want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x10
	return b
}

func TestFileRoundTrip(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	for _, n := range []int{0, 1, 4095, 4096, 4097, 3*4096 + 5, 300 * 4096} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i * 31)
			}
			m, h := writeFile(t, c, data)
			if n == 0 && m.size() != 0 {
				// WriteAt of nothing does not create a header.
				t.Fatalf("empty write wrote %d bytes", m.size())
			}
			got, err := readAll(c, m, &h)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, %v", len(got), err)
			}
			if n > 0 && m.writes != 1 {
				t.Errorf("WriteAt used %d backing writes, want 1", m.writes)
			}
		})
	}
}

// TestFileTamper: every modification of a stored file is detected.
func TestFileTamper(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	data := bytes.Repeat([]byte("0123456789"), 1000) // 3 blocks, last partial
	tests := []struct {
		name string
		mod  func(m *memBacking, other *memBacking)
		want error
	}{
		{"flip block 0", func(m, _ *memBacking) { m.b[HeaderSize+50] ^= 1 }, ErrAuth},
		{"flip last tag", func(m, _ *memBacking) { m.b[len(m.b)-1] ^= 1 }, ErrAuth},
		{"flip file ID", func(m, _ *memBacking) { m.b[10] ^= 1 }, ErrAuth},
		{"swap blocks 0 and 1", func(m, _ *memBacking) {
			b0 := bytes.Clone(m.b[CipherOffset(0):CipherOffset(1)])
			copy(m.b[CipherOffset(0):], m.b[CipherOffset(1):CipherOffset(2)])
			copy(m.b[CipherOffset(1):], b0)
		}, ErrAuth},
		{"block from other file", func(m, o *memBacking) {
			copy(m.b[CipherOffset(1):CipherOffset(2)], o.b[CipherOffset(1):CipherOffset(2)])
		}, ErrAuth},
		{"header from other file", func(m, o *memBacking) { copy(m.b[:HeaderSize], o.b[:HeaderSize]) }, ErrAuth},
		{"truncate last block by 1", func(m, _ *memBacking) { m.b = m.b[:len(m.b)-1] }, ErrAuth},
		{"truncate into overhead", func(m, _ *memBacking) { m.b = m.b[:CipherOffset(2)+10] }, ErrSize},
		{"truncate into header", func(m, _ *memBacking) { m.b = m.b[:10] }, ErrHeader},
		{"flip magic", func(m, _ *memBacking) { m.b[0] ^= 1 }, ErrHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := writeFile(t, c, data)
			o, _ := writeFile(t, c, data)
			tt.mod(m, o)
			h, err := ParseHeader(m.b)
			if err == nil {
				_, err = readAll(c, m, &h)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadAtNoGarbage(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	data := bytes.Repeat([]byte{0xAA}, 5*BlockSize)
	m, h := writeFile(t, c, data)
	m.b[CipherOffset(3)+20] ^= 1
	p := bytes.Repeat([]byte{0x55}, len(data))
	n, err := c.ReadAt(m, &h, p, 0, m.size())
	if n != 0 || !errors.Is(err, ErrAuth) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if !bytes.Equal(p, make([]byte, len(p))) {
		t.Fatal("ReadAt left bytes in p after an auth failure")
	}
	// Reads not touching block 3 still work.
	n, err = c.ReadAt(m, &h, p[:100], 10, m.size())
	if n != 100 || err != nil {
		t.Fatalf("ReadAt block 0 = %d, %v", n, err)
	}
	// The same corruption fails a partial write into block 3 (RMW).
	if _, err := c.WriteAt(m, &h, []byte{1}, 3*BlockSize+5, m.size()); !errors.Is(err, ErrAuth) {
		t.Fatalf("WriteAt over corrupt block = %v", err)
	}
}

func TestReadAtEOF(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	m, h := writeFile(t, c, []byte("hello"))
	p := make([]byte, 10)
	tests := []struct {
		off   int64
		n     int
		isEOF bool
	}{{0, 5, true}, {4, 1, true}, {5, 0, true}, {100, 0, true}}
	for _, tt := range tests {
		n, err := c.ReadAt(m, &h, p, tt.off, m.size())
		if n != tt.n || (err == io.EOF) != tt.isEOF {
			t.Errorf("ReadAt(off %d) = %d, %v", tt.off, n, err)
		}
	}
	if n, err := c.ReadAt(m, &h, p[:5], 0, m.size()); n != 5 || err != nil {
		t.Errorf("exact read = %d, %v", n, err)
	}
	if _, err := c.ReadAt(m, &h, p, -1, m.size()); !errors.Is(err, ErrOffset) {
		t.Errorf("negative offset: %v", err)
	}
	if n, err := c.ReadAt(&memBacking{}, &h, p, 0, 0); n != 0 || err != io.EOF {
		t.Errorf("empty file: %d, %v", n, err)
	}
}

func TestSparse(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	h, _ := NewHeader(FormatVersion)
	m := &memBacking{}
	// Truncate up from empty: header, holes, and (format 2) a sealed last
	// block, so that a file never ends in a hole.
	size, err := c.Truncate(m, &h, 10*BlockSize+7, 0)
	if err != nil || size != CipherSize(10*BlockSize+7) || m.size() != size {
		t.Fatalf("Truncate up = %d, %v (backing %d)", size, err, m.size())
	}
	if !bytes.Equal(m.b[HeaderSize:CipherOffset(10)], make([]byte, CipherOffset(10)-HeaderSize)) {
		t.Fatal("truncate up wrote block data before the last block")
	}
	if isZero(m.b[CipherOffset(10):]) {
		t.Fatal("truncate up left the last block a hole")
	}
	v1 := Header{Version: FormatV1, ID: h.ID}
	m1 := &memBacking{}
	if _, err := c.Truncate(m1, &v1, 10*BlockSize+7, 0); err != nil || !isZero(m1.b[HeaderSize:]) {
		t.Fatalf("format-1 truncate up: %v, or it wrote block data", err)
	}
	got, err := readAll(c, m, &h)
	if err != nil || !bytes.Equal(got, make([]byte, 10*BlockSize+7)) {
		t.Fatalf("read holes: %v", err)
	}
	// Write far past EOF: blocks in between stay holes.
	m2, h2 := writeFile(t, c, []byte("abc"))
	size, err = c.WriteAt(m2, &h2, []byte("xyz"), 20*BlockSize, m2.size())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m2.b[CipherOffset(1):CipherOffset(20)], make([]byte, CipherOffset(20)-CipherOffset(1))) {
		t.Fatal("write past EOF filled the gap")
	}
	want := make([]byte, 20*BlockSize+3)
	copy(want, "abc")
	copy(want[20*BlockSize:], "xyz")
	if got, err := readAll(c, m2, &h2); err != nil || !bytes.Equal(got, want) || size != m2.size() {
		t.Fatalf("read after sparse write: %v", err)
	}
}

func TestTruncateZero(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	m, h := writeFile(t, c, []byte("hello"))
	if n, err := c.Truncate(m, &h, 0, m.size()); n != 0 || err != nil || m.size() != 0 {
		t.Fatalf("Truncate(0) = %d, %v, backing %d", n, err, m.size())
	}
	h2, _ := NewHeader(FormatVersion)
	if _, err := c.WriteAt(m, &h2, []byte("new"), 0, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := ParseHeader(m.b); err != nil || got != h2 {
		t.Fatal("fresh header not written")
	}
	if _, err := c.Truncate(m, &h2, -1, m.size()); !errors.Is(err, ErrOffset) {
		t.Fatalf("negative truncate: %v", err)
	}
}

func TestMeta(t *testing.T) {
	t.Parallel()
	k := testKeys(t)
	for _, plain := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("t"), 5000)} {
		s := k.SealMeta(plain, []byte("user.a"))
		if len(s) != len(plain)+NonceSize+TagSize {
			t.Fatalf("sealed len %d", len(s))
		}
		got, err := k.OpenMeta(s, []byte("user.a"))
		if err != nil || !bytes.Equal(got, plain) || got == nil {
			t.Fatalf("OpenMeta = %q, %v", got, err)
		}
		for _, bad := range []struct {
			s, ad []byte
		}{{flip(s, len(s)-1), []byte("user.a")}, {s, []byte("user.b")}, {s[:len(s)-1], []byte("user.a")}, {s[:5], nil}} {
			if got, err := k.OpenMeta(bad.s, bad.ad); !errors.Is(err, ErrAuth) || got != nil {
				t.Fatalf("tampered OpenMeta = %q, %v", got, err)
			}
		}
	}
}

func TestParallelMatchesSerial(t *testing.T) {
	t.Parallel()
	data := make([]byte, 200*BlockSize+123)
	for i := range data {
		data[i] = byte(i)
	}
	for _, par := range []bool{false, true} {
		c, _ := newContent(&[32]byte{1})
		c.parallel = par
		m, h := writeFile(t, c, data)
		got, err := readAll(c, m, &h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("parallel=%v: %v", par, err)
		}
		m.b[CipherOffset(150)+40] ^= 1
		if _, err := readAll(c, m, &h); !errors.Is(err, ErrAuth) {
			t.Fatalf("parallel=%v: tamper not detected: %v", par, err)
		}
	}
}
