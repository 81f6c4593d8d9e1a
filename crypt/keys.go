package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
)

// HKDF-SHA256 info strings, one per derived key (salt is nil; the master key
// is 256 random bits).
const (
	infoContent = "cryptpt content v1"
	infoNames   = "cryptpt names v1"
	infoMeta    = "cryptpt meta v1"
)

// metaOverhead is the expansion of SealMeta: nonce (12) + tag (16).
const metaOverhead = NonceSize + TagSize

// Keys holds the ciphers derived from a vault master key. It is safe for
// concurrent use.
type Keys struct {
	content *Content
	names   *Names
	meta    cipher.AEAD
}

// NewKeys derives the content key (AES-256-GCM, 32 bytes), the names key
// (AES-SIV-CMAC-512, 64 bytes) and the meta key (AES-256-GCM, 32 bytes) from
// master with HKDF-SHA256. master is not retained; the caller may zero it.
func NewKeys(master *[32]byte) (*Keys, error) {
	var ck, mk [32]byte
	var nk [namesKeySize]byte
	defer func() { clear(ck[:]); clear(mk[:]); clear(nk[:]) }()
	for _, d := range []struct {
		info string
		out  []byte
	}{{infoContent, ck[:]}, {infoNames, nk[:]}, {infoMeta, mk[:]}} {
		if _, err := io.ReadFull(hkdf.New(sha256.New, master[:], nil, []byte(d.info)), d.out); err != nil {
			return nil, fmt.Errorf("crypt: deriving keys: %w", err)
		}
	}
	content, err := newContent(&ck)
	if err != nil {
		return nil, err
	}
	names, err := newNames(&nk)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(mk[:])
	if err != nil {
		return nil, fmt.Errorf("crypt: meta cipher: %w", err)
	}
	meta, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("crypt: meta cipher: %w", err)
	}
	return &Keys{content: content, names: names, meta: meta}, nil
}

// Content returns the file content cipher.
func (k *Keys) Content() *Content { return k.content }

// Names returns the entry name cipher.
func (k *Keys) Names() *Names { return k.names }

// SealMeta encrypts a small value (symlink target, xattr value) as
// nonce(12) || ciphertext || tag(16), binding ad (e.g. an xattr name).
func (k *Keys) SealMeta(plain, ad []byte) []byte {
	out := make([]byte, NonceSize, len(plain)+metaOverhead)
	_, _ = rand.Read(out) // never fails
	return k.meta.Seal(out, out[:NonceSize], plain, ad)
}

// OpenMeta decrypts a value sealed by SealMeta with the same ad. Errors wrap
// ErrAuth and the result is then nil.
func (k *Keys) OpenMeta(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < metaOverhead {
		return nil, fmt.Errorf("%w: metadata value too short", ErrAuth)
	}
	p, err := k.meta.Open(nil, sealed[:NonceSize], sealed[NonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata value", ErrAuth)
	}
	if p == nil {
		p = []byte{}
	}
	return p, nil
}
