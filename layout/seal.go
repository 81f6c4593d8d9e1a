package layout

import (
	"encoding/base64"
	"errors"
	"strings"

	"cryptpt/crypt"
)

// Sealed values of encrypted entries. A vault may hold values sealed in
// either format: format 1 ones in a vault upgraded from it, format 2 ones
// written by a newer cryptpt into a format-1 vault. Both are tried, the
// vault's own first ([Formats]).

// symlinkEncoding is the form of a sealed symlink target in the vault: a
// symlink target must be a string without NUL.
var symlinkEncoding = base64.RawURLEncoding

// ErrNotSealed means a stored symlink target is not in the sealed form.
var ErrNotSealed = errors.New("symlink target is not in the encrypted form")

// Formats lists the formats a sealed value in a vault of format vault may be
// in, the vault's first; 0 is crypt.FormatVersion.
func Formats(vault uint16) []uint16 {
	switch vault {
	case 0:
		vault = crypt.FormatVersion
	case crypt.FormatV1:
		return []uint16{crypt.FormatV1, crypt.FormatVersion}
	}
	return []uint16{vault, crypt.FormatV1}
}

// SealSymlink returns what the vault stores as the target of the encrypted
// symlink name in the directory with IV dirIV, sealed in format version
// (crypt.SymlinkAD: format 2 binds it to that place, so a rename re-seals).
func SealSymlink(k *crypt.Keys, version uint16, dirIV *[crypt.DirIVSize]byte, name string, target []byte) string {
	return symlinkEncoding.EncodeToString(k.SealMeta(target, crypt.SymlinkAD(version, dirIV, name)))
}

// IsSealedSymlink reports whether stored has the form of a sealed target,
// which says nothing about whether it opens.
func IsSealedSymlink(stored []byte) bool {
	_, err := symlinkEncoding.DecodeString(string(stored))
	return err == nil
}

// OpenSymlink decrypts stored, the vault's form of the target of the
// encrypted symlink name in the directory with IV dirIV, sealed in one of
// formats. Errors: ErrNotSealed, or crypt.ErrAuth.
func OpenSymlink(k *crypt.Keys, formats []uint16, dirIV *[crypt.DirIVSize]byte, name string, stored []byte) ([]byte, error) {
	sealed, err := symlinkEncoding.DecodeString(string(stored))
	if err != nil {
		return nil, ErrNotSealed
	}
	for _, version := range formats {
		var target []byte
		if target, err = k.OpenMeta(sealed, crypt.SymlinkAD(version, dirIV, name)); err == nil {
			return target, nil
		}
	}
	return nil, err
}

// SymlinkSize is the length of the target of an encrypted symlink whose
// stored target is storedLen bytes long (0 for one too short to open).
func SymlinkSize(storedLen int64) int64 {
	n := int64(symlinkEncoding.DecodedLen(int(storedLen))) - (crypt.NonceSize + crypt.TagSize)
	return max(n, 0)
}

// SealsXattr reports whether the value of attr is sealed on an encrypted
// entry: user attributes. Other namespaces are read by the kernel (ACLs,
// capabilities, security labels) and stay as they are.
func SealsXattr(attr string) bool {
	return strings.HasPrefix(attr, "user.")
}

// SealXattr seals value as the value of attr of the encrypted entry whose ID
// is id (a regular file's file ID, a directory's IV; unused in format 1), in
// format version (crypt.XattrAD).
func SealXattr(k *crypt.Keys, version uint16, attr string, id *[16]byte, value []byte) []byte {
	return k.SealMeta(value, crypt.XattrAD(version, attr, id))
}

// OpenXattr decrypts a sealed value of attr of the encrypted entry whose ID
// is id, sealed in one of formats; with id nil (the entry has none that
// can be read) only format 1, which binds none, is tried. The error is
// crypt.ErrAuth.
func OpenXattr(k *crypt.Keys, formats []uint16, attr string, id *[16]byte, sealed []byte) ([]byte, error) {
	err := crypt.ErrAuth
	for _, version := range formats {
		if id == nil && version != crypt.FormatV1 {
			continue
		}
		var value []byte
		if value, err = k.OpenMeta(sealed, crypt.XattrAD(version, attr, id)); err == nil {
			return value, nil
		}
	}
	return nil, err
}
