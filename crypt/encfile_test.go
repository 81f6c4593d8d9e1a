package crypt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"testing"
)

var _ Store = (*memStore)(nil)

// errNoSpace is memStore's ENOSPC.
var errNoSpace = errors.New("no space left")

// memStore is a memBacking as a Store. space, when set, is the size writes
// may reach: a write beyond it stores what fits and fails, as a full disk
// does. failTruncate fails every Truncate.
type memStore struct {
	memBacking
	space        int64
	failTruncate bool
	reserveErr   error
	reserved     [][2]int64 // Reserve calls: off, n
}

func (m *memStore) Size() (int64, error) { return m.size(), nil }

func (m *memStore) Reserve(off, n int64) error {
	m.reserved = append(m.reserved, [2]int64{off, n})
	return m.reserveErr
}

func (m *memStore) WriteAt(p []byte, off int64) (int, error) {
	if m.space > 0 && off+int64(len(p)) > m.space {
		k := min(max(m.space-off, 0), int64(len(p)))
		m.memBacking.WriteAt(p[:k], off)
		return int(k), errNoSpace
	}
	return m.memBacking.WriteAt(p, off)
}

func (m *memStore) Truncate(size int64) error {
	if m.failTruncate {
		return errors.New("truncate failed")
	}
	return m.memBacking.Truncate(size)
}

func (m *memStore) bytes() []byte { return bytes.Clone(m.b) }

// checkFile compares f, and a File that reads the store afresh, with want,
// whole and around every block edge, and the stored size with CipherSize.
func checkFile(t *testing.T, c *Content, m *memStore, f *File, want []byte) {
	t.Helper()
	if got := m.size(); got != CipherSize(int64(len(want))) && !(len(want) == 0 && got == HeaderSize) {
		t.Fatalf("stored %d bytes for %d plaintext, want %d", got, len(want), CipherSize(int64(len(want))))
	}
	for _, g := range []*File{f, NewFile(c, m, nil, FormatVersion)} {
		if ps, err := g.Size(); err != nil || ps != int64(len(want)) {
			t.Fatalf("Size = %d, %v; want %d", ps, err, len(want))
		}
		p := make([]byte, len(want)+7)
		n, err := g.ReadAt(p, 0)
		if err != io.EOF || !bytes.Equal(p[:n], want) {
			t.Fatalf("ReadAt(all) = %d, %v; content differs: %v", n, err, !bytes.Equal(p[:n], want))
		}
		for edge := int64(BlockSize); edge < int64(len(want)); edge += BlockSize {
			lo, hi := edge-3, min(edge+5, int64(len(want)))
			q := make([]byte, hi-lo)
			if n, err := g.ReadAt(q, lo); err != nil || n != len(q) || !bytes.Equal(q, want[lo:hi]) {
				t.Fatalf("ReadAt(%d..%d) = %d, %v", lo, hi, n, err)
			}
		}
	}
}

func TestEncFileRoundTrip(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, v := range []uint16{FormatV1, FormatVersion} {
		for _, size := range []int{1, 4095, 4096, 4097, 8191, 8192, 8193, 3*BlockSize + 5} {
			t.Run(fmt.Sprintf("v%d/%d", v, size), func(t *testing.T) {
				m := &memStore{}
				f := NewFile(c, m, nil, v)
				want := make([]byte, size)
				for i := range want {
					want[i] = byte(rng.Uint32())
				}
				// Appends of an odd length cross every block edge.
				for off := 0; off < size; off += 1000 {
					end := min(off+1000, size)
					if n, err := f.WriteAt(want[off:end], int64(off)); err != nil || n != end-off {
						t.Fatalf("WriteAt(%d) = %d, %v", off, n, err)
					}
				}
				if h := f.Header(); h == nil || h.Version != v {
					t.Fatalf("header %v, want version %d", h, v)
				}
				checkFile(t, c, m, f, want)
				// Overwrites that straddle block edges, and one past EOF.
				for _, w := range [][2]int{{4095, 2}, {4096, 1}, {8190, 5}, {0, 1}, {size - 1, 1}, {size + 4100, 3}} {
					data := bytes.Repeat([]byte{byte(w[0])}, w[1])
					if _, err := f.WriteAt(data, int64(w[0])); err != nil {
						t.Fatalf("WriteAt(%d, %d bytes): %v", w[0], w[1], err)
					}
					if end := w[0] + w[1]; end > len(want) {
						want = append(want, make([]byte, end-len(want))...)
					}
					copy(want[w[0]:], data)
				}
				checkFile(t, c, m, f, want)
				// The format is Content's, byte for byte.
				h, err := ReadHeader(m, m.size())
				if err != nil || *h != *f.Header() {
					t.Fatalf("ReadHeader = %v, %v; want %v", h, err, f.Header())
				}
				got, err := readAll(c, &m.memBacking, h)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("Content.ReadAt: %v", err)
				}
			})
		}
	}
}

