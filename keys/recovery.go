package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
)

// Recovery key text form:
//
//	20 random bytes (160 bits) -> 32 Crockford base32 characters
//	checksum: the first 20 bits of SHA-256(key bytes) -> 4 more characters
//	36 characters in 9 groups of 4 joined by '-':
//	XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-CCCC
const (
	RecoveryKeySize   = 20                                              // bytes of secret
	recoveryDataChars = RecoveryKeySize * 8 / 5                         // 32 base32 characters
	recoveryCkChars   = 4                                               // checksum characters (20 bits)
	recoveryChars     = recoveryDataChars + recoveryCkChars             // 36
	recoveryGroup     = 4                                               // characters per group
	RecoveryKeyLen    = recoveryChars + recoveryChars/recoveryGroup - 1 // 44: formatted length with dashes
)

// crockford is the Crockford base32 alphabet (no I, L, O, U).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewRecoveryKey returns 20 random bytes for a new recovery key.
func NewRecoveryKey() ([RecoveryKeySize]byte, error) {
	var k [RecoveryKeySize]byte
	_, err := rand.Read(k[:])
	return k, err
}

// FormatRecoveryKey returns the text form of k, for a person to copy:
// 36 Crockford base32 characters (32 of key, 4 of checksum) in groups of 4.
func FormatRecoveryKey(k *[RecoveryKeySize]byte) string {
	var chars [recoveryChars]byte
	encode5(chars[:recoveryDataChars], k[:])
	sum := recoveryChecksum(k)
	encode5(chars[recoveryDataChars:], sum[:])
	var b strings.Builder
	b.Grow(RecoveryKeyLen)
	for i, c := range chars {
		if i > 0 && i%recoveryGroup == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ParseRecoveryKey decodes the text form of a recovery key. It ignores case,
// spaces, tabs, newlines and dashes, and reads O as 0 and I, L as 1. Any other
// problem (length, alphabet, checksum) is ErrRecoveryKeyTypo; the message
// never repeats the key. It takes bytes, not a string, so that the caller
// can wipe the text after use; it keeps no copy.
func ParseRecoveryKey(s []byte) ([RecoveryKeySize]byte, error) {
	var k [RecoveryKeySize]byte
	var chars [recoveryChars]byte
	defer clear(chars[:])
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ' ', '\t', '\n', '\r', '-':
			continue
		}
		v, ok := crockfordValue(c)
		if !ok {
			return k, fmt.Errorf("%w: character %d is not in the recovery key alphabet", ErrRecoveryKeyTypo, n+1)
		}
		if n < recoveryChars {
			chars[n] = v
		}
		n++
	}
	if n != recoveryChars {
		return k, fmt.Errorf("%w: %d characters, want %d", ErrRecoveryKeyTypo, n, recoveryChars)
	}
	var sum [3]byte // 20 bits of checksum, padded with 4 zero bits
	decode5(k[:], chars[:recoveryDataChars])
	decode5(sum[:], chars[recoveryDataChars:])
	want := recoveryChecksum(&k)
	if sum != want {
		clear(k[:])
		return k, fmt.Errorf("%w: checksum does not match", ErrRecoveryKeyTypo)
	}
	return k, nil
}

// recoveryChecksum returns the first 20 bits of SHA-256(k) in 3 bytes, the
// low 4 bits of the last byte zero.
func recoveryChecksum(k *[RecoveryKeySize]byte) [3]byte {
	h := sha256.Sum256(k[:])
	return [3]byte{h[0], h[1], h[2] & 0xf0}
}

// crockfordValue maps a character to its 5-bit value, case-insensitively,
// with O->0 and I, L->1.
func crockfordValue(c byte) (byte, bool) {
	if 'a' <= c && c <= 'z' {
		c -= 'a' - 'A'
	}
	switch c {
	case 'O':
		c = '0'
	case 'I', 'L':
		c = '1'
	}
	i := strings.IndexByte(crockford, c)
	if i < 0 {
		return 0, false
	}
	return byte(i), true
}

// encode5 writes src as big-endian 5-bit groups into dst, one alphabet
// character each; len(dst)*5 must be at least len(src)*8 (extra bits are zero).
func encode5(dst, src []byte) {
	var acc uint32
	bits := 0
	j := 0
	for _, b := range src {
		acc = acc<<8 | uint32(b)
		bits += 8
		for bits >= 5 && j < len(dst) {
			bits -= 5
			dst[j] = crockford[(acc>>bits)&31]
			j++
		}
	}
	if bits > 0 && j < len(dst) {
		dst[j] = crockford[(acc<<(5-bits))&31]
		j++
	}
	for ; j < len(dst); j++ {
		dst[j] = crockford[0]
	}
}

// decode5 reverses encode5: src holds 5-bit values, dst receives the bytes;
// bits beyond len(dst)*8 are kept only as far as they fit (the caller compares
// padded values).
func decode5(dst, src []byte) {
	var acc uint32
	bits := 0
	j := 0
	for _, v := range src {
		acc = acc<<5 | uint32(v)
		bits += 5
		if bits >= 8 && j < len(dst) {
			bits -= 8
			dst[j] = byte(acc >> bits)
			j++
		}
	}
	if bits > 0 && j < len(dst) {
		dst[j] = byte(acc << (8 - bits))
	}
}
