package crypt

import (
	"errors"
	"fmt"
	"io"
)

// Store is the backing of a [File]: its ciphertext bytes and their size,
// and a way to reserve space before a write.
type Store interface {
	Backing
	// Size returns the ciphertext size.
	Size() (int64, error)
	// Reserve allocates the ciphertext range [off, off+n) without changing
	// the size, so that a write into it cannot run out of space half-way.
	// A store that cannot reserve returns nil; an error fails the write
	// before anything is written.
	Reserve(off, n int64) error
}

// File is one encrypted content file in a Store, read and written as
// plaintext at offsets (io.ReaderAt, io.WriterAt). It owns the file's
// header: it reads it on first use, gives a file without data blocks a new
// file ID before its first data, and drops it when the file is emptied.
//
// A File is cheap and used by one goroutine: a caller that serves many
// requests for one file (fs's node) makes one per request and keeps the
// header between them, passing Header() of one request's File to the next
// NewFile, which saves a header read per request. Reads of one stored file
// may run in parallel; the caller serialises writes and truncates against
// everything else.
type File struct {
	c       *Content
	s       Store
	hdr     *Header // nil: not read yet, or no header
	version uint16  // format of a new header

	// Bound reports whether the file has metadata sealed to its file ID
	// (fs: user.* xattrs). Such a file keeps its header when emptied, and
	// Rebind re-seals the metadata when the file gets a new ID. nil: none.
	Bound func() bool
	// Rebind is called when a file that has a format-2 header but no data
	// gets a new header, before the new one is stored or used: the
	// metadata sealed to old.ID must be sealed to new.ID. An error fails
	// the write or truncate with nothing changed. nil: nothing to do.
	Rebind func(old, new *Header) error
}

// NewFile returns the plaintext view of the encrypted file in s. hdr is
// its header if the caller knows it (nil otherwise); a header the file
// gets has format version (FormatV1 or FormatVersion). NewFile does no I/O.
func NewFile(c *Content, s Store, hdr *Header, version uint16) *File {
	return &File{c: c, s: s, hdr: hdr, version: version}
}

// Header returns the file's header as last read or written, nil if the
// File has not needed it or the file has none.
func (f *File) Header() *Header { return f.hdr }

// ReadHeader reads the header of a content file of size ciphertext bytes
// from r; an empty file (size 0) has none and yields nil. Errors wrap
// ErrSize (an impossible size), ErrHeader (short or malformed) or are r's
// read errors.
func ReadHeader(r io.ReaderAt, size int64) (*Header, error) {
	if size == 0 {
		return nil, nil
	}
	if _, err := PlainSize(size); err != nil {
		// A cut-off last block fails here, not at the first read of it:
		// fs would report the size and the kernel never ask for the block.
		return nil, err
	}
	var buf [HeaderSize]byte
	if _, err := r.ReadAt(buf[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: file shorter than its header", ErrHeader)
		}
		return nil, err
	}
	h, err := ParseHeader(buf[:])
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// header returns the header of the file of cipherSize bytes, read once.
func (f *File) header(cipherSize int64) (*Header, error) {
	if f.hdr != nil || cipherSize == 0 {
		return f.hdr, nil
	}
	h, err := ReadHeader(f.s, cipherSize)
	if err != nil {
		return nil, err
	}
	f.hdr = h
	return h, nil
}

// freshHeader gives a file without data blocks (cipherSize 0, or a header
// alone) a new random file ID before its first data is written, so that no
// block of another file, or of an earlier content, can ever be replayed
// into it: an attacker who copies another file's header into an empty one
// must not get the user to write blocks under that file's ID. The header is
// stored with the first data.
func (f *File) freshHeader(cipherSize int64) error {
	var old *Header
	if cipherSize == HeaderSize {
		// The old ID only matters for Rebind; a header that does not
		// parse has no metadata worth keeping.
		old, _ = ReadHeader(f.s, cipherSize)
	}
	h, err := NewHeader(f.version)
	if err != nil {
		return err
	}
	if old != nil && old.Version != FormatV1 && f.Rebind != nil {
		if err := f.Rebind(old, &h); err != nil {
			return err
		}
	}
	f.hdr = &h
	return nil
}

// Size returns the plaintext size. Errors wrap ErrSize or are the store's.
func (f *File) Size() (int64, error) {
	cs, err := f.s.Size()
	if err != nil {
		return 0, err
	}
	return PlainSize(cs)
}

// ReadAt reads len(p) plaintext bytes at off, as io.ReaderAt: n < len(p)
// comes with io.EOF at the end of the file. A header it had to read is
// kept for Header. Errors wrap ErrAuth, ErrSize or ErrHeader for a file
// that is damaged or tampered with (and no bytes are returned), or are the
// store's.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	cs, err := f.s.Size()
	if err != nil {
		return 0, err
	}
	h, err := f.header(cs)
	if err != nil {
		return 0, err
	}
	if cs == 0 {
		return 0, io.EOF
	}
	return f.c.ReadAt(f.s, h, p, off, cs)
}