func TestEncFileTruncate(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	for _, v := range []uint16{FormatV1, FormatVersion} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			m := &memStore{}
			f := NewFile(c, m, nil, v)
			want := bytes.Repeat([]byte("0123456789abcdef"), 5000/16+1)[:5000]
			if _, err := f.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{4096, 4095, 9000, 8192, 8193, 1, 12289, 0, 3, 4096, 0, 0, 8192} {
				changed, err := f.Truncate(int64(size))
				if err != nil {
					t.Fatalf("Truncate(%d): %v", size, err)
				}
				if wantChanged := size != len(want) || m.size() <= HeaderSize; changed != wantChanged {
					t.Fatalf("Truncate(%d) from %d: changed %v", size, len(want), changed)
				}
				if size <= len(want) {
					want = want[:size]
				} else {
					want = append(want, make([]byte, size-len(want))...)
				}
				checkFile(t, c, m, f, want)
				if size == 0 && (m.size() != 0 || f.Header() != nil) {
					t.Fatalf("emptied file: %d bytes, header %v", m.size(), f.Header())
				}
			}
		})
	}
}

func TestEncFileHeaderLifecycle(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	m := &memStore{}
	f := NewFile(c, m, nil, FormatVersion)
	if f.Header() != nil {
		t.Fatal("a new File has a header")
	}
	var rebinds [][2]Header
	bound := false
	f.Bound = func() bool { return bound }
	f.Rebind = func(old, new *Header) error {
		rebinds = append(rebinds, [2]Header{*old, *new})
		return nil
	}
	if _, err := f.WriteAt([]byte("one"), 0); err != nil {
		t.Fatal(err)
	}
	first := *f.Header()

	// Emptied without bound metadata: no header is kept.
	if _, err := f.Truncate(0); err != nil || m.size() != 0 || f.Header() != nil {
		t.Fatalf("Truncate(0) = %v: %d bytes, header %v", err, m.size(), f.Header())
	}
	if _, err := f.WriteAt([]byte("two"), 0); err != nil {
		t.Fatal(err)
	}
	second := *f.Header()
	if second.ID == first.ID || len(rebinds) != 0 {
		t.Fatalf("rewritten empty file: same ID %v, rebinds %d", second.ID == first.ID, len(rebinds))
	}

	// Emptied with bound metadata: the header stays, and the next write
	// gets a new ID with the metadata re-bound to it.
	bound = true
	if _, err := f.Truncate(0); err != nil || m.size() != HeaderSize {
		t.Fatalf("Truncate(0) = %v: %d bytes", err, m.size())
	}
	stored := m.bytes()
	f.Rebind = func(old, new *Header) error { return errNoSpace }
	if _, err := f.WriteAt([]byte("three"), 0); !errors.Is(err, errNoSpace) || !bytes.Equal(m.bytes(), stored) {
		t.Fatalf("WriteAt with a failing Rebind = %v; store changed %v", err, !bytes.Equal(m.bytes(), stored))
	}
	f.Rebind = func(old, new *Header) error {
		rebinds = append(rebinds, [2]Header{*old, *new})
		return nil
	}
	// A File that starts without the header, as after a remount.
	g := NewFile(c, m, nil, FormatVersion)
	g.Bound, g.Rebind = f.Bound, f.Rebind
	if _, err := g.Truncate(10); err != nil {
		t.Fatal(err)
	}
	third := *g.Header()
	if len(rebinds) != 1 || rebinds[0] != [2]Header{second, third} || third.ID == second.ID {
		t.Fatalf("rebinds %v, want one from %v to %v", rebinds, second, third)
	}
	checkFile(t, c, m, g, make([]byte, 10))

	// Format 1 binds nothing to the ID: no Rebind.
	m1 := &memStore{}
	h1, _ := NewHeader(FormatV1)
	m1.WriteAt(h1.Marshal(), 0)
	f1 := NewFile(c, m1, nil, FormatV1)
	f1.Rebind = func(old, new *Header) error { return errNoSpace }
	if _, err := f1.WriteAt([]byte("v1"), 0); err != nil || f1.Header().ID == h1.ID {
		t.Fatalf("format 1 header-only file: WriteAt = %v, same ID %v", err, f1.Header().ID == h1.ID)
	}
}

