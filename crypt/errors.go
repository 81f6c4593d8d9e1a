package crypt

import "errors"

// ErrAuth means a block, name, sidecar or metadata value failed authentication:
// the vault file may be corrupted or tampered with. No bytes of the failed
// item are ever returned alongside it.
var ErrAuth = errors.New("crypt: authentication failed")

// ErrHeader means a content file header is malformed (short, bad magic or an
// unsupported format version). The file must not be served as plaintext.
var ErrHeader = errors.New("crypt: bad file header")

// ErrSize means a ciphertext size (of a file or a single block) cannot be
// produced by this format, e.g. a trailing partial block no longer than
// BlockOverhead.
var ErrSize = errors.New("crypt: impossible ciphertext size")

// ErrName means a name is not valid: a plaintext name that is empty, ".",
// "..", contains '/' or NUL, or is longer than MaxNameLen bytes; or a stored
// name or sidecar that is not in a form this package produces.
var ErrName = errors.New("crypt: invalid name")

// ErrDirIV means a directory IV file does not hold exactly DirIVSize bytes.
var ErrDirIV = errors.New("crypt: malformed directory IV")

// ErrOffset means a negative offset or size was passed in.
var ErrOffset = errors.New("crypt: negative offset or size")
