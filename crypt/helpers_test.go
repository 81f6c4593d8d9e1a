package crypt

import (
	"io"
	"os"
	"testing"
)

var _ Backing = (*os.File)(nil)
var _ Backing = (*memBacking)(nil)

// memBacking is an in-memory Backing; unwritten ranges are zeros (holes).
type memBacking struct {
	b      []byte
	writes int // number of WriteAt calls
}

func (m *memBacking) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memBacking) WriteAt(p []byte, off int64) (int, error) {
	m.writes++
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memBacking) Truncate(size int64) error {
	if size <= int64(len(m.b)) {
		m.b = m.b[:size]
	} else {
		m.b = append(m.b, make([]byte, size-int64(len(m.b)))...)
	}
	return nil
}

func (m *memBacking) size() int64 { return int64(len(m.b)) }

// testKeys returns keys derived from a fixed master key.
func testKeys(t testing.TB) *Keys {
	t.Helper()
	var master [32]byte
	for i := range master {
		master[i] = byte(i * 7)
	}
	k, err := NewKeys(&master)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeFile encrypts data into a fresh memBacking.
func writeFile(t testing.TB, c *Content, data []byte) (*memBacking, Header) {
	t.Helper()
	h, err := NewHeader(FormatVersion)
	if err != nil {
		t.Fatal(err)
	}
	m := &memBacking{}
	n, err := c.WriteAt(m, &h, data, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != m.size() || n != CipherSize(int64(len(data))) {
		t.Fatalf("WriteAt size %d, backing %d, want %d", n, m.size(), CipherSize(int64(len(data))))
	}
	return m, h
}

func readAll(c *Content, m *memBacking, h *Header) ([]byte, error) {
	plain, err := PlainSize(m.size())
	if err != nil {
		return nil, err
	}
	p := make([]byte, plain+10)
	n, err := c.ReadAt(m, h, p, 0, m.size())
	if err != io.EOF && err != nil {
		return nil, err
	}
	return p[:n], nil
}