func TestEncFileReserve(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	m := &memStore{}
	f := NewFile(c, m, nil, FormatVersion)
	if _, err := f.WriteAt(make([]byte, 100), 5000); err != nil {
		t.Fatal(err)
	}
	// Block 1 from its start to the new end.
	if want := [][2]int64{{CipherOffset(1), CipherSize(5100) - CipherOffset(1)}}; fmt.Sprint(m.reserved) != fmt.Sprint(want) {
		t.Fatalf("reserved %v, want %v", m.reserved, want)
	}
	stored := m.bytes()
	m.reserveErr = errNoSpace
	if _, err := f.WriteAt(make([]byte, 100), 9000); !errors.Is(err, errNoSpace) || !bytes.Equal(m.bytes(), stored) {
		t.Fatalf("WriteAt with a failing Reserve = %v; store changed %v", err, !bytes.Equal(m.bytes(), stored))
	}
}

// TestEncFileRollback fails writes that extend a file part-way, as a full disk
// does, and checks that the file is left as it was: its padded partial last
// block is put back.
func TestEncFileRollback(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	for _, tc := range []struct {
		name     string
		size     int // before the write
		off, len int
	}{
		{"partial tail, next block", 5000, 5000, 4000},
		{"partial tail, far", 5000, 20000, 10},
		{"partial tail, overlapping", 5000, 4500, 8000},
		{"one block, partial", 100, 100, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &memStore{}
			f := NewFile(c, m, nil, FormatVersion)
			want := bytes.Repeat([]byte{7}, tc.size)
			if _, err := f.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			stored := m.bytes()
			m.space = m.size() + 10 // the write runs out of space part-way
			if _, err := f.WriteAt(make([]byte, tc.len), int64(tc.off)); !errors.Is(err, errNoSpace) {
				t.Fatalf("WriteAt = %v, want errNoSpace", err)
			}
			if !bytes.Equal(m.bytes(), stored) {
				t.Fatalf("store not rolled back: %d bytes, was %d", m.size(), len(stored))
			}
			m.space = 0
			checkFile(t, c, m, f, want)

			// When the rollback fails too, the caller learns both.
			m.space, m.failTruncate = m.size()+10, true
			_, err := f.WriteAt(make([]byte, tc.len), int64(tc.off))
			var ue *UndoError
			if !errors.As(err, &ue) || !errors.Is(err, errNoSpace) {
				t.Fatalf("WriteAt with a failing undo = %v, want an UndoError of errNoSpace", err)
			}
		})
	}
}

func TestEncFileTamper(t *testing.T) {
	t.Parallel()
	c := testKeys(t).Content()
	m := &memStore{}
	f := NewFile(c, m, nil, FormatVersion)
	want := bytes.Repeat([]byte{9}, 3*BlockSize)
	if _, err := f.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	m.b[CipherOffset(1)+NonceSize+5] ^= 1
	stored := m.bytes()
	p := bytes.Repeat([]byte{0xff}, 2*BlockSize)
	if n, err := f.ReadAt(p, 10); !errors.Is(err, ErrAuth) || n != 0 || !isZero(p) {
		t.Fatalf("ReadAt over a tampered block = %d, %v; zeroed %v", n, err, isZero(p))
	}
	if n, err := f.ReadAt(p[:BlockSize], 0); err != nil || n != BlockSize {
		t.Fatalf("ReadAt of an intact block = %d, %v", n, err)
	}
	for name, op := range map[string]func() error{
		"WriteAt":  func() error { _, err := f.WriteAt([]byte("x"), BlockSize+1); return err },
		"Truncate": func() error { _, err := f.Truncate(BlockSize + 100); return err },
	} {
		if err := op(); !errors.Is(err, ErrAuth) || !bytes.Equal(m.bytes(), stored) {
			t.Fatalf("%s into a tampered block = %v; store changed %v", name, err, !bytes.Equal(m.bytes(), stored))
		}
	}

	// A bad header, and an impossible size, fail before any block.
	m.b[0] ^= 1
	if _, err := NewFile(c, m, nil, FormatVersion).ReadAt(p, 0); !errors.Is(err, ErrHeader) {
		t.Fatalf("ReadAt with a bad header = %v, want ErrHeader", err)
	}
	if _, err := NewFile(c, m, nil, FormatVersion).WriteAt(p, 0); !errors.Is(err, ErrHeader) {
		t.Fatalf("WriteAt with a bad header = %v, want ErrHeader", err)
	}
	m.b = m.b[:HeaderSize+BlockOverhead]
	if _, err := NewFile(c, m, nil, FormatVersion).ReadAt(p, 0); !errors.Is(err, ErrSize) {
		t.Fatalf("ReadAt of %d bytes = %v, want ErrSize", m.size(), err)
	}
}
