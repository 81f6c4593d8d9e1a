package layout

import "cryptpt/crypt"

// IsEncrypted reports whether stored, a name in a vault directory, is an
// encrypted-mode entry: an encrypted or long name (or a sync tool's conflict
// copy of one), which needs its directory's IV. The grammar is crypt's
// (crypt.Classify).
func IsEncrypted(stored string) bool {
	k := crypt.Classify(stored)
	return k == crypt.Encrypted || k == crypt.Long
}
