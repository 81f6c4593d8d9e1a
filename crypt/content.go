package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
)

// Block layout (see doc.go).
const (
	// BlockSize is the plaintext size of every block but the last.
	BlockSize = 4096
	// NonceSize is the length of the random AES-GCM nonce stored before each block.
	NonceSize = 12
	// TagSize is the length of the AES-GCM tag stored after each block.
	TagSize = 16
	// BlockOverhead is the ciphertext expansion of one block: 12 + 16 = 28 bytes.
	BlockOverhead = NonceSize + TagSize
	// CipherBlockSize is the stored size of a full block: 4096 + 28 = 4124 bytes.
	CipherBlockSize = BlockSize + BlockOverhead
	// blockADSize is the associated data length: blockNo (8) || file ID (16).
	blockADSize = 8 + FileIDLen
	// infoFile prefixes the file ID in the HKDF info of a format-2 file key.
	infoFile = "cryptpt file v2"
	// maxFileKeys bounds the cache of derived file keys.
	maxFileKeys = 4096
)

// Content encrypts and decrypts file content blocks with AES-256-GCM.
// It is safe for concurrent use.
type Content struct {
	key  [32]byte    // the vault's content key, input of format-2 file keys
	aead cipher.AEAD // format 1: every file's blocks under the content key
	// parallel enables multi-goroutine sealing/opening of large requests.
	parallel bool
	// pool holds *scratch buffers for ReadAt/WriteAt/Truncate.
	pool sync.Pool

	mu       sync.Mutex
	fileKeys map[[FileIDLen]byte]cipher.AEAD // format-2 file ciphers by file ID
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("crypt: content cipher: %w", err)
	}
	return cipher.NewGCM(b)
}

func newContent(key *[32]byte) (*Content, error) {
	a, err := newGCM(key[:])
	if err != nil {
		return nil, err
	}
	return &Content{key: *key, aead: a, parallel: defaultParallel}, nil
}

