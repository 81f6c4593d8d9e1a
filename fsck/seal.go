package fsck

import (
	"errors"
	"io"

	"cryptpt/crypt"
)

// Every crypt call that repair makes to read a damaged file and to write
// encrypted entries is in this file, one small function per operation, so
// that a new content format changes only these. The check itself (content.go)
// verifies blocks with crypt.Content.DecryptBlock directly.

// encryptName returns the stored name of plaintext name in the directory
// with IV iv, and the sidecar contents when it is a long name.
func encryptName(k *crypt.Keys, iv *[crypt.DirIVSize]byte, name string) (stored string, sidecar []byte, err error) {
	return k.Names().Encrypt(iv, name)
}

// newFileHeader returns the header of a new encrypted file in content
// format version (0: crypt.FormatVersion).
func newFileHeader(version uint16) (crypt.Header, error) {
	if version == 0 {
		version = crypt.FormatVersion
	}
	return crypt.NewHeader(version)
}

// damagedFileHeader returns the header to read a damaged file with: the
// parsed header, or, when it does not parse (bad magic or version), the file
// ID where a good header keeps it, in case only the first bytes are damaged;
// its Version is then only a guess (see salvage). ok is false when the
// header did not parse.
func damagedFileHeader(b []byte) (h crypt.Header, ok bool) {
	h, err := crypt.ParseHeader(b)
	if err == nil {
		return h, true
	}
	if len(b) >= crypt.HeaderSize {
		copy(h.ID[:], b[crypt.MagicLen+crypt.VersionLen:crypt.HeaderSize])
	}
	h.Version = crypt.FormatVersion
	return h, false
}

// readablePrefix returns the largest ciphertext size not above size that the
// format can produce, so that the blocks before a cut-off trailing block can
// still be read.
func readablePrefix(size int64) int64 {
	if _, err := crypt.PlainSize(size); err == nil {
		return size
	}
	if size < crypt.HeaderSize {
		return 0
	}
	return crypt.CipherOffset(uint64((size - crypt.HeaderSize) / crypt.CipherBlockSize))
}

// plainSize returns the plaintext size of a file of cipherSize bytes (a
// size readablePrefix returned).
func plainSize(cipherSize int64) int64 {
	n, _ := crypt.PlainSize(cipherSize)
	return n
}

// readPlain reads plaintext p at off from the damaged file r of cipherSize
// bytes. authFailed is true when a block in the range fails authentication
// (p is then zeroed); err is any other failure.
func readPlain(k *crypt.Keys, r io.ReaderAt, h *crypt.Header, p []byte, off, cipherSize int64) (n int, authFailed bool, err error) {
	n, err = k.Content().ReadAt(r, h, p, off, cipherSize)
	if errors.Is(err, crypt.ErrAuth) {
		return 0, true, nil
	}
	if err == io.EOF {
		err = nil
	}
	return n, false, err
}

// writePlain writes p at off into the new encrypted file b of cipherSize
// bytes (header h) and returns its new size.
func writePlain(k *crypt.Keys, b crypt.Backing, h *crypt.Header, p []byte, off, cipherSize int64) (int64, error) {
	return k.Content().WriteAt(b, h, p, off, cipherSize)
}
