package crypt

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Content file header layout (see doc.go).
const (
	// MagicLen is the length of the magic bytes "CPT\x00".
	MagicLen = 4
	// VersionLen is the length of the big-endian format version.
	VersionLen = 2
	// FileIDLen is the length of the random per-file ID.
	FileIDLen = 16
	// HeaderSize is the total header length: 4 + 2 + 16 = 22 bytes.
	HeaderSize = MagicLen + VersionLen + FileIDLen
	// FormatVersion is the newest content format version, written in new
	// vaults. Format 1 (every block under the vault's content key) is still
	// read, and written in vaults whose config says version 1.
	FormatVersion uint16 = 2
	// FormatV1 is the first content format: one content key for every file,
	// and a trailing all-zero block reads as a hole.
	FormatV1 uint16 = 1
)

// Magic is the first MagicLen bytes of every non-empty encrypted content file.
const Magic = "CPT\x00"

// Header is the parsed header of an encrypted content file.
type Header struct {
	// Version is the content format of the file: FormatV1 or FormatVersion.
	Version uint16
	// ID is the random file ID, bound into every block's associated data
	// and, from format 2 on, the input of the file's own content key.
	ID [FileIDLen]byte
}

// NewHeader returns a header of the given format version (FormatV1 or
// FormatVersion) with a fresh random file ID.
func NewHeader(version uint16) (Header, error) {
	if !supportedVersion(version) {
		return Header{}, fmt.Errorf("%w: unsupported format version %d", ErrHeader, version)
	}
	h := Header{Version: version}
	if _, err := rand.Read(h.ID[:]); err != nil {
		return Header{}, fmt.Errorf("crypt: reading random file ID: %w", err)
	}
	return h, nil
}

func supportedVersion(v uint16) bool { return v == FormatV1 || v == FormatVersion }

// Marshal returns the HeaderSize-byte encoding of h.
func (h Header) Marshal() []byte {
	b := make([]byte, 0, HeaderSize)
	return h.appendTo(b)
}

func (h Header) appendTo(b []byte) []byte {
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint16(b, h.Version)
	return append(b, h.ID[:]...)
}

// ParseHeader parses the first HeaderSize bytes of b (extra bytes are
// ignored). Errors wrap ErrHeader.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: short header (%d of %d bytes)", ErrHeader, len(b), HeaderSize)
	}
	if !bytes.Equal(b[:MagicLen], []byte(Magic)) {
		return Header{}, fmt.Errorf("%w: bad magic", ErrHeader)
	}
	v := binary.BigEndian.Uint16(b[MagicLen:])
	if !supportedVersion(v) {
		return Header{}, fmt.Errorf("%w: unsupported format version %d", ErrHeader, v)
	}
	h := Header{Version: v}
	copy(h.ID[:], b[MagicLen+VersionLen:HeaderSize])
	return h, nil
}
