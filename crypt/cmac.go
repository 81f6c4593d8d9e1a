package crypt

import (
	"crypto/cipher"
	"crypto/subtle"
)

// cmacBlockSize is the AES block size used by CMAC and SIV.
const cmacBlockSize = 16

// cmac computes AES-CMAC (RFC 4493 / NIST SP 800-38B) with a fixed key.
// It is safe for concurrent use.
type cmac struct {
	b      cipher.Block
	k1, k2 [cmacBlockSize]byte
}

func newCMAC(b cipher.Block) *cmac {
	c := &cmac{b: b}
	var l [cmacBlockSize]byte
	b.Encrypt(l[:], l[:])
	c.k1 = dbl(l)
	c.k2 = dbl(c.k1)
	return c
}

// dbl multiplies x by 2 in GF(2^128) (RFC 5297 section 2.3).
func dbl(x [cmacBlockSize]byte) [cmacBlockSize]byte {
	var out [cmacBlockSize]byte
	carry := x[0] >> 7
	for i := 0; i < cmacBlockSize-1; i++ {
		out[i] = x[i]<<1 | x[i+1]>>7
	}
	out[cmacBlockSize-1] = x[cmacBlockSize-1]<<1 ^ byte(subtle.ConstantTimeByteEq(carry, 1))*0x87
	return out
}

// sum returns the CMAC of msg.
func (c *cmac) sum(msg []byte) [cmacBlockSize]byte {
	var x [cmacBlockSize]byte
	for len(msg) > cmacBlockSize {
		subtle.XORBytes(x[:], x[:], msg[:cmacBlockSize])
		c.b.Encrypt(x[:], x[:])
		msg = msg[cmacBlockSize:]
	}
	// Last block: complete -> xor K1; partial or empty -> pad 10* and xor K2.
	var last [cmacBlockSize]byte
	if len(msg) == cmacBlockSize {
		subtle.XORBytes(last[:], msg, c.k1[:])
	} else {
		copy(last[:], msg)
		last[len(msg)] = 0x80
		subtle.XORBytes(last[:], last[:], c.k2[:])
	}
	subtle.XORBytes(x[:], x[:], last[:])
	c.b.Encrypt(x[:], x[:])
	return x
}
