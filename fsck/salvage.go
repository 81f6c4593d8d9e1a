package fsck

import (
	"fmt"
	"io"
	"os"
	"strings"

	"cryptpt/crypt"
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// salvageProbeBlocks is how many first blocks are tried, when a header does
// not parse, with the file ID where the header keeps it, before giving up
// on the file.
const salvageProbeBlocks = 16

// maxListedRanges bounds the lost ranges named in one line.
const maxListedRanges = 4

// String words r as "bytes 12288-16383 (4096 bytes)", the end inclusive.
func (r Range) String() string {
	return fmt.Sprintf("bytes %d-%d (%d bytes)", r.Off, r.Off+r.Len-1, r.Len)
}

// Ranges words lost ranges on one line, naming at most a few of them.
func Ranges(rs []Range) string {
	var parts []string
	for _, r := range rs[:min(len(rs), maxListedRanges)] {
		parts = append(parts, r.String())
	}
	s := strings.Join(parts, ", ")
	if len(rs) > maxListedRanges {
		s += fmt.Sprintf(" and %d more ranges", len(rs)-maxListedRanges)
	}
	return s
}

func (s *Salvage) addLost(off, n int64) {
	if k := len(s.Lost); k > 0 && s.Lost[k-1].Off+s.Lost[k-1].Len == off {
		s.Lost[k-1].Len += n
		return
	}
	s.Lost = append(s.Lost, Range{off, n})
}

// salvage rewrites the damaged encrypted file e (stat st) into
// LostFoundName as base: a new encrypted file (new file ID) with the
// plaintext of every block that authenticates and zeros for every block that
// does not, so offsets stay as they were. The original is renamed beside it
// as base + DamagedSuffix with its vault bytes unchanged, and a report of
// the lost ranges is written as base + DamageReportSuffix. The copy comes
// first, so a crash leaves the original in place.
func (c *checker) salvage(e *entry, st *unix.Stat_t, base string) error {
	fd, err := layout.OpenRead(e.dirfd, e.name)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), e.vpath)
	defer f.Close()
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return err
	}
	var hb [crypt.HeaderSize]byte
	n, _ := f.ReadAt(hb[:], 0)
	h, headerOK := damagedFileHeader(hb[:n])
	csize := readablePrefix(fst.Size)
	psize := plainSize(csize)
	s := Salvage{Path: e.ppath, VaultPath: e.vpath, Size: psize, Cut: fst.Size - csize, NoHeader: !headerOK}
	if fst.Size < crypt.HeaderSize {
		s.Cut = fst.Size
	}

	name, err := c.freeName(base, "", DamagedSuffix, DamageReportSuffix)
	if err != nil {
		return err
	}
	readable := headerOK
	for _, v := range []uint16{crypt.FormatVersion, crypt.FormatV1} {
		if readable || psize == 0 {
			break
		}
		h.Version = v // the version field may be what is damaged
		readable = c.anyBlockReads(f, &h, psize, csize)
	}
	if psize > 0 && readable {
		err := c.createFile(name, fst.Mode, func(w *plainWriter) error {
			return c.copySalvage(f, &h, psize, csize, w, &s)
		})
		if err != nil {
			return fmt.Errorf("writing the salvaged copy: %w", err)
		}
		s.Copy = mountPath(name)
	} else if psize > 0 {
		s.Lost = []Range{{0, psize}}
	}
	if err := c.renameInto(e.dirfd, e.name, name+DamagedSuffix); err != nil {
		return fmt.Errorf("keeping the original: %w", err)
	}
	s.Original = mountPath(name + DamagedSuffix)
	text := damageHeader(e, c.rep.Problems) + salvageText(&s, name)
	if err := c.createFile(name+DamageReportSuffix, 0o600, func(w *plainWriter) error { return w.write([]byte(text)) }); err != nil {
		return fmt.Errorf("writing the damage report: %w", err)
	}
	s.Report = mountPath(name + DamageReportSuffix)
	c.rep.Salvages = append(c.rep.Salvages, s)
	if c.o.Salvaged != nil {
		c.o.Salvaged(s)
	}
	return nil
}

// copySalvage writes the plaintext of the file r (header h, csize stored
// bytes, psize plaintext bytes) to w, block by block where a chunk fails,
// zeroing and recording each block that fails authentication.
func (c *checker) copySalvage(r io.ReaderAt, h *crypt.Header, psize, csize int64, w *plainWriter, s *Salvage) error {
	buf := make([]byte, readChunkBlocks*crypt.BlockSize)
	for off := int64(0); off < psize; off += int64(len(buf)) {
		p := buf[:min(int64(len(buf)), psize-off)]
		_, bad, err := readPlain(c.k, r, h, p, off, csize)
		if err != nil {
			return err
		}
		for b := 0; bad && b < len(p); b += crypt.BlockSize {
			q := p[b:min(b+crypt.BlockSize, len(p))]
			_, badBlock, err := readPlain(c.k, r, h, q, off+int64(b), csize)
			if err != nil {
				return err
			}
			if badBlock {
				clear(q)
				s.addLost(off+int64(b), int64(len(q)))
			}
		}
		if err := w.write(p); err != nil {
			return err
		}
	}
	return nil
}

// anyBlockReads reports whether one of the first blocks of r reads with h.
func (c *checker) anyBlockReads(r io.ReaderAt, h *crypt.Header, psize, csize int64) bool {
	var buf [crypt.BlockSize]byte
	for off := int64(0); off < min(psize, salvageProbeBlocks*crypt.BlockSize); off += crypt.BlockSize {
		q := buf[:min(crypt.BlockSize, psize-off)]
		if _, bad, err := readPlain(c.k, r, h, q, off, csize); err == nil && !bad {
			return true
		}
	}
	return false
}

// damageHeader starts a damage report: where e was and what was found.
func damageHeader(e *entry, all []Problem) string {
	var b strings.Builder
	b.WriteString("cryptpt fsck --repair: damage report\n\n")
	switch {
	case e.ppath != "":
		fmt.Fprintf(&b, "file:     %s\n", e.ppath)
	case e.plain != "":
		fmt.Fprintf(&b, "file:     %s, in a directory whose path is lost\n", e.plain)
	default:
		fmt.Fprintf(&b, "file:     name lost; it was in %s\n", orUnknown(e.dir))
	}
	fmt.Fprintf(&b, "vault:    %s (before the repair)\n", e.vpath)
	for _, i := range e.probs {
		fmt.Fprintf(&b, "found:    %s\n", all[i].Detail)
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "a directory whose path is unknown"
	}
	return s
}

// salvageText is the rest of the damage report of s, salvaged as name.
func salvageText(s *Salvage, name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "size:     %d bytes\n", s.Size)
	for _, r := range s.Lost {
		fmt.Fprintf(&b, "lost:     %s\n", r)
	}
	if s.Cut > 0 {
		fmt.Fprintf(&b, "cut:      the last %d stored bytes are not a whole block; whatever they held after byte %d is lost\n", s.Cut, s.Size)
	}
	if s.NoHeader {
		b.WriteString("header:   damaged; the blocks were read with the file ID where the header keeps it\n")
	}
	if s.Copy != "" {
		fmt.Fprintf(&b, "salvaged: %s: a copy with the lost bytes zeroed, every other byte as it was\n", name)
	} else {
		b.WriteString("salvaged: nothing; no block could be read\n")
	}
	fmt.Fprintf(&b, "original: %s: the damaged file, its vault bytes unchanged (reading a lost range there fails)\n", name+DamagedSuffix)
	return b.String()
}