// WriteAt writes p at plaintext offset off, as io.WriterAt. It first
// reserves the space the write will store (Store.Reserve). If the write
// fails part-way, it puts the old partial last block back (see saveTail)
// and returns the error, as an *UndoError if that failed too. Errors that
// wrap ErrAuth, ErrSize or ErrHeader mean the blocks the write had to
// merge with failed to open: nothing was written.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	cs, err := f.s.Size()
	if err != nil {
		return 0, err
	}
	oldSize := cs
	if cs <= HeaderSize {
		if err := f.freshHeader(cs); err != nil {
			return 0, err
		}
		cs = 0 // Content.WriteAt writes the new header with the data.
	} else if _, err := f.header(cs); err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	if off >= 0 {
		start := CipherOffset(BlockNo(off))
		if n := CipherSize(end) - start; n > 0 {
			if err := f.s.Reserve(start, n); err != nil {
				return 0, err
			}
		}
	}
	tail := f.saveTail(cs, end)
	if _, err := f.c.WriteAt(f.s, f.hdr, p, off, cs); err != nil {
		if errors.Is(err, ErrAuth) || errors.Is(err, ErrSize) {
			return 0, err
		}
		if uerr := f.restoreTail(oldSize, tail); uerr != nil {
			return 0, &UndoError{Err: err, Undo: uerr}
		}
		return 0, err
	}
	return len(p), nil
}

// UndoError is a failed write whose rollback failed too: the file may end
// in a torn block. It unwraps to the write's error.
type UndoError struct {
	Err  error // the write's
	Undo error // the rollback's
}

func (e *UndoError) Error() string { return e.Err.Error() + " (undo: " + e.Undo.Error() + ")" }
func (e *UndoError) Unwrap() error { return e.Err }

// saveTail keeps a copy of the partial last block before a write that
// extends the file: the write re-encrypts it padded, and if the write then
// fails (a full disk) restoreTail puts the file back as it was, instead of
// leaving a torn block that would fail authentication.
func (f *File) saveTail(cipherSize, end int64) []byte {
	if cipherSize <= HeaderSize {
		return nil
	}
	plain, err := PlainSize(cipherSize)
	if err != nil || end <= plain || plain%BlockSize == 0 {
		return nil
	}
	start := CipherOffset(BlockNo(plain))
	tail := make([]byte, cipherSize-start)
	if _, err := f.s.ReadAt(tail, start); err != nil {
		return nil
	}
	return tail
}

// restoreTail undoes a failed write: it cuts the file to its old size and
// writes back the old last block. Both only rewrite space the file had.
func (f *File) restoreTail(cipherSize int64, tail []byte) error {
	if err := f.s.Truncate(cipherSize); err != nil {
		return err
	}
	if tail != nil {
		if _, err := f.s.WriteAt(tail, cipherSize-int64(len(tail))); err != nil {
			return err
		}
	}
	return nil
}

// Truncate sets the plaintext size. changed is false, with nothing
// written, if the file already had that size and data blocks (a caller
// that follows truncate(2) still updates the times). Emptying a file drops
// its header, unless Bound says metadata is sealed to it; the next write
// gives the file a new ID all the same. Errors are as for WriteAt.
func (f *File) Truncate(size int64) (changed bool, err error) {
	cs, err := f.s.Size()
	if err != nil {
		return false, err
	}
	if ps, err := PlainSize(cs); err == nil && cs > HeaderSize && ps == size {
		return false, nil
	}
	if size == 0 {
		keep := int64(0)
		if cs >= HeaderSize && f.Bound != nil && f.Bound() {
			keep = HeaderSize
		} else {
			f.hdr = nil
		}
		return true, f.s.Truncate(keep)
	}
	if cs <= HeaderSize {
		if err := f.freshHeader(cs); err != nil {
			return true, err
		}
		if _, err := f.s.WriteAt(f.hdr.Marshal(), 0); err != nil {
			return true, err
		}
		cs = HeaderSize
	} else if _, err := f.header(cs); err != nil {
		return true, err
	}
	_, err = f.c.Truncate(f.s, f.hdr, size, cs)
	return true, err
}
