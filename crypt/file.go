package crypt

import (
	"fmt"
	"io"
	"runtime"
	"sync"
)

// Backing is the ciphertext store of one encrypted file. *os.File satisfies it.
type Backing interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}

const (
	// parallelMinBlocks is the smallest request (in blocks) that is sealed or
	// opened on several goroutines when parallelism is enabled.
	parallelMinBlocks = 64
	// defaultParallel is the measured choice for Content.parallel. On the
	// 2-core reference machine (shared, load 5-7) BenchmarkEncryptBlocks and
	// BenchmarkDecryptBlocks at 1 MiB showed no consistent gain from
	// splitting a request across goroutines (between 0.95x and 2x by run), and a FUSE
	// daemon already serves requests concurrently, so it is off. The
	// parallel path stays tested (TestContentModel, TestParallelMatchesSerial);
	// re-measure on a quiet machine before enabling.
	defaultParallel = false
	// maxPooledBuf bounds the ciphertext buffers kept in the pool
	// (1 MiB requests plus header and padding block fit).
	maxPooledBuf = 2 << 20
)

// scratch is the per-request working memory, pooled in Content.
type scratch struct {
	buf              []byte
	first, last, pad [BlockSize]byte
	sealed           [CipherBlockSize]byte
}

func (c *Content) getScratch(n int) *scratch {
	s, _ := c.pool.Get().(*scratch)
	if s == nil {
		s = new(scratch)
	}
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	s.buf = s.buf[:n]
	return s
}

func (c *Content) putScratch(s *scratch) {
	if cap(s.buf) > maxPooledBuf {
		s.buf = nil
	}
	c.pool.Put(s)
}

