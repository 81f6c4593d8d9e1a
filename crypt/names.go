package crypt

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// Vault-owned names (see doc.go). Every stored name starting with
// ReservedPrefix belongs to cryptpt.
const (
	// ReservedPrefix starts every name that cryptpt owns in the vault.
	ReservedPrefix = "~~"
	// EncryptedPrefix starts an encrypted name: "~~c" + base64url(SIV).
	EncryptedPrefix = ReservedPrefix + "c"
	// LongPrefix starts a hashed long name: "~~l" + base64url(SHA-256).
	LongPrefix = ReservedPrefix + "l"
	// SidecarPrefix starts the sidecar holding a long name's full "~~c" form.
	SidecarPrefix = ReservedPrefix + "n"
	// TempPrefix starts temporary files ("~~t" + random).
	TempPrefix = ReservedPrefix + "t"
	// DirIVName is the per-directory IV file (DirIVSize random bytes).
	DirIVName = ReservedPrefix + "diriv"
	// VaultConfigName is the vault config file at the vault root.
	VaultConfigName = ReservedPrefix + "vault.toml"

	// DirIVSize is the length of a directory IV.
	DirIVSize = 16
	// MaxNameLen is the longest plaintext or stored name, in bytes.
	MaxNameLen = 255
	// namesKeySize is the AES-SIV-CMAC-512 key length (two AES-256 keys).
	namesKeySize = 64
	// tempRandLen is the number of random bytes in a temp name.
	tempRandLen = 12
)

// b64 is the unpadded base64url encoding used in stored names.
var b64 = base64.RawURLEncoding.Strict()

// decodeCanonical decodes s and accepts it only if it is the exact encoding
// of the result, so each name has one stored form. (encoding/base64 skips
// '\r' and '\n' even in strict mode.)
func decodeCanonical(s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if b64.EncodeToString(b) != s {
		return nil, ErrName
	}
	return b, nil
}

// NameKind classifies a stored (vault) name.
type NameKind int

// Name kinds returned by Classify.
const (
	// Plain is a name without ReservedPrefix: a plaintext-mode entry.
	Plain NameKind = iota
	// Encrypted is "~~c...": an encrypted entry name.
	Encrypted
	// Long is "~~l...": an encrypted entry stored under a hash.
	Long
	// Sidecar is "~~n...": the full name of a Long entry.
	Sidecar
	// DirIV is the directory IV file.
	DirIV
	// VaultConfig is the vault config file.
	VaultConfig
	// Temp is a temporary file.
	Temp
	// Reserved is any other name starting with ReservedPrefix.
	Reserved
)

var kindNames = [...]string{"plain", "encrypted", "long", "sidecar", "diriv", "vault-config", "temp", "reserved"}

func (k NameKind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("NameKind(%d)", int(k))
	}
	return kindNames[k]
}

// Classify tells what a stored name is. It never returns Plain for a name
// starting with ReservedPrefix (the fs layer refuses such plaintext names).
// It looks at the form only; Decrypt validates the rest.
func Classify(stored string) NameKind {
	if !strings.HasPrefix(stored, ReservedPrefix) {
		return Plain
	}
	switch stored {
	case DirIVName:
		return DirIV
	case VaultConfigName:
		return VaultConfig
	}
	for _, p := range []struct {
		prefix string
		kind   NameKind
	}{{EncryptedPrefix, Encrypted}, {LongPrefix, Long}, {SidecarPrefix, Sidecar}, {TempPrefix, Temp}} {
		if len(stored) > len(p.prefix) && strings.HasPrefix(stored, p.prefix) {
			return p.kind
		}
	}
	return Reserved
}

// SidecarName returns the sidecar file name of a Long stored name, or "" if
// longStored is not Long. A conflict copy of a long name has none of its
// own: it shares its base's ([SplitConflict]).
func SidecarName(longStored string) string {
	if Classify(longStored) != Long || strings.ContainsRune(longStored, '.') {
		return ""
	}
	return SidecarPrefix + longStored[len(LongPrefix):]
}

// TempName returns a fresh random temp file name.
func TempName() (string, error) {
	var r [tempRandLen]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("crypt: reading random temp name: %w", err)
	}
	return TempPrefix + b64.EncodeToString(r[:]), nil
}

