package crypt

// Associated data of the values sealed with Keys.SealMeta. Format 1 binds a
// value only to its kind (and an xattr to its name), so a value could be
// moved to another entry unnoticed; format 2 also binds it to its entry.

// SymlinkAD returns the associated data of an encrypted symlink target:
//
//	format 1: "cryptpt symlink v1"
//	format 2: "cryptpt symlink v2" || 0x00 || dirIV (16 bytes) || name
//
// where dirIV is the IV of the directory holding the link and name its
// plaintext name there, so a target moved to another link fails. A rename
// must re-seal the target for its new place.
func SymlinkAD(version uint16, dirIV *[DirIVSize]byte, name string) []byte {
	if version == FormatV1 {
		return []byte("cryptpt symlink v1")
	}
	ad := append([]byte("cryptpt symlink v2\x00"), dirIV[:]...)
	return append(ad, name...)
}

// XattrAD returns the associated data of a user.* xattr value of an
// encrypted entry:
//
//	format 1: "cryptpt xattr v1" || 0x00 || attr
//	format 2: "cryptpt xattr v2" || 0x00 || entry (16 bytes) || attr
//
// where entry is the file ID from a regular file's header, or a directory's
// own IV, so a value moved to another entry fails.
func XattrAD(version uint16, attr string, entry *[16]byte) []byte {
	if version == FormatV1 {
		return []byte("cryptpt xattr v1\x00" + attr)
	}
	ad := append([]byte("cryptpt xattr v2\x00"), entry[:]...)
	return append(ad, attr...)
}