// forBlocks calls fn(0..n-1), on up to GOMAXPROCS goroutines for large n when
// parallelism is enabled. It returns one of the errors returned by fn.
func (c *Content) forBlocks(n int, fn func(i int) error) error {
	w := runtime.GOMAXPROCS(0)
	if !c.parallel || n < parallelMinBlocks || w < 2 {
		for i := range n {
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	chunk := (n + w - 1) / w
	errs := make([]error, w)
	var wg sync.WaitGroup
	for g := 1; g < w; g++ {
		lo, hi := g*chunk, min((g+1)*chunk, n)
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				if err := fn(i); err != nil {
					errs[g] = err
					return
				}
			}
		}()
	}
	for i := range min(chunk, n) {
		if err := fn(i); err != nil {
			errs[0] = err
			break
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// readBlock reads and opens stored block bn into `into` and returns its
// plaintext length; 0 if the block lies beyond cipherSize.
func (c *Content) readBlock(r io.ReaderAt, h *Header, bn uint64, cipherSize int64, s *scratch, into *[BlockSize]byte) (int, error) {
	cOff := CipherOffset(bn)
	if cOff >= cipherSize {
		return 0, nil
	}
	cLen := int(min(CipherBlockSize, cipherSize-cOff))
	if cLen <= BlockOverhead {
		return 0, fmt.Errorf("%w: block %d has %d bytes", ErrSize, bn, cLen)
	}
	if err := readFull(r, s.sealed[:cLen], cOff); err != nil {
		return 0, fmt.Errorf("crypt: reading block %d: %w", bn, err)
	}
	last := cOff+int64(cLen) >= cipherSize
	if err := c.openInto(c.cipherFor(h), into[:cLen-BlockOverhead], s.sealed[:cLen], bn, &h.ID, holeAllowed(h, last)); err != nil {
		return 0, err
	}
	return cLen - BlockOverhead, nil
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ReadAt reads up to len(p) plaintext bytes at plaintext offset off from the
// file stored in r, whose current size is cipherSize. It returns n < len(p)
// together with io.EOF only at plaintext EOF. Any authentication failure
// returns (0, err) with err wrapping ErrAuth, and p is zeroed: bytes of a block
// that failed are never returned. r is only read.
func (c *Content) ReadAt(r io.ReaderAt, h *Header, p []byte, off, cipherSize int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: offset %d", ErrOffset, off)
	}
	plainSize, err := PlainSize(cipherSize)
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= plainSize {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), plainSize)
	first, last := BlockNo(off), BlockNo(end-1)
	cStart := CipherOffset(first)
	cEnd := min(CipherOffset(last+1), cipherSize)
	s := c.getScratch(int(cEnd - cStart))
	defer c.putScratch(s)
	if err := readFull(r, s.buf, cStart); err != nil {
		return 0, fmt.Errorf("crypt: reading blocks %d-%d: %w", first, last, err)
	}
	out := p[:end-off]
	nBlocks := int(last - first + 1)
	a := c.cipherFor(h)
	fileLast := BlockNo(plainSize - 1)
	err = c.forBlocks(nBlocks, func(i int) error {
		bn := first + uint64(i)
		sealed := s.buf[i*CipherBlockSize : min((i+1)*CipherBlockSize, len(s.buf))]
		bStart := int64(bn) * BlockSize
		bEnd := bStart + int64(len(sealed)-BlockOverhead)
		lo, hi := max(bStart, off), min(bEnd, end)
		hole := holeAllowed(h, bn == fileLast)
		if lo == bStart && hi == bEnd {
			return c.openInto(a, out[lo-off:hi-off], sealed, bn, &h.ID, hole)
		}
		tmp := &s.first
		if i != 0 {
			tmp = &s.last
		}
		if err := c.openInto(a, tmp[:], sealed, bn, &h.ID, hole); err != nil {
			return err
		}
		copy(out[lo-off:hi-off], tmp[lo-bStart:hi-bStart])
		return nil
	})
	if err != nil {
		clear(p)
		return 0, err
	}
	if int(end-off) < len(p) {
		return int(end - off), io.EOF
	}
	return len(p), nil
}

// WriteAt writes p at plaintext offset off into the file stored in b, whose
// current size is cipherSize, and returns the new ciphertext size. If
// cipherSize is 0 the header h is written first. Partial blocks are
// read, merged and re-sealed with a fresh nonce; writing past EOF first pads
// the old partial last block with zeros and leaves whole blocks in between as
// holes. The sealed blocks of the request go to b in one WriteAt (plus one for
// the header or for a padded old last block that is not adjacent).
// On error the backing may have been partly written and the returned size is
// 0; the caller must re-read the backing size.
func (c *Content) WriteAt(b Backing, h *Header, p []byte, off, cipherSize int64) (int64, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: offset %d", ErrOffset, off)
	}
	oldPlain, err := PlainSize(cipherSize)
	if err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return cipherSize, nil
	}
	end := off + int64(len(p))
	newPlain := max(oldPlain, end)
	first, last := BlockNo(off), BlockNo(end-1)

	// The old partial last block must be padded when the write starts in a
	// later block.
	padBlk := BlockNo(oldPlain)
	padNeeded := oldPlain%BlockSize != 0 && padBlk < first
	start := first // first block of the contiguous main run
	if padNeeded && padBlk+1 == first {
		start = padBlk
	}
	separatePad := padNeeded && padBlk+1 < first
	writeHeader := cipherSize == 0
	headerInBuf := writeHeader && start == 0

	mainLen := int(min(CipherOffset(last+1), CipherSize(newPlain)) - CipherOffset(start))
	base := 0
	if headerInBuf {
		base = HeaderSize
	}
	bufLen := base + mainLen
	if separatePad {
		bufLen += CipherBlockSize
	}
	s := c.getScratch(bufLen)
	defer c.putScratch(s)

	blockLen := func(bn uint64) int {
		return int(min(int64(bn+1)*BlockSize, newPlain) - int64(bn)*BlockSize)
	}
	covered := func(bn uint64) bool {
		bs := int64(bn) * BlockSize
		return off <= bs && end >= bs+int64(blockLen(bn))
	}
	// Prepare the plaintext of partially written blocks.
	if !covered(first) {
		n, err := c.readBlock(b, h, first, cipherSize, s, &s.first)
		if err != nil {
			return 0, err
		}
		bl := blockLen(first)
		clear(s.first[n:bl])
		copy(s.first[off-int64(first)*BlockSize:bl], p)
	}
	if last != first && !covered(last) {
		n, err := c.readBlock(b, h, last, cipherSize, s, &s.last)
		if err != nil {
			return 0, err
		}
		bl := blockLen(last)
		clear(s.last[n:bl])
		copy(s.last[:end-int64(last)*BlockSize], p[int64(last)*BlockSize-off:])
	}
	if padNeeded {
		n, err := c.readBlock(b, h, padBlk, cipherSize, s, &s.pad)
		if err != nil {
			return 0, err
		}
		clear(s.pad[n:])
	}
	plainOf := func(bn uint64) []byte {
		bl := blockLen(bn)
		switch {
		case padNeeded && bn == padBlk:
			return s.pad[:bl]
		case covered(bn):
			po := int64(bn)*BlockSize - off
			return p[po : po+int64(bl)]
		case bn == first:
			return s.first[:bl]
		default:
			return s.last[:bl]
		}
	}

	if headerInBuf {
		h.appendTo(s.buf[:0])
	}
	a := c.cipherFor(h)
	_ = c.forBlocks(int(last-start+1), func(i int) error {
		bn := start + uint64(i)
		c.sealInto(a, s.buf[base+i*CipherBlockSize:], plainOf(bn), bn, &h.ID)
		return nil
	})

	if writeHeader && !headerInBuf {
		if _, err := b.WriteAt(h.Marshal(), 0); err != nil {
			return 0, fmt.Errorf("crypt: writing header: %w", err)
		}
	}
	if separatePad {
		padOut := s.buf[base+mainLen:]
		c.sealInto(a, padOut, s.pad[:], padBlk, &h.ID)
		if _, err := b.WriteAt(padOut[:CipherBlockSize], CipherOffset(padBlk)); err != nil {
			return 0, fmt.Errorf("crypt: writing block %d: %w", padBlk, err)
		}
	}
	if _, err := b.WriteAt(s.buf[:base+mainLen], CipherOffset(start)-int64(base)); err != nil {
		return 0, fmt.Errorf("crypt: writing blocks %d-%d: %w", start, last, err)
	}
	return CipherSize(newPlain), nil
}

