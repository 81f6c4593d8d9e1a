package keys

import (
	"errors"
	"fmt"

	"cryptpt/crypt"
)

// ErrWrongPassword means the config is well formed but the password does not
// unwrap the master key. It is never returned for a damaged config file.
var ErrWrongPassword = errors.New("wrong password")

// ErrWrongRecoveryKey means the recovery key is well formed (its checksum
// matches) but does not unwrap the master key of this vault.
var ErrWrongRecoveryKey = errors.New("recovery key does not open this vault")

// ErrRecoveryKeyTypo means the recovery key as typed is not a valid recovery
// key: wrong length, a character outside the alphabet, or a checksum mismatch.
// It is almost always a typing mistake; the vault was not consulted.
var ErrRecoveryKeyTypo = errors.New("recovery key is mistyped (checksum or format does not match)")

// ErrCorrupt means the vault config file is damaged or was edited: bad TOML,
// an unknown or missing field, a value of the wrong type, length or range.
// Errors that match it are *CorruptError values naming the field.
var ErrCorrupt = errors.New("vault config corrupted")

// ErrVersion means the vault config was written by another version of
// cryptpt: an unsupported format version or feature flag.
var ErrVersion = errors.New("unsupported vault format version or feature")

// ErrTampered means that a version-2 vault config was changed by someone
// without the master key: its MAC (under a key derived from the master key)
// does not match, or its version was relabelled. A well-formed config whose
// KDF parameters or salt were changed cannot be told from a wrong password
// by Open (the password wrap binds them, so it just does not open); the
// recovery key path tells it, and ResetPassword replaces what such a change
// can reach. Errors that match it never match ErrWrongPassword.
var ErrTampered = errors.New("vault config was altered (it does not match its authentication code)")

// ErrNotVault means the directory has no vault config file. Errors that match
// it also match fs.ErrNotExist.
var ErrNotVault = errors.New("not a cryptpt vault (no " + crypt.VaultConfigName + ")")

// ErrExists means Create found a vault config file already in place.
var ErrExists = errors.New("vault config already exists")

// CorruptError reports a damaged vault config file. Field is the dotted TOML
// key that is wrong ("kdf.salt"), or "" when the file is not valid TOML at all.
// errors.Is(err, ErrCorrupt) holds for every *CorruptError.
type CorruptError struct {
	Field string // dotted TOML key, e.g. "keys.password"; "" for a syntax error
	Err   error  // what is wrong with it
}

func (e *CorruptError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%v: %v", ErrCorrupt, e.Err)
	}
	return fmt.Sprintf("%v: field %s: %v", ErrCorrupt, e.Field, e.Err)
}

// Unwrap returns the underlying cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// corrupt builds a *CorruptError for field with a formatted cause.
func corrupt(field, format string, args ...any) error {
	return &CorruptError{Field: field, Err: fmt.Errorf(format, args...)}
}

// errMissing is the cause of a CorruptError for a required field that is absent.
var errMissing = errors.New("missing")