// NewDirIV returns a fresh random directory IV.
func NewDirIV() (*[DirIVSize]byte, error) {
	iv := new([DirIVSize]byte)
	if _, err := rand.Read(iv[:]); err != nil {
		return nil, fmt.Errorf("crypt: reading random directory IV: %w", err)
	}
	return iv, nil
}

// ParseDirIV parses the contents of a DirIVName file. Errors wrap ErrDirIV.
func ParseDirIV(b []byte) (*[DirIVSize]byte, error) {
	if len(b) != DirIVSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrDirIV, len(b), DirIVSize)
	}
	iv := new([DirIVSize]byte)
	copy(iv[:], b)
	return iv, nil
}

// ValidName reports whether name is a valid plaintext name: non-empty, not
// "." or "..", no '/' or NUL, at most MaxNameLen bytes.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= MaxNameLen &&
		!strings.ContainsAny(name, "/\x00")
}

// Names encrypts and decrypts entry names with AES-SIV-CMAC-512, using the
// directory IV as associated data. It is safe for concurrent use.
type Names struct {
	siv *siv
}

func newNames(key *[namesKeySize]byte) (*Names, error) {
	s, err := newSIV(key[:])
	if err != nil {
		return nil, err
	}
	return &Names{siv: s}, nil
}

// Encrypt returns the stored form of a plaintext name in the directory with
// IV dirIV. If the "~~c" form is longer than MaxNameLen, stored is the "~~l"
// hash form and sidecar holds the "~~c" form to be written to
// SidecarName(stored); otherwise sidecar is nil. Invalid names wrap ErrName.
func (n *Names) Encrypt(dirIV *[DirIVSize]byte, name string) (stored string, sidecar []byte, err error) {
	if !ValidName(name) {
		return "", nil, fmt.Errorf("%w: not a valid file name", ErrName)
	}
	ct := n.siv.seal(nil, [][]byte{dirIV[:]}, []byte(name))
	full := EncryptedPrefix + b64.EncodeToString(ct)
	if len(full) <= MaxNameLen {
		return full, nil, nil
	}
	return longName(full), []byte(full), nil
}

func longName(full string) string {
	h := sha256.Sum256([]byte(full))
	return LongPrefix + b64.EncodeToString(h[:])
}

// Decrypt returns the plaintext name of a stored Encrypted or Long name in
// the directory with IV dirIV. For a Long name, sidecar must be the contents
// of its sidecar file; it is checked against the hash in the name. Tampered
// names and sidecars wrap ErrAuth; malformed ones wrap ErrName.
func (n *Names) Decrypt(dirIV *[DirIVSize]byte, stored string, sidecar []byte) (string, error) {
	switch Classify(stored) {
	case Encrypted:
		if len(stored) > MaxNameLen {
			return "", fmt.Errorf("%w: encrypted name too long", ErrName)
		}
		return n.decryptFull(dirIV, stored)
	case Long:
		want, err := decodeCanonical(stored[len(LongPrefix):])
		if err != nil || len(want) != sha256.Size {
			return "", fmt.Errorf("%w: malformed long name", ErrName)
		}
		if sidecar == nil {
			return "", fmt.Errorf("%w: long name without sidecar", ErrName)
		}
		got := sha256.Sum256(sidecar)
		if subtle.ConstantTimeCompare(got[:], want) != 1 {
			return "", fmt.Errorf("%w: sidecar does not match long name", ErrAuth)
		}
		full := string(sidecar)
		if Classify(full) != Encrypted || len(full) <= MaxNameLen {
			return "", fmt.Errorf("%w: malformed sidecar", ErrName)
		}
		return n.decryptFull(dirIV, full)
	default:
		return "", fmt.Errorf("%w: not an encrypted name", ErrName)
	}
}

func (n *Names) decryptFull(dirIV *[DirIVSize]byte, full string) (string, error) {
	ct, err := decodeCanonical(full[len(EncryptedPrefix):])
	if err != nil || len(ct) <= sivTagSize {
		return "", fmt.Errorf("%w: malformed encrypted name", ErrName)
	}
	plain, err := n.siv.open([][]byte{dirIV[:]}, ct)
	if err != nil {
		return "", fmt.Errorf("%w: name", ErrAuth)
	}
	name := string(plain)
	clear(plain)
	if !ValidName(name) {
		return "", fmt.Errorf("%w: decrypted name is not valid", ErrName)
	}
	return name, nil
}