// Truncate changes the plaintext size of the file stored in b (current size
// cipherSize) to newPlain and returns the new ciphertext size. Shrinking
// re-seals the new partial last block; growing pads the old partial last
// block with zeros and extends b sparsely (holes read as zeros). In format 2
// the new last block is always stored sealed, never as a hole. newPlain == 0
// truncates b to 0 bytes, dropping the header: the caller must use a fresh
// header on the next write. On error the returned size is 0 and the caller
// must re-read the backing size.
func (c *Content) Truncate(b Backing, h *Header, newPlain, cipherSize int64) (int64, error) {
	if newPlain < 0 {
		return 0, fmt.Errorf("%w: size %d", ErrOffset, newPlain)
	}
	oldPlain, err := PlainSize(cipherSize)
	if err != nil {
		return 0, err
	}
	if newPlain == 0 {
		if cipherSize != 0 {
			if err := b.Truncate(0); err != nil {
				return 0, fmt.Errorf("crypt: truncating: %w", err)
			}
		}
		return 0, nil
	}
	if newPlain == oldPlain {
		return cipherSize, nil
	}
	newCipher := CipherSize(newPlain)
	s := c.getScratch(CipherBlockSize)
	defer c.putScratch(s)
	a := c.cipherFor(h)

	if newPlain < oldPlain {
		rem := int(newPlain % BlockSize)
		if rem == 0 {
			if err := b.Truncate(newCipher); err != nil {
				return 0, fmt.Errorf("crypt: truncating: %w", err)
			}
			if err := c.sealHoleAtEnd(b, h, newPlain, s); err != nil {
				return 0, err
			}
			return newCipher, nil
		}
		k := BlockNo(newPlain)
		if _, err := c.readBlock(b, h, k, cipherSize, s, &s.first); err != nil {
			return 0, err
		}
		sealed := s.buf[:rem+BlockOverhead]
		c.sealInto(a, sealed, s.first[:rem], k, &h.ID)
		// Truncate first: a crash in between leaves a shorter, consistent file.
		if err := b.Truncate(CipherOffset(k)); err != nil {
			return 0, fmt.Errorf("crypt: truncating: %w", err)
		}
		if _, err := b.WriteAt(sealed, CipherOffset(k)); err != nil {
			return 0, fmt.Errorf("crypt: writing block %d: %w", k, err)
		}
		return newCipher, nil
	}

	// Growing.
	if cipherSize == 0 {
		if _, err := b.WriteAt(h.Marshal(), 0); err != nil {
			return 0, fmt.Errorf("crypt: writing header: %w", err)
		}
	} else if rem := int(oldPlain % BlockSize); rem != 0 {
		l := BlockNo(oldPlain)
		bl := int(min(int64(l+1)*BlockSize, newPlain) - int64(l)*BlockSize)
		if _, err := c.readBlock(b, h, l, cipherSize, s, &s.first); err != nil {
			return 0, err
		}
		clear(s.first[rem:bl])
		sealed := s.buf[:bl+BlockOverhead]
		c.sealInto(a, sealed, s.first[:bl], l, &h.ID)
		if _, err := b.WriteAt(sealed, CipherOffset(l)); err != nil {
			return 0, fmt.Errorf("crypt: writing block %d: %w", l, err)
		}
	}
	beyondOld := oldPlain == 0 || BlockNo(newPlain-1) != BlockNo(oldPlain-1)
	if h.Version != FormatV1 && beyondOld {
		// The new last block lies beyond the old data: store it sealed.
		k := BlockNo(newPlain - 1)
		sealed := s.buf[:int(newPlain-int64(k)*BlockSize)+BlockOverhead]
		clear(s.first[:])
		c.sealInto(a, sealed, s.first[:len(sealed)-BlockOverhead], k, &h.ID)
		if _, err := b.WriteAt(sealed, CipherOffset(k)); err != nil {
			return 0, fmt.Errorf("crypt: writing block %d: %w", k, err)
		}
	}
	if err := b.Truncate(newCipher); err != nil {
		return 0, fmt.Errorf("crypt: truncating: %w", err)
	}
	return newCipher, nil
}

// sealHoleAtEnd stores the last block of a format-2 file of newPlain bytes
// sealed if it is a hole (all zeros), so that no file ends in a hole. The
// caller has just truncated b to CipherSize(newPlain) at a block boundary.
func (c *Content) sealHoleAtEnd(b Backing, h *Header, newPlain int64, s *scratch) error {
	if h.Version == FormatV1 || newPlain == 0 {
		return nil
	}
	k := BlockNo(newPlain - 1)
	stored := s.sealed[:CipherBlockSize]
	if err := readFull(b, stored, CipherOffset(k)); err != nil {
		return fmt.Errorf("crypt: reading block %d: %w", k, err)
	}
	if !isZero(stored) {
		return nil
	}
	clear(s.first[:])
	sealed := s.buf[:CipherBlockSize]
	c.sealInto(c.cipherFor(h), sealed, s.first[:], k, &h.ID)
	if _, err := b.WriteAt(sealed, CipherOffset(k)); err != nil {
		return fmt.Errorf("crypt: writing block %d: %w", k, err)
	}
	return nil
}
