package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"testing"
)

const benchReq = 128 << 10 // 128 KiB, a typical FUSE request

func benchContent(b *testing.B, parallel bool) *Content {
	b.Helper()
	c, err := newContent(&[32]byte{5})
	if err != nil {
		b.Fatal(err)
	}
	c.parallel = parallel
	return c
}

// BenchmarkEncryptBlocks measures WriteAt of whole aligned requests (no
// read-modify-write) on an in-memory backing, and single-block sealing.
func BenchmarkEncryptBlocks(b *testing.B) {
	for _, size := range []int{benchReq, 1 << 20} {
		for _, par := range []bool{false, true} {
			b.Run(fmt.Sprintf("WriteAt/%dKiB/parallel=%v", size>>10, par), func(b *testing.B) {
				c := benchContent(b, par)
				h, _ := NewHeader(FormatVersion)
				m := &memBacking{}
				p := make([]byte, size)
				cs, err := c.WriteAt(m, &h, p, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				for b.Loop() {
					if _, err := c.WriteAt(m, &h, p, 0, cs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("PerBlock", func(b *testing.B) {
		c := benchContent(b, false)
		id := Header{Version: FormatVersion, ID: [16]byte{1}}
		p := make([]byte, BlockSize)
		dst := make([]byte, 0, CipherBlockSize)
		b.SetBytes(BlockSize)
		for b.Loop() {
			dst = c.EncryptBlock(dst[:0], p, 1, &id)
		}
	})
}

// BenchmarkDecryptBlocks measures ReadAt of whole aligned requests on an
// in-memory backing, and single-block opening.
func BenchmarkDecryptBlocks(b *testing.B) {
	for _, size := range []int{benchReq, 1 << 20} {
		for _, par := range []bool{false, true} {
			b.Run(fmt.Sprintf("ReadAt/%dKiB/parallel=%v", size>>10, par), func(b *testing.B) {
				c := benchContent(b, par)
				h, _ := NewHeader(FormatVersion)
				m := &memBacking{}
				p := make([]byte, size)
				cs, err := c.WriteAt(m, &h, p, 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(size))
				b.ResetTimer()
				for b.Loop() {
					if _, err := c.ReadAt(m, &h, p, 0, cs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("PerBlock", func(b *testing.B) {
		c := benchContent(b, false)
		id := Header{Version: FormatVersion, ID: [16]byte{1}}
		sealed := c.EncryptBlock(nil, make([]byte, BlockSize), 1, &id)
		sealed[20] = 1 // not a hole
		sealed = c.EncryptBlock(nil, sealed[:BlockSize], 1, &id)
		dst := make([]byte, 0, BlockSize)
		b.SetBytes(BlockSize)
		for b.Loop() {
			var err error
			if dst, err = c.DecryptBlock(dst[:0], sealed, 1, &id, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStdlibGCM is the baseline: plain AES-256-GCM Seal/Open of the same
// 4 KiB buffers with a fixed nonce and 24 bytes of associated data.
func BenchmarkStdlibGCM(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 32))
	a, _ := cipher.NewGCM(blk)
	nonce := make([]byte, NonceSize)
	ad := make([]byte, blockADSize)
	p := make([]byte, BlockSize)
	dst := make([]byte, 0, BlockSize+TagSize)
	b.Run("Seal", func(b *testing.B) {
		b.SetBytes(BlockSize)
		for b.Loop() {
			dst = a.Seal(dst[:0], nonce, p, ad)
		}
	})
	sealed := a.Seal(nil, nonce, p, ad)
	b.Run("Open", func(b *testing.B) {
		b.SetBytes(BlockSize)
		for b.Loop() {
			var err error
			if dst, err = a.Open(dst[:0], nonce, sealed, ad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFormats compares format 1 (one content key) with format 2 (a key
// per file, looked up per request) for writes and reads of 4 KiB, the
// FUSE request of small writes, and 128 KiB.
func BenchmarkFormats(b *testing.B) {
	for _, version := range []uint16{FormatV1, FormatVersion} {
		for _, size := range []int{BlockSize, benchReq} {
			c := benchContent(b, false)
			h, _ := NewHeader(version)
			m := &memBacking{}
			p := make([]byte, size)
			cs, err := c.WriteAt(m, &h, p, 0, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("format%d/WriteAt/%dKiB", version, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					if _, err := c.WriteAt(m, &h, p, 0, cs); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("format%d/ReadAt/%dKiB", version, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					if _, err := c.ReadAt(m, &h, p, 0, cs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSmallFiles creates a file of one short block under a new file
// ID each time (a new header, one WriteAt, one ReadAt): what many small
// files cost. In format 2 each pays for its own file key on its first
// block (HKDF-SHA256 and an AES-256 key schedule; the ReadAt then finds
// it cached); format 1 uses the one content key.
func BenchmarkSmallFiles(b *testing.B) {
	for _, version := range []uint16{FormatV1, FormatVersion} {
		for _, size := range []int{100, BlockSize} {
			b.Run(fmt.Sprintf("format%d/%dB", version, size), func(b *testing.B) {
				c := benchContent(b, false)
				p := make([]byte, size)
				p[0] = 1
				b.SetBytes(int64(size))
				for b.Loop() {
					h, err := NewHeader(version)
					if err != nil {
						b.Fatal(err)
					}
					m := &memBacking{}
					cs, err := c.WriteAt(m, &h, p, 0, 0)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.ReadAt(m, &h, p, 0, cs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkFileKey is the format-2 cost alone: the file key of a file ID
// not in the cache (derived), and of one in it (looked up).
func BenchmarkFileKey(b *testing.B) {
	b.Run("derive", func(b *testing.B) {
		c := benchContent(b, false)
		h := Header{Version: FormatVersion}
		var n uint64
		for b.Loop() {
			n++
			binary.BigEndian.PutUint64(h.ID[:], n)
			c.cipherFor(&h)
		}
	})
	b.Run("cached", func(b *testing.B) {
		c := benchContent(b, false)
		h := Header{Version: FormatVersion, ID: [FileIDLen]byte{1}}
		c.cipherFor(&h)
		for b.Loop() {
			c.cipherFor(&h)
		}
	})
}

// BenchmarkFile measures what File adds to Content per request: a File
// per request, as fs makes one, the size from the store, the header kept
// between requests. Aligned 4 KiB and 128 KiB overwrites and reads cycle
// through a file of 64 requests.
func BenchmarkFile(b *testing.B) {
	for _, size := range []int{BlockSize, benchReq} {
		c := benchContent(b, false)
		m := &memStore{}
		f := NewFile(c, m, nil, FormatVersion)
		if _, err := f.WriteAt(make([]byte, 64*size), 0); err != nil {
			b.Fatal(err)
		}
		h := f.Header()
		p := make([]byte, size)
		for _, op := range []string{"WriteAt", "ReadAt"} {
			b.Run(fmt.Sprintf("Content/%s/%dKiB", op, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				i := 0
				for b.Loop() {
					off := int64(i % 64 * size)
					var err error
					if op == "WriteAt" {
						_, err = c.WriteAt(m, h, p, off, m.size())
					} else {
						_, err = c.ReadAt(m, h, p, off, m.size())
					}
					if err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(fmt.Sprintf("File/%s/%dKiB", op, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				i := 0
				for b.Loop() {
					off := int64(i % 64 * size)
					f := NewFile(c, m, h, FormatVersion)
					var err error
					if op == "WriteAt" {
						_, err = f.WriteAt(p, off)
					} else {
						_, err = f.ReadAt(p, off)
					}
					if err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}
