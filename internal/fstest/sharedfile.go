// Package fstest holds workloads shared by the in-process filesystem tests
// (package fs, run under the race detector) and the integration tests
// (package tests, against the cryptpt binary), and RequireFUSE. It only
// does file I/O on paths it is given, and imports nothing of cryptpt, so
// that package fs's own tests can use it.
package fstest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
)

// Block is the encrypted block size; Sector the unit of unaligned writes.
const (
	Block    = 4096
	Sector   = 512
	SliceLen = 5 * Sector // bytes owned by each unaligned writer: never a multiple of Block
)

// SharedFile is one file written and read at once by many workers. Below
// Base() it holds whole blocks of one repeated nonzero byte, written by
// aligned writers at overlapping offsets; from Base() on, each unaligned
// writer owns SliceLen bytes, written in sectors that straddle blocks.
// A block is rewritten under the daemon's lock, so a reader that sees a
// block or sector mixing two writes has found a torn block, and an end
// state that is not each owner's last sectors is a lost read-modify-write.
type SharedFile struct {
	Path          string
	AlignedBlocks int
	Unaligned     int
}

// Base is where the unaligned writers' ranges start.
func (s SharedFile) Base() int { return s.AlignedBlocks * Block }

// Size is the file's size.
func (s SharedFile) Size() int { return s.Base() + s.Unaligned*SliceLen }

// Create writes the initial content.
func (s SharedFile) Create() error {
	init := bytes.Repeat([]byte{1}, s.Size())
	clear(init[s.Base():])
	return os.WriteFile(s.Path, init, 0o644)
}

// Run lets writers aligned writers, s.Unaligned unaligned writers and readers
// O_DIRECT readers do ops operations each, concurrently. Aligned writers use
// byte values 2..241, so callers may add writers of their own above that.
// It returns what each unaligned writer wrote last and the errors seen.
func (s SharedFile) Run(writers, readers, ops int) (final [][]byte, err error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	report := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, err)
		}
	}
	final = make([][]byte, s.Unaligned)
	for w := range writers {
		wg.Go(func() {
			if err := s.alignedWriter(w, ops); err != nil {
				report(fmt.Errorf("aligned writer %d: %w", w, err))
			}
		})
	}
	for u := range s.Unaligned {
		wg.Go(func() {
			cur, err := s.unalignedWriter(u, ops)
			if err != nil {
				report(fmt.Errorf("unaligned writer %d: %w", u, err))
			}
			final[u] = cur
		})
	}
	for r := range readers {
		wg.Go(func() {
			if err := s.directReader(r, ops); err != nil {
				report(fmt.Errorf("reader %d: %w", r, err))
			}
		})
	}
	wg.Wait()
	return final, errors.Join(errs...)
}

func (s SharedFile) alignedWriter(w, ops int) error {
	rng := rand.New(rand.NewPCG(uint64(w), 1))
	f, err := os.OpenFile(s.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for range ops {
		b := rng.IntN(s.AlignedBlocks)
		n := min(1+rng.IntN(4), s.AlignedBlocks-b) // 1-4 whole blocks in one write
		buf := make([]byte, 0, n*Block)
		for range n {
			buf = append(buf, bytes.Repeat([]byte{byte(2 + rng.IntN(240))}, Block)...)
		}
		if _, err := f.WriteAt(buf, int64(b*Block)); err != nil {
			return err
		}
	}
	return nil
}

func (s SharedFile) unalignedWriter(u, ops int) ([]byte, error) {
	rng := rand.New(rand.NewPCG(uint64(u), 2))
	f, err := os.OpenFile(s.Path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cur := make([]byte, SliceLen)
	for range ops {
		s0 := rng.IntN(SliceLen / Sector)
		s1 := s0 + 1 + rng.IntN(SliceLen/Sector-s0)
		for sec := s0; sec < s1; sec++ {
			copy(cur[sec*Sector:(sec+1)*Sector], bytes.Repeat([]byte{byte(1 + rng.IntN(255))}, Sector))
		}
		off := int64(s.Base() + u*SliceLen + s0*Sector)
		if _, err := f.WriteAt(cur[s0*Sector:s1*Sector], off); err != nil {
			return cur, err
		}
	}
	return cur, nil
}

// directReader reads with O_DIRECT, so every read is one request to the
// daemon and not served from the page cache.
func (s SharedFile) directReader(r, ops int) error {
	rng := rand.New(rand.NewPCG(uint64(r), 3))
	f, err := os.OpenFile(s.Path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	size := s.Size()
	buf := make([]byte, size)
	for range ops {
		off := rng.IntN(size)
		n := 1 + rng.IntN(min(size-off, 6*Block))
		if rng.IntN(2) == 0 { // aligned reads too
			off = Block * rng.IntN(size/Block)
			n = min(size-off, Block*(1+rng.IntN(4)))
		}
		got, err := f.ReadAt(buf[:n], int64(off))
		if err != nil {
			return fmt.Errorf("at %d+%d: %w", off, n, err)
		}
		if err := s.CheckUniform(buf[:got], off); err != nil {
			return err
		}
	}
	return nil
}

// CheckUniform checks buf, read at file offset off: each whole block below
// Base() is one nonzero byte repeated, each whole sector from Base() on is
// one byte repeated.
func (s SharedFile) CheckUniform(buf []byte, off int) error {
	split := s.Base()
	for i := 0; i < len(buf); {
		pos, unit := off+i, Block
		if pos >= split {
			pos, unit = pos-split, Sector
		}
		if pos%unit != 0 || len(buf)-i < unit || (off+i < split && off+i+unit > split) {
			i += unit - pos%unit
			continue
		}
		u := buf[i : i+unit]
		if (unit == Block && u[0] == 0) || !bytes.Equal(u, bytes.Repeat(u[:1], unit)) {
			return fmt.Errorf("torn %d-byte unit at file offset %d: starts with %d", unit, off+i, u[0])
		}
		i += unit
	}
	return nil
}

// CheckFinal checks the whole file after a run: uniform units, and each
// unaligned writer's range holding what it wrote last.
func (s SharedFile) CheckFinal(final [][]byte) error {
	got, err := os.ReadFile(s.Path)
	if err != nil {
		return err
	}
	if len(got) != s.Size() {
		return fmt.Errorf("size %d, want %d", len(got), s.Size())
	}
	if err := s.CheckUniform(got, 0); err != nil {
		return err
	}
	for u, want := range final {
		at := s.Base() + u*SliceLen
		if !bytes.Equal(got[at:at+SliceLen], want) {
			return fmt.Errorf("the range of unaligned writer %d is not what it wrote last (lost update)", u)
		}
	}
	return nil
}
