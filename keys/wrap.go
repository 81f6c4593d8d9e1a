package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
)

// Sizes of the key material in the vault config.
const (
	KeySize      = 32                                  // master key and wrapping keys, bytes
	SaltSize     = 32                                  // Argon2id salt, bytes
	wrapNonceLen = 12                                  // AES-GCM standard nonce
	wrapTagLen   = 16                                  // AES-GCM tag
	WrapSize     = wrapNonceLen + KeySize + wrapTagLen // nonce || ciphertext || tag = 60 bytes
)

// Associated data binding each wrap to its purpose, so the password wrap
// cannot be swapped for the recovery wrap.
const (
	passwordAD = "cryptpt password wrap v1"
	recoveryAD = "cryptpt recovery wrap v1"
)

// wrapKey seals master under kek with a random nonce and returns
// nonce || AES-256-GCM(master, ad) || tag.
func wrapKey(kek, master *[KeySize]byte, ad string) ([WrapSize]byte, error) {
	var out [WrapSize]byte
	aead, err := newGCM(kek)
	if err != nil {
		return out, err
	}
	if _, err := rand.Read(out[:wrapNonceLen]); err != nil {
		return out, err
	}
	aead.Seal(out[wrapNonceLen:wrapNonceLen], out[:wrapNonceLen], master[:], []byte(ad))
	return out, nil
}

// unwrapKey opens a wrap produced by wrapKey. ok is false when authentication
// fails (wrong key, or the wrap was altered).
func unwrapKey(kek *[KeySize]byte, wrapped *[WrapSize]byte, ad string) (master [KeySize]byte, ok bool) {
	aead, err := newGCM(kek)
	if err != nil {
		return master, false
	}
	pt, err := aead.Open(master[:0], wrapped[:wrapNonceLen], wrapped[wrapNonceLen:], []byte(ad))
	if err != nil || len(pt) != KeySize {
		clear(master[:])
		return master, false
	}
	return master, true
}

func newGCM(key *[KeySize]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
