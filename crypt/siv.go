package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
)

// sivTagSize is the length of the synthetic IV prepended to SIV ciphertexts.
const sivTagSize = cmacBlockSize

var errSIVKey = errors.New("crypt: AES-SIV key must be 32 or 64 bytes")

// siv is AES-SIV (RFC 5297): S2V with AES-CMAC under the first key half,
// AES-CTR under the second half. A 32-byte key gives AES-SIV-CMAC-256
// (AES-128), a 64-byte key AES-SIV-CMAC-512 (AES-256). It is safe for
// concurrent use.
type siv struct {
	mac *cmac
	ctr cipher.Block
}

func newSIV(key []byte) (*siv, error) {
	if len(key) != 32 && len(key) != 64 {
		return nil, errSIVKey
	}
	half := len(key) / 2
	m, err := aes.NewCipher(key[:half])
	if err != nil {
		return nil, err
	}
	c, err := aes.NewCipher(key[half:])
	if err != nil {
		return nil, err
	}
	return &siv{mac: newCMAC(m), ctr: c}, nil
}

// s2v implements S2V(K, S1, ..., Sn) for n >= 1 where the last string is the
// plaintext (RFC 5297 section 2.4).
func (s *siv) s2v(ad [][]byte, plain []byte) [cmacBlockSize]byte {
	var zero [cmacBlockSize]byte
	d := s.mac.sum(zero[:])
	for _, a := range ad {
		m := s.mac.sum(a)
		d = dbl(d)
		subtle.XORBytes(d[:], d[:], m[:])
	}
	if len(plain) >= cmacBlockSize {
		t := make([]byte, len(plain))
		copy(t, plain)
		x := t[len(t)-cmacBlockSize:]
		subtle.XORBytes(x, x, d[:])
		return s.mac.sum(t)
	}
	d = dbl(d)
	var p [cmacBlockSize]byte
	copy(p[:], plain)
	p[len(plain)] = 0x80
	subtle.XORBytes(d[:], d[:], p[:])
	return s.mac.sum(d[:])
}

// ctrXOR applies AES-CTR with the SIV-derived counter (bits 63 and 31 cleared).
func (s *siv) ctrXOR(dst, src []byte, v [cmacBlockSize]byte) {
	q := v
	q[8] &= 0x7f
	q[12] &= 0x7f
	cipher.NewCTR(s.ctr, q[:]).XORKeyStream(dst, src)
}

// seal appends V || C to dst.
func (s *siv) seal(dst []byte, ad [][]byte, plain []byte) []byte {
	v := s.s2v(ad, plain)
	n := len(dst)
	dst = growLen(dst, sivTagSize+len(plain))
	copy(dst[n:], v[:])
	s.ctrXOR(dst[n+sivTagSize:], plain, v)
	return dst
}

// open verifies and decrypts V || C, returning the plaintext or ErrAuth.
func (s *siv) open(ad [][]byte, sealed []byte) ([]byte, error) {
	if len(sealed) < sivTagSize {
		return nil, ErrAuth
	}
	var v [cmacBlockSize]byte
	copy(v[:], sealed)
	plain := make([]byte, len(sealed)-sivTagSize)
	s.ctrXOR(plain, sealed[sivTagSize:], v)
	t := s.s2v(ad, plain)
	if subtle.ConstantTimeCompare(t[:], v[:]) != 1 {
		clear(plain)
		return nil, ErrAuth
	}
	return plain, nil
}
