package fsck

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"cryptpt/crypt"
	"cryptpt/layout"

	"golang.org/x/sys/unix"
)

// readChunkBlocks is how many stored blocks one read covers (about 1 MiB).
const readChunkBlocks = 256

// maxListedBlocks bounds the block numbers named in one problem.
const maxListedBlocks = 8

// file verifies the encrypted regular file e (stat st): size, header, blocks
// and xattrs. A file with several hard links is read once.
func (c *checker) file(e *entry, st *unix.Stat_t) {
	id := inode{uint64(st.Dev), st.Ino}
	if st.Nlink > 1 {
		if detail, ok := c.seen[id]; ok {
			if detail != "" {
				c.report(e, BadContent, "%s (another hard link of a damaged file)", detail)
			}
			return
		}
	}
	fd, err := layout.OpenRead(e.dirfd, e.name)
	if err != nil {
		c.report(e, Unreadable, "cannot open: %v", err)
		return
	}
	f := os.NewFile(uintptr(fd), e.vpath)
	defer f.Close()
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFREG {
		c.report(e, Unreadable, "changed while being checked")
		return
	}
	detail, err := c.content(f, fst.Size)
	if err != nil {
		c.report(e, Unreadable, "%v", err)
		return
	}
	c.rep.Files++
	c.progress()
	if st.Nlink > 1 {
		c.seen[id] = detail
	}
	if detail != "" {
		c.report(e, BadContent, "%s", detail)
	}
	c.xattrs(fd, e)
}

// content verifies the stored content in r of size bytes and returns what
// is wrong with it ("" if nothing). The error is for a failed read.
func (c *checker) content(r io.ReaderAt, size int64) (string, error) {
	if size == 0 {
		return "", nil
	}
	if size < crypt.HeaderSize {
		return fmt.Sprintf("size %d bytes is not a valid ciphertext size (shorter than the %d-byte header)", size, crypt.HeaderSize), nil
	}
	var hb [crypt.HeaderSize]byte
	if _, err := r.ReadAt(hb[:], 0); err != nil {
		return "", fmt.Errorf("cannot read header: %w", err)
	}
	h, err := crypt.ParseHeader(hb[:])
	if err != nil {
		return "header is damaged: " + headerProblem(hb[:]), nil
	}
	c.rep.Bytes += crypt.HeaderSize
	var bad []uint64
	var problems []string
	nBlocks := uint64((size - crypt.HeaderSize + crypt.CipherBlockSize - 1) / crypt.CipherBlockSize)
	for first := uint64(0); first < nBlocks; first += readChunkBlocks {
		off := crypt.CipherOffset(first)
		n := min(int64(len(c.buf)), size-off)
		buf := c.buf[:n]
		if got, err := r.ReadAt(buf, off); int64(got) != n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", fmt.Errorf("cannot read blocks from %d: %w", first, err)
		}
		for i := uint64(0); len(buf) > 0; i++ {
			sealed := buf[:min(len(buf), crypt.CipherBlockSize)]
			buf = buf[len(sealed):]
			bn := first + i
			if len(sealed) <= crypt.BlockOverhead {
				problems = append(problems, fmt.Sprintf("size %d bytes is not a valid ciphertext size (last block %d has %d bytes)", size, bn, len(sealed)))
				break
			}
			var err error
			c.plain, err = c.k.Content().DecryptBlock(c.plain[:0], sealed, bn, &h, bn == nBlocks-1)
			if err != nil {
				bad = append(bad, bn)
			}
		}
		c.rep.Bytes += n
		c.progress()
	}
	if len(bad) > 0 {
		problems = append([]string{blockList(bad)}, problems...)
	}
	return strings.Join(problems, "; "), nil
}

// headerProblem says what is wrong with a header, without the package prefix.
func headerProblem(b []byte) string {
	if string(b[:crypt.MagicLen]) != crypt.Magic {
		return "bad magic (not a cryptpt encrypted file)"
	}
	return "unsupported format version"
}

// blockList words the failed blocks: "block 3 fails authentication" or
// "blocks 3, 7 and 9 fail authentication".
func blockList(bad []uint64) string {
	if len(bad) == 1 {
		return fmt.Sprintf("block %d fails authentication", bad[0])
	}
	var b strings.Builder
	b.WriteString("blocks ")
	shown := min(len(bad), maxListedBlocks)
	for i, bn := range bad[:shown] {
		switch {
		case i == 0:
		case i == shown-1 && shown == len(bad):
			b.WriteString(" and ")
		default:
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d", bn)
	}
	if shown < len(bad) {
		fmt.Fprintf(&b, " and %d more", len(bad)-shown)
	}
	b.WriteString(" fail authentication")
	return b.String()
}