// cipherFor returns the block cipher of the file with header h. Format 1
// seals every file under the content key, so a vault's life of random
// 96-bit nonces shares one key; format 2 gives each file a key of its own,
// HKDF-SHA256(content key, info = "cryptpt file v2" || file ID), so NIST
// SP 800-38D's bound of 2^32 random-nonce seals applies per file ID.
func (c *Content) cipherFor(h *Header) cipher.AEAD {
	if h.Version == FormatV1 {
		return c.aead
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.fileKeys[h.ID]; ok {
		return a
	}
	if c.fileKeys == nil || len(c.fileKeys) >= maxFileKeys {
		c.fileKeys = make(map[[FileIDLen]byte]cipher.AEAD)
	}
	k, err := hkdf.Key(sha256.New, c.key[:], nil, infoFile+string(h.ID[:]), 32)
	if err != nil {
		panic("crypt: HKDF of 32 bytes cannot fail: " + err.Error())
	}
	a, err := newGCM(k)
	clear(k)
	if err != nil {
		panic("crypt: AES-256 with a 32-byte key cannot fail: " + err.Error())
	}
	c.fileKeys[h.ID] = a
	return a
}

// holeAllowed reports whether an all-zero stored block may read as a hole:
// always in format 1, and in format 2 for every block but the last, which
// is always written sealed, so that zero blocks appended to a file are
// caught instead of extending it.
func holeAllowed(h *Header, last bool) bool {
	return h.Version == FormatV1 || !last
}

// blockAD returns the associated data of block blockNo of file id:
// aData = [blockNo.bigEndian(8 bytes) fileID(16 bytes)].
func blockAD(ad *[blockADSize]byte, blockNo uint64, id *[FileIDLen]byte) []byte {
	binary.BigEndian.PutUint64(ad[:8], blockNo)
	copy(ad[8:], id[:])
	return ad[:]
}

// EncryptBlock seals one plaintext block (1..BlockSize bytes) of the file
// with header h as nonce || ciphertext || tag and appends it to dst.
func (c *Content) EncryptBlock(dst, plain []byte, blockNo uint64, h *Header) []byte {
	n := len(dst)
	dst = growLen(dst, len(plain)+BlockOverhead)
	c.sealInto(c.cipherFor(h), dst[n:], plain, blockNo, &h.ID)
	return dst
}

// sealInto writes the sealed block into out[:len(plain)+BlockOverhead].
// plain must not overlap out.
func (c *Content) sealInto(a cipher.AEAD, out, plain []byte, blockNo uint64, id *[FileIDLen]byte) {
	nonce := out[:NonceSize]
	// crypto/rand.Read never fails (it crashes the program instead).
	_, _ = rand.Read(nonce)
	var ad [blockADSize]byte
	a.Seal(out[NonceSize:NonceSize], nonce, plain, blockAD(&ad, blockNo, id))
}

// DecryptBlock opens one sealed block of the file with header h and appends
// its plaintext to dst; last says whether it is the file's last block. A
// block made only of zero bytes (a hole in a sparse backing file) decrypts
// to len(sealed)-BlockOverhead zero bytes, except as the last block of a
// format-2 file. Errors wrap ErrAuth (tag mismatch, or a zero last block)
// or ErrSize (sealed shorter than BlockOverhead+1 or longer than
// CipherBlockSize); the returned slice is then nil.
func (c *Content) DecryptBlock(dst, sealed []byte, blockNo uint64, h *Header, last bool) ([]byte, error) {
	if len(sealed) <= BlockOverhead || len(sealed) > CipherBlockSize {
		return nil, fmt.Errorf("%w: block %d has %d bytes", ErrSize, blockNo, len(sealed))
	}
	n := len(dst)
	dst = growLen(dst, len(sealed)-BlockOverhead)
	if err := c.openInto(c.cipherFor(h), dst[n:], sealed, blockNo, &h.ID, holeAllowed(h, last)); err != nil {
		return nil, err
	}
	return dst, nil
}

// openInto opens sealed into out[:len(sealed)-BlockOverhead]; out must not
// overlap sealed. On error out is zeroed.
func (c *Content) openInto(a cipher.AEAD, out, sealed []byte, blockNo uint64, id *[FileIDLen]byte, hole bool) error {
	if isZero(sealed) {
		clear(out[:len(sealed)-BlockOverhead])
		if hole {
			return nil
		}
		return fmt.Errorf("%w: block %d is all zeros but is the last block", ErrAuth, blockNo)
	}
	var ad [blockADSize]byte
	_, err := a.Open(out[:0], sealed[:NonceSize], sealed[NonceSize:], blockAD(&ad, blockNo, id))
	if err != nil {
		clear(out[:len(sealed)-BlockOverhead])
		return fmt.Errorf("%w: block %d", ErrAuth, blockNo)
	}
	return nil
}

// growLen extends b by n bytes, reallocating if needed.
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// CipherSize returns the backing file size holding plain plaintext bytes.
// An empty file has no header: CipherSize(0) == 0.
func CipherSize(plain int64) int64 {
	if plain <= 0 {
		return 0
	}
	full, rem := plain/BlockSize, plain%BlockSize
	n := HeaderSize + full*CipherBlockSize
	if rem > 0 {
		n += rem + BlockOverhead
	}
	return n
}

// PlainSize returns the plaintext size of a backing file of cipher bytes.
// Valid sizes are 0, HeaderSize (a header-only empty file) and any size whose
// trailing partial block is longer than BlockOverhead; other sizes wrap ErrSize.
func PlainSize(cipher int64) (int64, error) {
	switch {
	case cipher == 0:
		return 0, nil
	case cipher < 0:
		return 0, fmt.Errorf("%w: negative size %d", ErrSize, cipher)
	case cipher < HeaderSize:
		return 0, fmt.Errorf("%w: %d bytes is shorter than the header", ErrSize, cipher)
	}
	body := cipher - HeaderSize
	full, rem := body/CipherBlockSize, body%CipherBlockSize
	plain := full * BlockSize
	if rem > 0 {
		if rem <= BlockOverhead {
			return 0, fmt.Errorf("%w: trailing block of %d bytes", ErrSize, rem)
		}
		plain += rem - BlockOverhead
	}
	return plain, nil
}

// BlockNo returns the number of the block holding plaintext offset plainOff.
func BlockNo(plainOff int64) uint64 { return uint64(plainOff / BlockSize) }

// CipherOffset returns the backing file offset where block blockNo starts.
func CipherOffset(blockNo uint64) int64 { return HeaderSize + int64(blockNo)*CipherBlockSize }
