package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
)

// Sizes of the key material in the vault config.
const (
	KeySize      = 32                                  // master key and wrapping keys, bytes
	SaltSize     = 32                                  // Argon2id salt, bytes
	wrapNonceLen = 12                                  // AES-GCM standard nonce
	wrapTagLen   = 16                                  // AES-GCM tag
	WrapSize     = wrapNonceLen + KeySize + wrapTagLen // nonce || ciphertext || tag = 60 bytes
	MACSize      = sha256.Size                         // config MAC (version 2), HMAC-SHA256 = 32 bytes
)

// Associated data binding each wrap to its purpose, so the password wrap
// cannot be swapped for the recovery wrap. The recovery wrap keeps its
// version-1 label in version 2: it is written once, by Create, and a
// version-1 config upgraded by a password change keeps it; in version 2 the
// config MAC authenticates it.
const (
	passwordAD   = "cryptpt password wrap v1"
	passwordADv2 = "cryptpt password wrap v2" // || configBinding
	recoveryAD   = "cryptpt recovery wrap v1"
	configInfo   = "cryptpt config v2" // HKDF info of the config MAC key
)

// configBinding returns the fields of c that the version-2 password wrap
// binds and the config MAC covers, in this byte layout (all integers
// big-endian; see doc.go):
//
//	offset size  field
//	0      4     version (uint32)
//	4      4     kdf.time (uint32)
//	8      4     kdf.memory_kib (uint32)
//	12     1     kdf.threads (uint8)
//	13     32    kdf.salt
//	45     2     number of feature flags (uint16)
//	47     ...   each flag: length (uint16) || its bytes
func (c *Config) configBinding() []byte {
	b := make([]byte, 0, 47)
	b = binary.BigEndian.AppendUint32(b, uint32(c.Version))
	b = binary.BigEndian.AppendUint32(b, c.KDF.Time)
	b = binary.BigEndian.AppendUint32(b, c.KDF.MemoryKiB)
	b = append(b, c.KDF.Threads)
	b = append(b, c.Salt[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.Flags)))
	for _, f := range c.Flags {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// passwordWrapAD returns the associated data of c's password wrap: a
// constant in version 1; in version 2 the label followed by configBinding,
// so that a wrap opens only with the KDF parameters, salt, version and
// flags it was made with.
func (c *Config) passwordWrapAD() string {
	if c.Version < Version {
		return passwordAD
	}
	return passwordADv2 + string(c.configBinding())
}

// configMAC returns the version-2 config MAC of c under master:
// HMAC-SHA256(HKDF-SHA256(master, salt empty, info "cryptpt config v2", 32),
// configBinding || password wrap || recovery wrap).
func (c *Config) configMAC(master *[KeySize]byte) ([MACSize]byte, error) {
	var out [MACSize]byte
	k, err := hkdf.Key(sha256.New, master[:], nil, configInfo, KeySize)
	if err != nil {
		return out, err
	}
	defer clear(k)
	m := hmac.New(sha256.New, k)
	m.Write(c.configBinding())
	m.Write(c.PasswordWrap[:])
	m.Write(c.RecoveryWrap[:])
	copy(out[:], m.Sum(nil))
	return out, nil
}

// macOK reports whether c's stored MAC matches master. Version-1 configs
// have none: false.
func (c *Config) macOK(master *[KeySize]byte) bool {
	if c.Version < Version {
		return false
	}
	want, err := c.configMAC(master)
	return err == nil && hmac.Equal(want[:], c.MAC[:])
}

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
